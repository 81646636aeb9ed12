"""Durable file writes for the store: fsync of files and folders, and HDF5 files renamed into place."""
from __future__ import annotations

import contextlib
import os
from pathlib import Path

import h5py


def atomic_h5(path: Path):
    """Context manager: an HDF5 file written under a temporary name, renamed to ``path`` on success."""

    class _Ctx:
        def __enter__(self):
            self.tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
            self.f = h5py.File(self.tmp, "w")
            return self.f

        def __exit__(self, exc_type, exc, tb):
            self.f.close()
            if exc_type is None:
                fsync(self.tmp)
                os.replace(self.tmp, path)
            else:
                self.tmp.unlink(missing_ok=True)
            return False

    return _Ctx()


def fsync(path: Path) -> None:
    with open(path, "rb+") as fh:
        os.fsync(fh.fileno())


def fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):  # not every file system lets a directory be opened or synced
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
