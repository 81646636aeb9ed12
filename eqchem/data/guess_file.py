"""Guess files: the baseline Hamiltonian of every structure of a data file, for training Δ-models.

``data.h5`` -> ``data.guess.h5`` (minao-fock; ``data.guess-<kind>.h5`` for other kinds; same folder)
holding ``/guess_hamiltonians/<key>`` (nao, nao) Eh and the root attribute ``guess_kind`` (and, for a guess
with fitted parts such as ``core-jx``, ``guess_params``: JSON, the same for every guess of the file). They are
computed once with PySCF (``eqchem guess data.h5``, :func:`eqchem.dft.guess.write_guesses`) so that training
itself never needs PySCF; this module only names and reads them. Written like data files (:mod:`eqchem.data.store`): every guess goes to
the journal ``data.guess.h5.parts/`` as it is computed, and the journal is absorbed into immutable segment
files linked from ``data.guess.h5`` (an index replaced atomically), so appending never rewrites stored
guesses and a ``kill -9`` loses at most the guess being computed. Resumable: keys already present are skipped.
"""
from __future__ import annotations

import json
from pathlib import Path
import h5py
import numpy as np

from .. import keys
from ..errors import DataError
from . import store


def guess_path(data_path: str | Path, kind: str = "minao-fock") -> Path:
    """The guess file of ``data_path`` for guesses of ``kind``: ``data.guess.h5`` for minao-fock (the
    accurate mode's), ``data.guess-<kind>.h5`` for others, so several kinds live side by side."""
    p = Path(data_path)
    suffix = keys.GUESS_SUFFIX if kind == "minao-fock" else keys.GUESS_SUFFIX.replace(".guess", f".guess-{kind}")
    return p.with_name(p.stem + suffix)


def guess_file_header(path: Path) -> tuple[str, set[str]]:
    """(guess kind, stored keys) of an existing guess file."""
    with h5py.File(path, "r") as f:
        kind = f.attrs.get(keys.GUESS_KIND, "")
        stored = set(f[keys.GUESS_HAMILTONIANS].keys()) if keys.GUESS_HAMILTONIANS in f else set()
    return (kind.decode() if isinstance(kind, bytes) else str(kind)), stored


def read_params(path: str | Path) -> dict | None:
    """The fitted parameters a guess file's guesses were computed with (``keys.GUESS_PARAMS``), or None."""
    with h5py.File(path, "r") as f:
        text = f.attrs.get(keys.GUESS_PARAMS, "")
    text = text.decode() if isinstance(text, bytes) else str(text)
    return json.loads(text) if text else None


def stored_params(data_path: str | Path, kind: str) -> dict | None:
    """The parameters of ``data_path``'s existing ``kind`` guess file (None: no file, or none stored)."""
    out = guess_path(data_path, kind)
    return read_params(out) if out.exists() else None


def present_keys(data_path: str | Path, kind: str = "minao-fock") -> set[str]:
    """Keys whose ``kind`` guess is already stored for ``data_path``, or journaled by an interrupted run
    (empty if there is no guess file)."""
    out = guess_path(data_path, kind)
    stored = guess_file_header(out)[1] if out.exists() else set()
    return stored | set(store.journal_keys(out, (keys.GUESS_HAMILTONIANS,)))


class GuessFile:
    """Read access to one guess file: ``gf[key]`` -> (nao, nao) float64."""

    def __init__(self, data_path: str | Path, kind: str):
        self.path = guess_path(data_path, kind)
        if not self.path.exists():
            raise DataError(f"{data_path}: no guess file {self.path.name} for this Δ-model "
                            f"(run: eqchem guess {data_path} --kind {kind})")
        found, self._keys = guess_file_header(self.path)
        if found != kind:
            raise DataError(f"{self.path} holds '{found}' guesses but the model needs '{kind}'")
        self.kind = kind
        self.params = read_params(self.path)
        """The fitted parameters of these guesses (``core-jx``: ``{"atomic_potentials": ...}``), or None."""

    def __contains__(self, key: str) -> bool:
        return key in self._keys

    def __getitem__(self, key: str) -> np.ndarray:
        if key not in self._keys:
            raise DataError(f"{self.path} has no guess for '{key}' (run: eqchem guess on its data file)")
        with h5py.File(self.path, "r") as f:
            return np.asarray(f[keys.GUESS_HAMILTONIANS][key], dtype=np.float64)


def uncovered_keys(ds, params: dict | None) -> list[str]:
    """Keys of the structures of ``ds`` (an H5Dataset) with an element that fitted guess parameters lack:
    no guess can be computed for them (a fit on a subset of the elements)."""
    fit = (params or {}).get("atomic_potentials")
    if not fit:
        return []
    covered = {int(z) for z in fit}
    return [k for k in ds.keys() if not {int(z) for z in ds.numbers(k)} <= covered]
