"""The journal of a data file ``data.h5``: ``data.h5.parts/<key>.h5``, one small file per finished (or
failed) structure, each written under a temporary name, fsynced and renamed (atomic). Writing parts,
listing them, and the lock and clean-up a consolidation (:mod:`eqchem.data.store`) takes before absorbing them.
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path

import h5py
import numpy as np

from .. import keys
from .durable import atomic_h5


def journal_dir(out: Path) -> Path:
    return Path(str(out) + ".parts")


def write_group(group: h5py.Group, record: dict) -> None:
    """Write one structure's arrays (and ``record["attrs"]``) into an HDF5 group."""
    for name, value in record.items():
        if name == "attrs":
            continue
        if name == keys.DENSITY_COEFFICIENTS:
            sub = group.create_group(name)
            for i, c in enumerate(value):
                sub.create_dataset(str(i), data=np.asarray(c, dtype=np.float64))
            continue
        group.create_dataset(name, data=np.asarray(value))
    for k, v in record.get("attrs", {}).items():
        group.attrs[k] = v if v is not None else ""


def save_part(out: Path, key: str, record: dict | np.ndarray | None = None, failure: dict | None = None,
              group: str = keys.MOLECULES) -> Path:
    """Atomically write one finished (or failed) structure into the journal of ``out``.

    ``record``: a structure's arrays and attrs (a dict, stored as the group ``/<group>/<key>``) or one
    array (stored as the dataset ``/<group>/<key>``, e.g. a guess Hamiltonian); ``failure``: the attrs
    of ``/failures/<key>``.
    """
    jdir = journal_dir(out)
    path = jdir / f"{key}.h5"
    for attempt in (1, 2):
        jdir.mkdir(parents=True, exist_ok=True)
        try:
            with atomic_h5(path) as f:
                if isinstance(record, dict):
                    write_group(f.create_group(f"{group}/{key}"), record)
                elif record is not None:
                    f.require_group(group).create_dataset(key, data=np.asarray(record))
                else:
                    g = f.create_group(f"{keys.FAILURES}/{key}")
                    for k, v in (failure or {}).items():
                        g.attrs[k] = v
            return path
        except FileNotFoundError:  # a final consolidation removed the empty journal folder meanwhile
            if attempt == 2:
                raise
    return path


def journal_keys(out: Path, groups: tuple[str, ...] = (keys.MOLECULES, keys.FAILURES)) -> dict[str, str]:
    """Keys in the journal of ``out`` mapped to the group that holds them ('molecules' or 'failures')."""
    found = {}
    jdir = journal_dir(out)
    if not jdir.is_dir():
        return found
    for p in sorted(jdir.glob("*.h5")):
        try:
            with h5py.File(p, "r") as f:
                for grp in groups:
                    if grp in f:
                        for k in f[grp]:
                            found[k] = grp
        except OSError:  # a part from a writer killed before its rename never exists; be lenient anyway
            p.unlink(missing_ok=True)
    return found


def journal_bytes(out: Path) -> int:
    """Bytes waiting in the journal of ``out``."""
    jdir = journal_dir(Path(out))
    total = 0
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir(jdir):
            if entry.name.endswith(".h5"):
                with contextlib.suppress(FileNotFoundError):
                    total += entry.stat().st_size
    return total


def remove_orphan_parts(jdir: Path) -> None:
    """Remove the temporary parts of writers killed before their rename (their process is gone)."""
    for tmp in jdir.glob(".*.tmp-*"):
        pid = tmp.name.rsplit("-", 1)[-1]
        if pid.isdigit() and int(pid) != os.getpid():
            try:
                os.kill(int(pid), 0)
            except ProcessLookupError:
                tmp.unlink(missing_ok=True)
            except PermissionError:  # alive, another user's
                pass


@contextlib.contextmanager
def journal_lock(jdir: Path):
    """Exclusive lock of the journal folder, so that two consolidations of one file never overlap."""
    import fcntl

    while True:
        jdir.mkdir(parents=True, exist_ok=True)
        fd = os.open(jdir, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError:  # no locks on this file system: a single writer per file is then the rule
            break
        try:
            if os.stat(jdir).st_ino == os.fstat(fd).st_ino:
                break
        except FileNotFoundError:
            pass
        os.close(fd)  # the folder was removed (and maybe recreated) while we waited: lock the new one
    try:
        yield
    finally:
        os.close(fd)
