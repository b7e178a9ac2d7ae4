"""Subprocess: replace a directory and SIGKILL itself at a chosen point inside the replacement.

argv: kill_point what target [args...]
  what "files" (args: label): the new version is `write_version(staging, label)`.
  what "merge" (args: base_model_dir adapter_dir): the new version is a real `pipelines.model.merge.merge_adapter`.
  what "base" (args: cache_root): the new version is a real `resolve_base_model("tiny", cache_root)`.
kill_point:
  before_aside        at the rename that would move the old version aside, before it happens.
  between_renames     at the rename that would move the new version in, the old one being aside already.
  before_old_deleted  at the deletion of the old version, the new one being in place already.
The kill is triggered by the operation itself (os.rename / shutil.rmtree patched), not by timing. If the
replacement ends without reaching the kill point, the worker exits 3, which the tests treat as a failure.
"""

import os
import shutil
import signal
import sys
from pathlib import Path

KILL_POINTS = ("before_aside", "between_renames", "before_old_deleted")
# Several files, so that a directory holding some of one version and some of another is caught.
VERSION_FILES = ("config.json", "model.safetensors", "tokenizer.json", "lineage.json")


def write_version(directory: Path, label: str) -> None:
    for name in VERSION_FILES:
        (directory / name).write_text(label, encoding="utf-8")


def read_version(directory: Path) -> str:
    """The label of the one complete version `directory` holds; AssertionError if it is not exactly one."""
    assert directory.is_dir(), f"{directory} is missing"
    names = sorted(p.name for p in directory.iterdir())
    assert names == sorted(VERSION_FILES), f"{directory} holds {names}"
    labels = {(directory / name).read_text(encoding="utf-8") for name in names}
    assert len(labels) == 1, f"{directory} mixes versions {labels}"
    return labels.pop()


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def install_kill(kill_point: str, target: Path) -> None:
    real_rename, real_rmtree = os.rename, shutil.rmtree
    aside_prefix = f".{target.name}.old-"

    def rename(src, dst, *args, **kwargs):
        src, dst = Path(src), Path(dst)
        if kill_point == "before_aside" and src == target:
            die()
        # The rename into the target comes after the aside one; the aside must exist for the kill to count.
        if kill_point == "between_renames" and dst == target and any(
            p.name.startswith(aside_prefix) for p in target.parent.iterdir()
        ):
            die()
        return real_rename(src, dst, *args, **kwargs)

    def rmtree(path, *args, **kwargs):
        if kill_point == "before_old_deleted" and Path(path).name.startswith(aside_prefix):
            die()
        return real_rmtree(path, *args, **kwargs)

    os.rename, shutil.rmtree = rename, rmtree


def main(kill_point: str, what: str, target: Path, args: list[str]) -> None:
    if kill_point not in KILL_POINTS:
        raise SystemExit(f"unknown kill point {kill_point!r}")
    if what == "files":
        from pipelines.atomic_files import replace_directory, staging_directory

        install_kill(kill_point, target)
        with staging_directory(target) as staging:
            write_version(staging, args[0])
            replace_directory(staging, target)
    elif what == "merge":
        from pipelines.model.merge import merge_adapter

        install_kill(kill_point, target)
        merge_adapter(Path(args[0]), Path(args[1]), target)
    elif what == "base":
        from pipelines.model.base_model import resolve_base_model

        install_kill(kill_point, target)
        resolve_base_model("tiny", Path(args[0]))
    else:
        raise SystemExit(f"unknown replacement {what!r}")
    sys.exit(3)  # the replacement finished: the kill point was never reached


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], Path(sys.argv[3]), sys.argv[4:])
