"""Guess files: the baseline Hamiltonian of every structure of a data file, for training Δ-models.

``data.h5`` -> ``data.guess.h5`` (same folder) holding ``/guess_hamiltonians/<key>`` (nao, nao) Eh and the
root attribute ``guess_kind``. They are computed once with PySCF (``eqchem guess data.h5``) so that
training itself never needs PySCF. Writing is resumable: keys already present are skipped, and every
chunk of results is written to a temporary copy that atomically replaces the file.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Callable

import h5py
import numpy as np

from .. import keys
from ..errors import DataError


def guess_path(data_path: str | Path) -> Path:
    p = Path(data_path)
    return p.with_name(p.stem + keys.GUESS_SUFFIX)


def _read_header(path: Path) -> tuple[str, set[str]]:
    """(guess kind, stored keys) of an existing guess file."""
    with h5py.File(path, "r") as f:
        kind = f.attrs.get(keys.GUESS_KIND, "")
        stored = set(f[keys.GUESS_HAMILTONIANS].keys()) if keys.GUESS_HAMILTONIANS in f else set()
    return (kind.decode() if isinstance(kind, bytes) else str(kind)), stored


def present_keys(data_path: str | Path) -> set[str]:
    """Keys whose guess is already stored for ``data_path`` (empty if there is no guess file)."""
    out = guess_path(data_path)
    return _read_header(out)[1] if out.exists() else set()


class GuessFile:
    """Read access to one guess file: ``gf[key]`` -> (nao, nao) float64."""

    def __init__(self, data_path: str | Path, kind: str):
        self.path = guess_path(data_path)
        if not self.path.exists():
            raise DataError(f"{data_path}: no guess file {self.path.name} for this Δ-model "
                            f"(run: eqchem guess {data_path} --kind {kind})")
        found, self._keys = _read_header(self.path)
        if found != kind:
            raise DataError(f"{self.path} holds '{found}' guesses but the model needs '{kind}'")
        self.kind = kind

    def __contains__(self, key: str) -> bool:
        return key in self._keys

    def __getitem__(self, key: str) -> np.ndarray:
        if key not in self._keys:
            raise DataError(f"{self.path} has no guess for '{key}' (run: eqchem guess on its data file)")
        with h5py.File(self.path, "r") as f:
            return np.asarray(f[keys.GUESS_HAMILTONIANS][key], dtype=np.float64)


def write_guesses(data_path: str | Path, kind: str = "minao-fock", chunk: int = 20,
                  on_done: Callable[[str], None] | None = None) -> tuple[int, int]:
    """Compute the missing guesses of ``data_path``; returns (computed, already present)."""
    from ..dft.guess import check_baseline, guess_hamiltonian
    from .reader import H5Dataset

    check_baseline(kind)
    ds = H5Dataset(data_path)
    out = guess_path(data_path)
    done: set[str] = set()
    if out.exists():
        found, done = _read_header(out)
        if found != kind:
            raise DataError(f"{out} holds '{found}' guesses, not '{kind}'; move it away first")
    todo = [k for k in ds.keys() if k not in done]
    pending: dict[str, np.ndarray] = {}

    def flush() -> None:
        tmp = out.with_name(out.name + ".tmp")
        if out.exists():
            shutil.copyfile(out, tmp)
        with h5py.File(tmp, "a") as f:
            f.attrs[keys.GUESS_KIND] = kind
            f.attrs[keys.BASIS] = ds.basis
            f.attrs[keys.XC] = ds.xc
            g = f.require_group(keys.GUESS_HAMILTONIANS)
            for k, m in pending.items():
                g.create_dataset(k, data=m)
        os.replace(tmp, out)
        pending.clear()

    for key in todo:
        r = ds[key]
        pending[key] = guess_hamiltonian(r.numbers, r.positions, ds.basis, ds.xc, kind)
        if on_done:
            on_done(key)
        if len(pending) >= chunk:
            flush()
    if pending or not out.exists():
        flush()
    return len(todo), len(done)
