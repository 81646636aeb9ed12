"""``eqchem.predict``: structures in, predicted Hamiltonians and orbitals out (batched through the network)."""
from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import InputError
from ..io.structure import Structure
from .model_file import EqchemModel, load_model
from .result import OrbitalResult, from_matrix


class ExtrapolationWarning(UserWarning):
    """The molecule is larger than anything the model was trained on."""


def as_structures(source) -> list[Structure]:
    """A file path, (numbers, positions Å), an ``ase.Atoms``, a PySCF ``Mole``, a Structure or a list."""
    if isinstance(source, Structure):
        return [source]
    if isinstance(source, (str, Path)):
        from ..io.readers import read_structures

        return read_structures(str(source))
    if type(source).__name__ == "Atoms" and hasattr(source, "get_atomic_numbers"):
        return [Structure(source.get_atomic_numbers(), source.get_positions(), name=source.get_chemical_formula(),
                          charge=int(round(sum(source.get_initial_charges()))) if source.has("initial_charges") else 0)]
    if hasattr(source, "atom_charges") and hasattr(source, "atom_coords"):  # PySCF Mole
        from ..units import BOHR_ANGSTROM

        return [Structure(source.atom_charges(), source.atom_coords() * BOHR_ANGSTROM, charge=source.charge,
                          spin=source.spin or None, name="mole")]
    if isinstance(source, tuple) and len(source) == 2:
        return [Structure(np.asarray(source[0]), np.asarray(source[1]), name="structure")]
    if isinstance(source, (list, tuple)):
        out = []
        for s in source:
            out.extend(as_structures(s))
        return out
    raise InputError(f"cannot read a structure from {type(source).__name__}")


def check_structure(model: EqchemModel, s: Structure) -> None:
    """Refuse what the model cannot do (elements, open shells); warn on size extrapolation."""
    s.validate()
    model.check_covers(s.numbers)
    if s.spin:
        raise InputError(f"{s.label}: spin {s.spin} given, but the model is closed-shell (RKS)")
    rng = model.metadata.get("atoms_range")
    if rng and s.n_atoms > rng[1]:
        warnings.warn(f"{s.label}: {s.n_atoms} atoms, more than the largest training structure ({rng[1]}): "
                      f"the prediction is an extrapolation", ExtrapolationWarning, stacklevel=3)


def predict(source, model: EqchemModel | str | Path | None = None, batch_size: int = 16, device: str = "cpu",
            fock_step: bool = True) -> OrbitalResult | list[OrbitalResult]:
    """Predict the Kohn–Sham Hamiltonian and orbitals of one or several structures.

    ``fock_step=False`` skips the model's damped Fock step (``model.fock_mixing``): the network's matrix only.
    Returns one :class:`OrbitalResult` for a single structure, a list otherwise.
    """
    if not isinstance(model, EqchemModel):
        model = load_model(model)
    structures = as_structures(source)
    results = predict_structures(structures, model, batch_size=batch_size, device=device, fock_step=fock_step)
    single = isinstance(source, (Structure, tuple)) or (
        not isinstance(source, list) and len(results) == 1)
    return results[0] if single else results


def predict_structures(structures: Sequence[Structure], model: EqchemModel, batch_size: int = 16,
                       device: str = "cpu", fock_step: bool = True) -> list[OrbitalResult]:
    for s in structures:
        check_structure(model, s)
    t0 = time.perf_counter()
    mats = model.predict_matrices([(s.numbers, s.positions) for s in structures], batch_size, device,
                                  charges=[s.charge for s in structures], fock_step=fock_step)
    t_net = (time.perf_counter() - t0) / max(1, len(structures))
    from ..dft.runner import build_mole

    out = []
    settings = {k: model.metadata.get(k) for k in ("grids_level", "conv_tol")}
    name = model.metadata.get("name") or (model.path.name if model.path else "model")
    for s, m in zip(structures, mats):
        t1 = time.perf_counter()
        mol = build_mole(s, model.basis, spin=0)
        s_ao = mol.intor_symmetric("int1e_ovlp")
        if model.target == "density_matrix":
            from ..dft.runner import DFTSettings, make_scf

            mf = make_scf(mol, DFTSettings(xc=model.xc, basis=model.basis,
                                           grid_level=int(settings["grids_level"] or 3)))
            m = np.asarray(mf.get_fock(dm=m))
        res = from_matrix(s.name, s.numbers, s.positions, m, s_ao, model.basis, model.xc, s.charge, name,
                          settings, mole=mol)
        res.seconds = t_net + time.perf_counter() - t1
        out.append(res)
    return out
