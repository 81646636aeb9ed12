"""Guess Hamiltonians of whole molecules: the baselines of Δ-models (:mod:`eqchem.dft.baselines`) as
functions of a geometry, and the guess files training reads (:func:`write_guesses`).

Which guesses exist, what each costs and how each is built is the registry's business
(:mod:`eqchem.dft.baselines`); here they are computed for (atomic numbers, positions Å) through one
:class:`~eqchem.dft.molecule.MoleculeContext`, as the prediction pipeline computes them.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import DataError
from .baselines import get_baseline
from .molecule import MoleculeContext


def guess_hamiltonian(numbers, positions, basis: str, xc: str, kind: str = "minao-fock",
                      params: dict | None = None, n_electrons: int | None = None) -> np.ndarray:
    """(nao, nao) guess matrix in Eh, PySCF AO order, for atomic numbers (n,) and positions (n, 3) Å;
    ``n_electrons`` (default neutral) scales the guess's atomic electrons; ``params``: fitted parts."""
    return guess_and_overlap(numbers, positions, basis, xc, kind, n_electrons=n_electrons, params=params)[0]


def guess_and_overlap(numbers, positions, basis: str, xc: str, kind: str = "minao-fock", frame=None,
                      n_electrons: int | None = None, params: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The guess matrix (Eh; zeros for ``none``) and the AO overlap matrix, both (nao, nao) in PySCF AO order.

    ``frame``: the molecule's :class:`~eqchem.dft.frame.CanonicalFrame` when the caller built it already.
    """
    numbers = np.asarray(numbers, dtype=np.int64)
    neutral = int(numbers.sum())
    charge = 0 if n_electrons is None else neutral - int(n_electrons)
    molecule = MoleculeContext(numbers, positions, basis, charge=charge, spin=(neutral - charge) % 2)
    if frame is not None:
        molecule.frame = frame
    guess = molecule.guess(get_baseline(kind).name, xc, params)
    overlap = molecule.overlap
    return (np.zeros_like(overlap) if guess is None else guess), overlap


def write_guesses(data_path: str | Path, kind: str = "minao-fock", consolidate_every: float = 300.0,
                  on_done: Callable[[str], None] | None = None, params: dict | None = None) -> tuple[int, int]:
    """Compute the missing guesses of ``data_path`` into its guess file (:mod:`eqchem.data.guess_file`);
    returns (computed, already present).

    ``consolidate_every``: least seconds between absorbing the journal into the guess file (see
    :class:`eqchem.data.store.Appender`); it is always absorbed at the end. ``params``: the fitted parts of
    the guess (``core-jx``), stored with the file; an existing file computed with other parameters is an error.
    Structures with an element the parameters lack (``uncovered_keys``) get no guess and are not counted.
    """
    import json

    from .. import keys
    from ..data import store
    from ..data.guess_file import guess_file_header, guess_path, read_params, uncovered_keys
    from ..data.reader import H5Dataset

    get_baseline(kind)
    ds = H5Dataset(data_path)
    out = guess_path(data_path, kind)
    if out.exists():
        found = guess_file_header(out)[0]
        if found != kind:
            raise DataError(f"{out} holds '{found}' guesses, not '{kind}'; move it away first")
        if read_params(out) != params:
            raise DataError(f"{out} holds guesses computed with other fitted parameters; move it away first "
                            f"(or compute with the parameters it holds)")
    attrs = {keys.GUESS_KIND: kind, keys.BASIS: ds.basis, keys.XC: ds.xc}
    if params is not None:
        attrs[keys.GUESS_PARAMS] = json.dumps(params, sort_keys=True)
    group = keys.GUESS_HAMILTONIANS
    store.consolidate(out, attrs, group, failures=None)  # absorb what an interrupted run journaled
    done = guess_file_header(out)[1]
    skip = done | set(uncovered_keys(ds, params))
    todo = [k for k in ds.keys() if k not in skip]
    with store.Appender(out, attrs, group, failures=None, consolidate_every=consolidate_every) as app:
        for key in todo:
            r = ds[key]
            app.add(key, guess_hamiltonian(r.numbers, r.positions, ds.basis, ds.xc, kind, params))
            if on_done:
                on_done(key)
    return len(todo), len(done)
