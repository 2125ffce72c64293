"""Atomic replacement of a file or folder: a kill at any moment leaves the old one or the new.

Every write goes to a staging folder beside the target, `.<name>.freezestudio-<pid>-<random>`
(hidden, in the same folder, so the final rename stays on one file system), under the target's
own name (Keras wants the suffix; its own large-model temporary files land in the same
folder). The written file is fsynced, renamed over the target with `os.replace` (atomic on
POSIX and Windows), the folder entry fsynced, and the staging folder removed.

A process killed mid-write (SIGKILL, power loss) leaves its staging folder behind. The next
replacement of the same target removes every staging folder of that name whose process is
no longer alive (`clean_stale`), so the litter of a kill lives exactly until the next save.

Folders (SavedModels) are swapped with Linux's `renameat2(RENAME_EXCHANGE)`, atomic as a
file's rename. Where that is missing, the old folder is first moved into the staging folder;
a kill between the two renames leaves it there, and `clean_stale` puts it back.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

STAGING_MARK = ".freezestudio-"
"""Staging folders are named `.<target name>` + STAGING_MARK + `<pid>-<random>`."""
_OLD = "old"  # the previous folder, inside a staging folder, while a folder is swapped
_ACTIVE: set[Path] = set()  # this process's staging folders still being written


def replace_file(target: Path, write: Callable[[Path], None]) -> None:
    """Calls `write(tmp)` for a path named like `target` in a staging folder beside it, then
    renames the result over `target`. Whatever `write` raises propagates; nothing is left."""
    target = Path(target)
    with _staging(target) as staging:
        tmp = staging / target.name
        write(tmp)
        _fsync(tmp)
        os.replace(tmp, target)
        _fsync_folder(_parent(target))


def replace_directory(target: Path, write: Callable[[Path], None]) -> None:
    """As `replace_file`, for a folder (a SavedModel): `write(tmp)` creates the folder `tmp`."""
    target = Path(target)
    with _staging(target) as staging:
        tmp = staging / target.name
        write(tmp)
        for folder, _, names in os.walk(tmp):
            for name in names:
                _fsync(Path(folder) / name)
        if not target.exists():
            os.replace(tmp, target)
        elif not _exchange(tmp, target):
            os.replace(target, staging / _OLD)
            os.replace(tmp, target)
        _fsync_folder(_parent(target))


def staging_folders(target: Path) -> list[Path]:
    """The staging folders of `target` present now (any process's)."""
    target = Path(target)
    prefix = f".{target.name}{STAGING_MARK}"
    return sorted(p for p in _parent(target).iterdir()
                  if p.name.startswith(prefix) and p.is_dir())


def clean_stale(target: Path) -> list[Path]:
    """Removes the staging folders a killed save of `target` left (their process is dead, or
    it is this one and the folder is not being written), first putting back an old folder a
    kill stranded mid-swap. Returns the folders removed."""
    target = Path(target)
    removed = []
    for staging in staging_folders(target):
        pid = _pid_of(staging, target)
        if staging in _ACTIVE or (pid is not None and pid != os.getpid() and _alive(pid)):
            continue
        old = staging / _OLD
        if old.is_dir() and not target.exists():
            os.replace(old, target)
        shutil.rmtree(staging, ignore_errors=True)
        removed.append(staging)
    return removed


@contextlib.contextmanager
def _staging(target: Path):
    clean_stale(target)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}{STAGING_MARK}{os.getpid()}-",
                                    dir=_parent(target)))
    _ACTIVE.add(staging)
    try:
        yield staging
    finally:
        _ACTIVE.discard(staging)
        shutil.rmtree(staging, ignore_errors=True)


def _parent(target: Path) -> Path:
    return target.parent if str(target.parent) else Path(".")


def _pid_of(staging: Path, target: Path) -> int | None:
    rest = staging.name[len(f".{target.name}{STAGING_MARK}"):]
    head = rest.split("-", 1)[0]
    return int(head) if head.isdigit() else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # another user's live process (or a platform that cannot tell)
    return True


def _fsync(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def _fsync_folder(folder: Path) -> None:
    """Makes a rename in `folder` durable (POSIX; Windows cannot open a folder)."""
    try:
        handle = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(handle)
    except OSError:
        pass
    finally:
        os.close(handle)


_RENAME_EXCHANGE = 2  # linux/fs.h


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swaps two existing paths (Linux >= 3.15, glibc >= 2.28); False where the
    call is unavailable or refused, so the caller falls back to two renames."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd = -100
    result = renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), _RENAME_EXCHANGE)
    return result == 0
