"""Merge shard files of one level of theory into one eqchem HDF5 file (atomically)."""
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


def merge(shards: Sequence[str | Path], out: str | Path) -> MergeReport:
    """Copy /molecules and /failures of every shard into ``out``.

    Shards must agree on xc, basis, grid level, conv_tol and density fitting (else DataError). A key
    present in several shards is kept once (a finished structure wins over a failure).
    """
    out = Path(out)
    if not shards:
        raise DataError("no shard files given")
    attrs0 = None
    shells: dict = {}
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
        shells.update(json.loads(a.get(BASIS_SHELLS_ATTR, "{}")))
    report = MergeReport()
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    try:
        with h5py.File(tmp, "w") as f:
            for k, v in attrs0.items():
                f.attrs[k] = v
            if shells:
                f.attrs[BASIS_SHELLS_ATTR] = json.dumps(dict(sorted(shells.items(), key=lambda kv: int(kv[0]))))
            mols, fails = f.create_group(keys.MOLECULES), f.create_group(keys.FAILURES)
            for p in shards:
                with h5py.File(p, "r") as src:
                    for k in src.get(keys.MOLECULES, {}):
                        if k in mols:
                            report.duplicates += 1
                            continue
                        if k in fails:
                            del fails[k]
                            report.failures -= 1
                        src.copy(src[keys.MOLECULES][k], mols, name=k)
                        report.molecules += 1
                    for k in src.get(keys.FAILURES, {}):
                        if k in mols or k in fails:
                            report.duplicates += 1
                            continue
                        src.copy(src[keys.FAILURES][k], fails, name=k)
                        report.failures += 1
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return report
