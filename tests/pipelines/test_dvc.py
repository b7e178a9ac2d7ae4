"""`dvc repro` reproduces the data stages offline in a fresh copy, and `dvc status` is clean after it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines.lake import AUGMENTED_TABLE, read_table, table_path
from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.slow


def _run(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def _copy_repo(destination: Path) -> None:
    """The files a clone would have (tracked + not ignored), without caches, lakes or artifacts."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=REPO_ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode("utf-8")
    for relative in filter(None, listed.split("\0")):
        source = REPO_ROOT / relative
        if source.is_file():
            target = destination / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)


def test_dvc_repro_then_status_is_clean(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    _copy_repo(repo)
    bin_dir = str(Path(sys.executable).parent)
    env = {
        **os.environ,
        "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""),
        "SOP2CMD_LAKE": str(tmp_path / "elsewhere"),  # the stages must ignore it and write the declared outs
        "DVC_NO_ANALYTICS": "1",
    }
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid"]
    assert _run([*git, "init", "-q"], repo, env).returncode == 0
    dvc = str(Path(bin_dir) / "dvc")

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
