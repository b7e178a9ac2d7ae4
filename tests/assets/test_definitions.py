"""The code location loads: the one Definitions object, and `dagster definitions validate`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg

from tests.helpers import REPO_ROOT


def test_defs_load_with_data_assets_checks_and_job() -> None:
    from assets.definitions import defs

    assert isinstance(defs, dg.Definitions)
    graph = defs.resolve_asset_graph()
    keys = {key.to_user_string() for key in graph.get_all_asset_keys()}
    assert {"raw_training_data", "normalized_samples", "augmented_training_set"} <= keys
    check_names = {key.name for key in graph.asset_check_keys}
    assert {"raw_lines_accounted_for", "augmented_no_split_leakage", "augmented_training_set_contract"} <= check_names
    job = defs.resolve_job_def("data_job")
    assert {"raw_training_data", "normalized_samples", "augmented_training_set"} <= {
        node.name for node in job.nodes_in_topological_order
    }


def test_dagster_definitions_validate(tmp_path: Path) -> None:
    dagster = Path(sys.executable).with_name("dagster")
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path)}
    completed = subprocess.run(
        [str(dagster), "definitions", "validate", "-w", "workspace.yaml"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "All code locations passed validation" in completed.stdout + completed.stderr
