"""``eqchem.predict``: structures in, predicted Hamiltonians and orbitals out (batched through the network).

The structure checks live here; the prediction itself is :class:`eqchem.inference.pipeline.PredictionPipeline`.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from ..errors import BasisError, InputError, ModelError
from ..io.structure import Structure
from .model_file import EqchemModel, load_model
from .pipeline import PredictionPipeline, StageTimings
from .result import OrbitalResult

EXTRAPOLATION_HINT = "pass --allow-extrapolation (Python: extrapolate=True) to predict it anyway"


class ExtrapolationWarning(UserWarning):
    """The structure lies outside what the model was trained on (size, charge or spin)."""


def _int_info(info: dict, key: str) -> int | None:
    value = info.get(key)
    return None if value is None else int(round(float(value)))


def _from_ase(atoms) -> Structure:
    """``ase.Atoms`` -> Structure: charge from ``info['charge']`` (else the summed initial charges), spin (2S)
    from ``info['spin']``, ``info['multiplicity']`` (2S+1) or the summed initial magnetic moments."""
    info = dict(atoms.info)
    charge = _int_info(info, "charge")
    if charge is None and atoms.has("initial_charges"):
        charge = int(round(float(np.sum(atoms.get_initial_charges()))))
    spin = _int_info(info, "spin")
    if spin is None and info.get("multiplicity") is not None:
        spin = _int_info(info, "multiplicity") - 1
    if spin is None and atoms.has("initial_magmoms"):
        spin = int(round(abs(float(np.sum(atoms.get_initial_magnetic_moments()))))) or None
    name = str(info.get("name") or atoms.get_chemical_formula())
    return Structure(atoms.get_atomic_numbers(), atoms.get_positions(), charge=charge or 0, spin=spin, name=name,
                     source="ase.Atoms")


def _from_mole(mol) -> Structure:
    """PySCF ``Mole`` -> Structure with its charge and spin; its basis is kept in ``info['basis']`` so that
    prediction can refuse a Mole built in another basis than the model's."""
    from ..units import BOHR_ANGSTROM

    s = Structure(mol.atom_charges(), mol.atom_coords() * BOHR_ANGSTROM, charge=int(mol.charge),
                  spin=int(mol.spin) or None, source="pyscf.gto.Mole")
    s.name = f"Mole {s.formula}"
    s.info["basis"] = mol.basis
    return s


def as_structures(source) -> list[Structure]:
    """A file path, (numbers, positions Å), an ``ase.Atoms``, a PySCF ``Mole``, a Structure or a list."""
    if isinstance(source, Structure):
        return [source]
    if isinstance(source, (str, Path)):
        from ..io.readers import read_structures

        return read_structures(str(source))
    if type(source).__name__ == "Atoms" and hasattr(source, "get_atomic_numbers"):
        return [_from_ase(source)]
    if hasattr(source, "atom_charges") and hasattr(source, "atom_coords"):  # PySCF Mole
        return [_from_mole(source)]
    if isinstance(source, tuple) and len(source) == 2:
        return [Structure(np.asarray(source[0]), np.asarray(source[1]), name="structure")]
    if isinstance(source, (list, tuple)):
        out = []
        for s in source:
            out.extend(as_structures(s))
        return out
    raise InputError(f"cannot read a structure from {type(source).__name__}")


def _basis_key(name: str) -> str:
    return str(name).lower().replace("-", "").replace("_", "").replace(" ", "")


def _check_given_basis(model: EqchemModel, s: Structure) -> None:
    """Refuse a structure that arrived with its own basis (a PySCF Mole) other than the model's."""
    given = s.info.get("basis")
    if given is None:
        return
    names = set(given.values()) if isinstance(given, dict) else {given}
    if any(not isinstance(b, str) or _basis_key(b) != _basis_key(model.basis) for b in names):
        raise BasisError(f"{s.label}: the Mole was built with basis {given!r} but the model predicts in "
                         f"'{model.basis}'; build it with basis='{model.basis}' (or use a model trained in that basis)")


def coverage_warnings(model: EqchemModel, s: Structure) -> list[str]:
    """Why a prediction of ``s`` would extrapolate the model: charge, spin, size (empty list: it does not)."""
    out = []
    spin = int(s.spin or 0)
    if int(s.charge) not in model.charges:
        out.append(f"charge {int(s.charge):+d} is outside the model's training data ({model.coverage_text})")
    if spin not in model.spins:
        out.append(f"spin (2S) {spin} is outside the model's training data ({model.coverage_text}); open shells "
                   f"are predicted with one set of spatial orbitals (restricted open shell)")
    rng = model.metadata.get("atoms_range")
    if rng and s.n_atoms > rng[1]:
        out.append(f"{s.n_atoms} atoms, more than the largest training structure ({rng[1]})")
    return out


def check_structure(model: EqchemModel, s: Structure, extrapolate: bool = False) -> list[str]:
    """Refuse what the model cannot do (elements, basis, and charge or spin outside its training data unless
    ``extrapolate``); return the extrapolation warnings of ``s`` (also issued as ExtrapolationWarning)."""
    s.validate()
    try:
        model.check_covers(s.numbers)
    except ModelError as exc:
        raise ModelError(f"{s.label}: {exc}; use a model trained on these elements") from None
    model.check_basis(s.numbers)
    _check_given_basis(model, s)
    found = coverage_warnings(model, s)
    needs_permission = [w for w in found if w.startswith(("charge", "spin"))]
    if needs_permission and not extrapolate:
        raise ModelError(f"{s.label}: {needs_permission[0]}; {EXTRAPOLATION_HINT}")
    for w in found:
        warnings.warn(f"{s.label}: {w}: the prediction is an extrapolation", ExtrapolationWarning, stacklevel=3)
    return found


def predict(source, model: EqchemModel | str | Path | None = None, batch_size: int = 16, device: str = "cpu",
            fock_step: bool = True, extrapolate: bool = False, timings: StageTimings | None = None,
            workers: int = 1) -> OrbitalResult | list[OrbitalResult]:
    """Predict the Kohn–Sham Hamiltonian and orbitals of one or several structures.

    ``fock_step=False`` skips the model's damped Fock step (``model.fock_mixing``): the network's matrix only.
    A charge or spin outside the model's training data raises :class:`~eqchem.errors.ModelError` unless
    ``extrapolate=True``; then each result lists why in ``result.warnings``.
    ``timings``: a :class:`~eqchem.inference.pipeline.StageTimings` that gets the wall time (s) of every
    stage added (``timings.seconds``, ``timings.per_molecule()``), e.g. ``t = StageTimings(); predict(..., timings=t)``.
    ``workers`` > 1: many structures are shared out over that many processes in all (one thread each;
    :mod:`eqchem.inference.parallel`), e.g. ``workers=eqchem.cpu.available_cores()``.
    Returns one :class:`OrbitalResult` for a single structure, a list otherwise.
    """
    if not isinstance(model, EqchemModel):
        model = load_model(model)
    pipeline = PredictionPipeline(model, batch_size=batch_size, device=device, fock_step=fock_step, timings=timings,
                                  workers=workers)
    results = pipeline.run(source, extrapolate).results
    single = isinstance(source, (Structure, tuple)) or (
        not isinstance(source, list) and len(results) == 1)
    return results[0] if single else results


def predict_structures(structures: Sequence[Structure], model: EqchemModel, batch_size: int = 16,
                       device: str = "cpu", fock_step: bool = True, extrapolate: bool = False,
                       timings: StageTimings | None = None) -> list[OrbitalResult]:
    """All predictions of :func:`iter_predictions` as a list."""
    return list(iter_predictions(structures, model, batch_size, device, fock_step, extrapolate, timings=timings))


def check_structures(model: EqchemModel, structures: Sequence[Structure], extrapolate: bool = False
                     ) -> list[list[str]]:
    """:func:`check_structure` of every structure: their extrapolation warnings, or the first refusal."""
    return [check_structure(model, s, extrapolate) for s in structures]


def iter_predictions(structures: Sequence[Structure], model: EqchemModel, batch_size: int = 16,
                     device: str = "cpu", fock_step: bool = True, extrapolate: bool = False,
                     checked: Sequence[list[str]] | None = None,
                     timings: StageTimings | None = None, workers: int = 1,
                     integrals_ahead=None) -> Iterator[OrbitalResult]:
    """Predictions one structure at a time, ``batch_size`` structures per network call.

    Every structure is checked (:func:`check_structures`; ``checked``: its result when the caller already
    ran it) before the first prediction, so a bad one stops the run before any work; results come as they
    are done (a caller can write them as they finish). ``timings`` (:class:`StageTimings`) gets the wall
    time (s) of every stage added; ``workers`` as in :func:`predict`; ``integrals_ahead`` as in
    :class:`PredictionPipeline`.
    """
    pipeline = PredictionPipeline(model, batch_size=batch_size, device=device, fock_step=fock_step, timings=timings,
                                  workers=workers, integrals_ahead=integrals_ahead)
    found = list(checked) if checked is not None else pipeline.check(structures, extrapolate)
    yield from pipeline.predictions(structures, found)
