"""Artifacts are replaced without a gap: a killed writer leaves a complete old or new version, never none.

The kills are SIGKILLs of real processes, triggered by the replacement's own rename / rmtree calls
(`workers/replace_killed.py`), so each lands at a known point of the replacement every time.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines.atomic_files import recover_directory, replace_directory, staging_directory, write_json_atomic
from tests.helpers import REPO_ROOT, subprocess_env, worker_command
from tests.support.workers.replace_killed import KILL_POINTS, read_version, write_version

# What the target holds right after the kill, before anyone recovers: (target's version, aside's version).
STATE_AFTER_KILL = {
    "before_aside": ("old", None),
    "between_renames": (None, "old"),  # the window: the target is missing, its complete old version aside
    "before_old_deleted": ("new", "old"),
}
# What every later reader or writer finds once `recover_directory` has run.
VERSION_AFTER_RECOVERY = {"before_aside": "old", "between_renames": "old", "before_old_deleted": "new"}


def run_killed_replacement(kill_point: str, what: str, target: Path, *args: object) -> None:
    """Run the worker and require that it died by SIGKILL at `kill_point` (not by finishing or failing)."""
    completed = subprocess.run(worker_command("replace_killed", kill_point, what, target, *args), cwd=REPO_ROOT,
                               env=subprocess_env(OMP_NUM_THREADS="1"), capture_output=True, text=True, timeout=600)
    assert completed.returncode == -signal.SIGKILL, (
        f"worker exited {completed.returncode} instead of being killed at {kill_point}:\n{completed.stderr[-4000:]}"
    )


def asides_of(target: Path) -> list[Path]:
    return sorted(target.parent.glob(f".{target.name}.old-*"))


def leftovers_of(target: Path) -> list[str]:
    """Everything in the target's parent besides the target itself (temp files, stagings, asides, locks)."""
    return sorted(p.name for p in target.parent.iterdir() if p != target)


@pytest.fixture()
def target(tmp_path: Path) -> Path:
    model = tmp_path / "artifacts" / "merged_model"
    model.mkdir(parents=True)
    write_version(model, "old")
    return model


@pytest.mark.parametrize("kill_point", KILL_POINTS)
def test_killed_replacement_leaves_a_complete_version_and_recovery_cleans_up(target, kill_point):
    run_killed_replacement(kill_point, "files", target, "new")

    expected_target, expected_aside = STATE_AFTER_KILL[kill_point]
    assert (read_version(target) if target.exists() else None) == expected_target
    asides = asides_of(target)
    assert [read_version(aside) for aside in asides] == ([expected_aside] if expected_aside else [])
    # The dead writer's staging (or its lock file) is still there: recovery has something to clean.
    assert any(".staging-" in name for name in leftovers_of(target))

    recover_directory(target)  # what the next reader or writer does first
    assert read_version(target) == VERSION_AFTER_RECOVERY[kill_point]
    assert leftovers_of(target) == []


def test_next_writer_after_a_kill_between_the_renames_publishes_its_version(target):
    run_killed_replacement("between_renames", "files", target, "new")
    assert not target.exists() and len(asides_of(target)) == 1

    # A writer in another process, with no explicit recovery: replace_directory recovers first.
    script = (
        "import sys; from pathlib import Path\n"
        "from pipelines.atomic_files import replace_directory, staging_directory\n"
        "from tests.support.workers.replace_killed import write_version\n"
        "target = Path(sys.argv[1])\n"
        "with staging_directory(target) as staging:\n"
        "    write_version(staging, 'newer')\n"
        "    replace_directory(staging, target)\n"
    )
    subprocess.run([sys.executable, "-c", script, str(target)], cwd=REPO_ROOT, env=subprocess_env(), check=True,
                   timeout=120)
    assert read_version(target) == "newer"
    assert leftovers_of(target) == []


def test_recovery_leaves_a_live_writers_staging_alone(target):
    with staging_directory(target) as staging:
        write_version(staging, "new")
        # Another process recovers while this one is still building: its staging must survive.
        script = "import sys; from pipelines.atomic_files import recover_directory; recover_directory(sys.argv[1])"
        subprocess.run([sys.executable, "-c", script, str(target)], cwd=REPO_ROOT, env=subprocess_env(),
                       check=True, timeout=120)
        assert read_version(staging) == "new"
        assert replace_directory(staging, target)
    assert read_version(target) == "new"
    assert leftovers_of(target) == []


def test_two_processes_replacing_the_same_directory_never_break_it(target):
    # Without the parent's lock, one writer's "move the new in" meets the other's freshly moved-in
    # directory (ENOTEMPTY) or deletes it as "old"; with it, every replacement goes through whole.
    script = (
        "import sys; from pathlib import Path\n"
        "from pipelines.atomic_files import replace_directory, staging_directory\n"
        "from tests.support.workers.replace_killed import write_version\n"
        "target, label = Path(sys.argv[1]), sys.argv[2]\n"
        "for index in range(25):\n"
        "    with staging_directory(target) as staging:\n"
        "        write_version(staging, f'{label}-{index}')\n"
        "        replace_directory(staging, target)\n"
    )
    writers = [subprocess.Popen([sys.executable, "-c", script, str(target), label], cwd=REPO_ROOT,
                                env=subprocess_env(), stderr=subprocess.PIPE, text=True) for label in ("a", "b")]
    for writer in writers:
        _, stderr = writer.communicate(timeout=300)
        assert writer.returncode == 0, stderr[-4000:]
    assert read_version(target) in {"a-24", "b-24"}
    assert leftovers_of(target) == []


def test_a_complete_version_can_be_kept_instead_of_replaced(target):
    def is_complete(existing: Path) -> bool:
        return (existing / "lineage.json").is_file()

    with staging_directory(target) as staging:
        write_version(staging, "new")
        assert not replace_directory(staging, target, keep_existing=is_complete)
        assert not staging.exists()
    assert read_version(target) == "old"
    assert leftovers_of(target) == []


def test_missing_target_with_several_versions_aside_is_an_error_not_a_guess(target):
    for label in ("old", "older"):
        aside = target.with_name(f".{target.name}.old-1-{label}")
        aside.mkdir()
        write_version(aside, label)
    for path in target.iterdir():
        path.unlink()
    target.rmdir()
    with pytest.raises(RuntimeError, match="several previous versions"):
        recover_directory(target)
    assert sorted(read_version(aside) for aside in asides_of(target)) == ["old", "older"]


# --- atomic JSON writes ----------------------------------------------------------------------------------


def test_second_json_writer_between_anothers_write_and_rename_changes_nothing_for_it(tmp_path, monkeypatch):
    # A whole second write of the same file, run at the moment the first is about to publish its temp
    # file: with a temp name shared by both, the second overwrites the first's temp and renames it away,
    # and the first's rename then fails. With unique names both publish, in order.
    path = tmp_path / "latest_run.json"
    real_replace = os.replace
    interleaved = []

    def replace_after_another_write(src, dst):
        if not interleaved:
            interleaved.append(Path(src).name)
            write_json_atomic(path, {"writer": "second"})
            assert Path(src).is_file(), "the second writer took the first one's temp file"
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace_after_another_write)
    write_json_atomic(path, {"writer": "first"})
    assert interleaved  # the second write really ran inside the first
    assert json.loads(path.read_text(encoding="utf-8")) == {"writer": "first"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest_run.json"]


def test_json_payload_that_cannot_be_serialized_leaves_no_file(tmp_path):
    class Unprintable:
        def __str__(self) -> str:
            raise ValueError("cannot be written")

    with pytest.raises(ValueError, match="cannot be written"):
        write_json_atomic(tmp_path / "lineage.json", {"value": Unprintable()})
    assert list(tmp_path.iterdir()) == []


def test_json_writer_never_touches_another_writers_temp_file(tmp_path):
    path = tmp_path / "lineage.json"
    # What a live (or dead) writer of the old code had open: the fixed temp name `.lineage.json.tmp`.
    foreign = tmp_path / ".lineage.json.tmp"
    foreign.write_text("another writer's half-written JSON")
    write_json_atomic(path, {"ok": True})
    assert foreign.read_text() == "another writer's half-written JSON"
    assert json.loads(path.read_text(encoding="utf-8")) == {"ok": True}
    assert sorted(p.name for p in tmp_path.iterdir()) == [".lineage.json.tmp", "lineage.json"]


def test_json_file_keeps_the_umask_permissions_of_a_plain_write(tmp_path):
    plain = tmp_path / "plain.json"
    plain.write_text("{}")
    atomic = write_json_atomic(tmp_path / "atomic.json", {})
    assert os.stat(atomic).st_mode & 0o777 == os.stat(plain).st_mode & 0o777
