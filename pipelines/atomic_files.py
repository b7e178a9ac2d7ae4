"""Publish files and directories so that nobody ever finds them half written or missing.

Every temporary path is a hidden sibling of what it becomes, `.<name>.<kind>-<pid>-<random>`, created
exclusively (O_EXCL / mkdir), so two writers never share one and a crash leaves a recognisable leftover:

- `tmp`: a file being written (`write_text_atomic`, `write_json_atomic`).
- `staging`: a directory being built (`staging_directory`); its writer holds an flock on the sibling
  `<staging>.lock` for as long as it lives, which is how a dead writer's staging is told from a live one.
- `old`: the previous version of a directory, moved aside during `replace_directory`.

`replace_directory` moves the old version aside, moves the new one in, then deletes the old one, under
an flock on the parent directory. A process killed between the two renames leaves the target missing
but its complete previous version aside; `recover_directory` (which every writer runs first, and a
reader can run when the target is missing) moves it back. The kernel drops a dead process's flocks, so
a SIGKILL never leaves anything locked.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import secrets
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

TEMP_FILE = "tmp"
STAGING = "staging"
ASIDE = "old"
_LOCK_SUFFIX = ".lock"


def unique_sibling(path: Path, kind: str) -> Path:
    """A hidden name beside `path` that no other writer will pick (pid for humans, 64 random bits for safety)."""
    path = Path(path)
    return path.with_name(f".{path.name}.{kind}-{os.getpid()}-{secrets.token_hex(8)}")


def write_text_atomic(path: Path, text: str) -> Path:
    """Write `text` (UTF-8) so that a reader sees the old file or the whole new one."""
    return write_bytes_atomic(path, text.encode("utf-8"))


def write_bytes_atomic(path: Path, content: bytes) -> Path:
    """Write `content` so that a reader sees the old file or the whole new one (unique temp, fsync, rename)."""
    path = Path(path)
    temp = unique_sibling(path, TEMP_FILE)
    # O_EXCL: a temp path can never be one another writer is using; 0o666 lets the umask decide, as open() does.
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with open(fd, "wb") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    fsync_directory(path.parent)
    return path


def write_json_atomic(path: Path, payload: dict[str, Any]) -> Path:
    """Write JSON so that a reader never sees a half-written file, even with other writers of the same path."""
    # Serialized before any file is touched: a payload that fails to encode leaves nothing behind.
    text = json.dumps(payload, ensure_ascii=False, indent=2, sort_keys=True, default=str)
    return write_text_atomic(path, text)


@contextmanager
def staging_directory(target: Path) -> Iterator[Path]:
    """A new empty directory beside `target` to build its next version in; removed on exit if still there.

    Pass it to `replace_directory` inside the `with` block. Leftovers of dead writers are cleaned first,
    so a writer killed again and again does not fill the disk with stale copies of a model.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = unique_sibling(target, STAGING)
    lock_path = _staging_lock_path(staging)
    with _locked_directory(target.parent):
        _recover_locked(target)
        # Created and locked under the parent's lock, where recovery runs: recovery never sees this lock
        # file unlocked while its writer lives, so a staging whose lock can be taken is a dead writer's.
        lock_fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o666)
        fcntl.flock(lock_fd, fcntl.LOCK_EX)
    try:
        staging.mkdir()
        try:
            yield staging
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    finally:
        lock_path.unlink(missing_ok=True)
        os.close(lock_fd)


def replace_directory(new: Path, target: Path, *, keep_existing: Callable[[Path], bool] | None = None) -> bool:
    """Make the complete directory `new` become `target`, replacing any previous version; True if it did.

    `new` must be on the same filesystem (a sibling from `staging_directory`, or inside one). If
    `keep_existing(target)` holds for the version in place, `new` is deleted and the target left alone
    (for caches other runs may be reading). A SIGKILL at any point leaves the old or the new version in
    `target`, or the old one aside where `recover_directory` puts it back.
    """
    new, target = Path(new), Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    _fsync_tree(new)  # the renames below must never publish files whose contents are still only in page cache
    with _locked_directory(target.parent):
        _recover_locked(target)
        if keep_existing is not None and target.is_dir() and keep_existing(target):
            shutil.rmtree(new)
            return False
        aside = None
        if os.path.lexists(target):
            aside = unique_sibling(target, ASIDE)
            os.rename(target, aside)
        # Between these two renames `target` does not exist; `aside` holds the complete old version.
        os.rename(new, target)
        fsync_directory(target.parent)
        if aside is not None:
            shutil.rmtree(aside)
    return True


def recover_directory(target: Path) -> None:
    """Undo what a process killed mid-replacement of `target` left behind, and delete dead writers' leftovers.

    If `target` is missing and its previous version is aside, that version is moved back. Cheap when
    there is nothing to do (one directory listing, no lock), so readers may call it before loading.
    """
    target = Path(target)
    if not target.parent.is_dir() or not _leftovers(target):
        return
    with _locked_directory(target.parent):
        _recover_locked(target)


def _recover_locked(target: Path) -> None:
    # Under the parent's lock no replacement is in progress, so every `old` sibling is a dead writer's.
    leftovers = _leftovers(target)
    asides = [p for p, kind in leftovers if kind == ASIDE]
    if not os.path.lexists(target) and asides:
        if len(asides) > 1:
            # One replacement at a time holds the lock, and each later one recovers first: more than one
            # aside means someone deleted the target by hand, and which version to restore is their call.
            raise RuntimeError(f"{target} is missing and several previous versions are aside: {asides}")
        os.rename(asides.pop(), target)
        fsync_directory(target.parent)
    for aside in asides:
        shutil.rmtree(aside, ignore_errors=True)  # the replacement that moved it aside completed
    for staging in (p for p, kind in leftovers if kind == STAGING):
        _remove_if_writer_dead(staging)


def _leftovers(target: Path) -> list[tuple[Path, str]]:
    """(path, kind) of every staging (directory or lock file) and aside copy of `target` in its parent."""
    prefix = f".{target.name}."
    found = set()
    for entry in os.scandir(target.parent):
        if not entry.name.startswith(prefix):
            continue
        kind = entry.name[len(prefix):].split("-", 1)[0]
        if kind == STAGING:
            found.add((target.parent / entry.name.removesuffix(_LOCK_SUFFIX), kind))
        elif kind == ASIDE:
            found.add((target.parent / entry.name, kind))
    return sorted(found)


def _remove_if_writer_dead(staging: Path) -> None:
    """Delete a staging directory and its lock file, either of which may be missing, unless its writer lives."""
    lock_path = _staging_lock_path(staging)
    try:
        lock_fd = os.open(lock_path, os.O_RDONLY)  # flock needs no write access
    except FileNotFoundError:
        # No lock: an older version of this code named stagings `.<name>.staging-<pid>` without one.
        shutil.rmtree(staging, ignore_errors=True)
        return
    try:
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            if error.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                return  # its writer is alive and still building it
            raise
        shutil.rmtree(staging, ignore_errors=True)
        lock_path.unlink(missing_ok=True)
    finally:
        os.close(lock_fd)


def _staging_lock_path(staging: Path) -> Path:
    return staging.with_name(staging.name + _LOCK_SUFFIX)


@contextmanager
def _locked_directory(directory: Path) -> Iterator[None]:
    # An flock on the directory itself: no lock file to leave behind, released by the kernel on any death.
    fd = os.open(directory, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def fsync_directory(directory: Path) -> None:
    """Make a rename or a new entry in `directory` durable (the file's own fsync does not cover its name)."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(root: Path) -> None:
    for folder, _dirs, files in os.walk(root):
        for name in files:
            fd = os.open(os.path.join(folder, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_directory(Path(folder))
