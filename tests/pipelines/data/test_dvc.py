"""`dvc repro` reproduces the data stages offline in a fresh copy, and `dvc status` is clean after it.

dvc runs from its own tool environment (`.tools/dvc`, built by `make setup`): its hydra-core dependency pins the
antlr4 runtime that Dagster's selection parser needs at another version. The stages it runs use the project's
venv, first on PATH, exactly as `make repro` runs them.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines.data.lake import AUGMENTED_TABLE, read_table, table_path
from tests.helpers import REPO_ROOT, copy_checkout

pytestmark = pytest.mark.slow

DVC = REPO_ROOT / ".tools" / "dvc" / "bin" / "dvc"


def _run(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def test_dvc_comes_from_its_own_environment_not_the_projects() -> None:
    assert DVC.is_file(), f"{DVC} is missing: `make setup` builds the dvc tool environment"
    project_bin = Path(sys.executable).parent
    assert not (project_bin / "dvc").exists(), "dvc is installed in the project venv, where it pins antlr4 4.9"
    version = subprocess.run([str(DVC), "--version"], capture_output=True, text=True, timeout=120)
    assert version.returncode == 0, version.stderr
    makefile = (REPO_ROOT / "Makefile").read_text(encoding="utf-8")
    assert f"DVC_VERSION := {version.stdout.strip()}" in makefile  # the pinned dvc, not whatever pip found


def test_dvc_repro_then_status_is_clean(tmp_path: Path) -> None:
    assert DVC.is_file(), f"{DVC} is missing: `make setup` builds the dvc tool environment"
    repo = copy_checkout(tmp_path / "repo")
    bin_dir = str(Path(sys.executable).parent)
    env = {
        **os.environ,
        # The stages run `python -m pipelines ...`: the project's interpreter, not dvc's.
        "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""),
        "SOP2CMD_LAKE": str(tmp_path / "elsewhere"),  # the stages must ignore it and write the declared outs
        "DVC_NO_ANALYTICS": "1",
    }
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid"]
    assert _run([*git, "init", "-q"], repo, env).returncode == 0
    dvc = str(DVC)

    repro = _run([dvc, "repro"], repo, env)
    assert repro.returncode == 0, repro.stdout + repro.stderr

    status = _run([dvc, "status"], repo, env)
    assert status.returncode == 0, status.stdout + status.stderr
    assert "Data and pipelines are up to date" in status.stdout, status.stdout

    assert (repo / "data" / "raw" / "training_data.jsonl").is_file()
    assert (repo / "dvc.lock").is_file()
    assert len(read_table(table_path(repo / "lake", AUGMENTED_TABLE))) > 0
    assert not (tmp_path / "elsewhere").exists()

    # Nothing changed, so a second repro runs no stage.
    again = _run([dvc, "repro"], repo, env)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "Running stage" not in again.stdout
