"""Merge shard files of one level of theory into one self-contained eqchem HDF5 file (atomically).

Every structure is copied once, straight from the file that holds it (a shard, or a segment file of a
shard written by ``eqchem generate``, each opened once), so merging is linear in the shards' size. The
result holds its data itself: merging a single file packs it and its segment files into one.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import h5py

from .. import keys
from ..errors import DataError
from . import store
from .reader import BASIS_SHELLS_ATTR


@dataclass
class MergeReport:
    molecules: int = 0
    failures: int = 0
    duplicates: int = 0   # keys found in several shards: the first shard's copy is kept


def _layout(shard_attrs: list[dict]) -> dict:
    """basis_shells and the change of basis of the union of the shards' elements."""
    shells: dict = {}
    cob: dict = {}
    for a in shard_attrs:
        shells.update(json.loads(a.get(BASIS_SHELLS_ATTR, "{}")))
        cob.update(json.loads(a.get(keys.AO_CHANGE_OF_BASIS) or "{}"))
    return store.layout_attrs(shells, json.dumps(cob) if cob else None) if shells else {}


def _copy_group(src: h5py.File, path: Path, group: str, names: list[str], dst: h5py.Group) -> None:
    """Copy ``/<group>/<name>`` of ``src`` (at ``path``) into ``dst``, opening every segment file once."""
    for source, items in store.locate(path, src, group, names).items():
        f = src if source is None else h5py.File(source, "r")
        try:
            for name, obj in items:
                f.copy(f[obj], dst, name=name)
        finally:
            if source is not None:
                f.close()


def merge(shards: Sequence[str | Path], out: str | Path) -> MergeReport:
    """Copy /molecules and /failures of every shard into ``out``.

    Shards must agree on xc, basis, grid level, conv_tol and density fitting (else DataError). A key
    present in several shards is kept once (a finished structure wins over a failure).
    """
    out = Path(out)
    if not shards:
        raise DataError("no shard files given")
    attrs0 = None
    all_attrs = []
    for p in shards:
        if not Path(p).exists():
            raise DataError(f"shard not found: {p}")
        try:
            a = store.root_attrs(Path(p))
        except OSError:
            raise DataError(f"{p} is not a readable HDF5 file") from None
        if attrs0 is None:
            attrs0 = a
        store.check_compatible(attrs0, a, str(p))
        all_attrs.append(a)
    report = MergeReport()
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    try:
        with h5py.File(tmp, "w") as f:
            for k, v in attrs0.items():
                if k not in store.STORE_ATTRS:
                    f.attrs[k] = v
            for k, v in _layout(all_attrs).items():
                f.attrs[k] = v
            mols, fails = f.create_group(keys.MOLECULES), f.create_group(keys.FAILURES)
            for p in shards:
                with h5py.File(p, "r") as src:
                    fresh = []
                    for k in src.get(keys.MOLECULES, {}):
                        if k in mols:
                            report.duplicates += 1
                            continue
                        if k in fails:
                            del fails[k]
                            report.failures -= 1
                        fresh.append(k)
                    if fresh:
                        _copy_group(src, Path(p), keys.MOLECULES, fresh, mols)
                    report.molecules += len(fresh)
                    fresh = []
                    for k in src.get(keys.FAILURES, {}):
                        if k in mols or k in fails:
                            report.duplicates += 1
                            continue
                        fresh.append(k)
                    if fresh:
                        _copy_group(src, Path(p), keys.FAILURES, fresh, fails)
                    report.failures += len(fresh)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return report
