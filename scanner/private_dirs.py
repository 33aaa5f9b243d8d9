"""Directories and files only this user can reach: the data dir, the work root, databases.

Bundles are unpacked, and verdicts stored, under these paths. A directory another local
user owns (or may write to without the sticky bit) lets that user swap what is scanned
or read what was uploaded, so it is refused rather than used.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

from scanner.config import SettingsError

PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600


class UnsafeDirectoryError(SettingsError):
    """A directory we would write into is not ours alone."""


def private_dir(path: Path) -> Path:
    """Create ``path`` (and missing parents) as 0700, or check that an existing one is safe.

    An existing directory must belong to this user, or be root's with the sticky bit
    (a shared tmpfs such as /dev/shm or a container's 1777 mount, where no one else can
    rename or remove what we create); and it must not be world-writable without sticky.
    """
    missing: list[Path] = []
    probe = path
    while not os.path.lexists(probe) and probe != probe.parent:
        missing.append(probe)
        probe = probe.parent
    for directory in reversed(missing):
        # Each one we create, not only the last; one made meanwhile by a concurrent
        # process is checked below like any existing one.
        with contextlib.suppress(FileExistsError):
            directory.mkdir(mode=PRIVATE_DIR)
    _check_dir(path)
    return path


def _check_dir(path: Path) -> None:
    try:
        st = os.lstat(path)
    except OSError as exc:
        raise UnsafeDirectoryError(f"{path}: {exc.strerror}") from None
    if stat.S_ISLNK(st.st_mode):
        raise UnsafeDirectoryError(f"{path} is a symbolic link; name the real directory")
    if not stat.S_ISDIR(st.st_mode):
        raise UnsafeDirectoryError(f"{path} is not a directory")
    me = os.geteuid()
    sticky = bool(st.st_mode & stat.S_ISVTX)
    if st.st_uid != me and not (st.st_uid == 0 and sticky):
        raise UnsafeDirectoryError(
            f"{path} belongs to uid {st.st_uid}, not to this user (uid {me}): refusing to use it"
        )
    if st.st_mode & stat.S_IWOTH and not sticky:
        raise UnsafeDirectoryError(f"{path} is world-writable without the sticky bit")


def private_file(path: Path) -> Path:
    """Create ``path`` empty as 0600 unless it exists; tighten one of ours that is readable."""
    private_dir(path.parent)
    fd = os.open(path, os.O_CREAT | os.O_WRONLY | getattr(os, "O_NOFOLLOW", 0), PRIVATE_FILE)
    try:
        st = os.fstat(fd)
        if st.st_uid == os.geteuid() and st.st_mode & 0o077:
            os.fchmod(fd, PRIVATE_FILE)  # made by an older version with the default umask
    finally:
        os.close(fd)
    return path
