"""The guess Hamiltonians that Δ-models correct, one registry: every caller asks it, none tests names.

``none``
    no guess: the network predicts the whole matrix.
``core``
    T + V_nuc: analytic one-electron integrals (no grid, no density fitting), exactly equivariant; the
    network learns the whole electronic response J + V_xc - K.
``core-j``
    core plus the Coulomb matrix of the superposed neutral atomic densities
    (:mod:`eqchem.dft.atomic_density`), still grid-free: one three-centre integral per AO pair and atom.
``core-jx``
    T + V_nuc, the long-range Coulomb potential of the atoms' electrons (one Gaussian charge per atom) and
    fitted spherical effective atomic potentials (:mod:`eqchem.dft.atomic_potential`) for the rest of the
    atoms' electrostatics and their exchange–correlation: grid-free, a few dozen coefficients per basis and
    functional solved by least squares on training structures (``eqchem guess --kind core-jx``) and carried
    as ``params`` (``{"atomic_potentials": fit, "omega": ω}``) by guess files and model files.
``minao-fock``
    the Kohn–Sham matrix F[P_minao] of the functional from PySCF's minao (superposed atomic densities)
    guess density, one Fock build with a coarse grid (level 1) and density-fitted J/K
    (def2-universal-jkfit), no SCF; the network learns the SCF response F - F[P_minao]. It runs in the
    molecule's principal-axes frame (:mod:`eqchem.dft.frame`), so it is equivariant to round-off.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import numpy as np

from ..errors import InputError

if TYPE_CHECKING:
    from .molecule import MoleculeContext


@dataclass(frozen=True)
class Baseline:
    """One kind of guess. ``fock_builds``: Kohn–Sham matrix builds (grid, density fitting) per guess;
    ``fitted``: it needs parameters fitted on training data (``params``); ``summary``: one line for cards
    and ``--help``."""

    name: str
    summary: str
    fock_builds: int
    fitted: bool
    _build: Callable[["MoleculeContext", str, dict | None], np.ndarray | None]

    @property
    def is_delta(self) -> bool:
        """Whether models on this baseline predict a correction (every kind but ``none``)."""
        return self.name != "none"

    @property
    def needs_frame(self) -> bool:
        """Whether the guess runs on a DFT grid, and so in the principal-axes frame."""
        return self.fock_builds > 0

    def guess(self, molecule: "MoleculeContext", xc: str, params: dict | None = None) -> np.ndarray | None:
        """The guess (nao, nao) Eh of ``molecule`` (functional ``xc``; ``params``: the fitted parts), or
        None for ``none``."""
        if self.fitted:
            fitted_potentials(params)  # an error a user can act on, before any integral
        return self._build(molecule, xc, params)


def fitted_potentials(params: dict | None) -> dict:
    """The atomic potential fit of a ``core-jx`` guess's ``params``; an error a user can act on without one."""
    fit = (params or {}).get("atomic_potentials")
    if not fit or "omega" not in params:
        raise InputError("the core-jx guess needs fitted atomic potentials (eqchem guess --kind core-jx fits them; "
                         "a core-jx model file carries its own)")
    return fit


def _core(m: "MoleculeContext", xc: str, params) -> np.ndarray:  # noqa: ARG001
    mol = m.mole
    return mol.intor_symmetric("int1e_kin") + mol.intor_symmetric("int1e_nuc")


def _core_j(m: "MoleculeContext", xc: str, params) -> np.ndarray:
    from .atomic_density import superposed_density_coulomb

    return _core(m, xc, params) + superposed_density_coulomb(m.mole, m.basis, m.n_electrons)


def _core_jx(m: "MoleculeContext", xc: str, params) -> np.ndarray:  # noqa: ARG001
    from .atomic_potential import superposed_potential, unfitted_part

    return unfitted_part(m.mole, m.n_electrons, float(params["omega"])) + superposed_potential(m.mole, params["atomic_potentials"])


def _minao_fock(m: "MoleculeContext", xc: str, params) -> np.ndarray:  # noqa: ARG001
    frame = m.frame
    mf = frame.ks(xc)
    dm = mf.get_init_guess(frame.mol, key="minao")
    neutral = int(m.numbers.sum())
    if m.n_electrons != neutral:  # a superposition of neutral atoms, scaled to the ion's electrons
        dm = dm * (m.n_electrons / neutral)
    fock = frame.d @ mf.get_fock(dm=dm) @ frame.d.T
    return np.asarray(0.5 * (fock + fock.T), dtype=np.float64)


BASELINES: dict[str, Baseline] = {b.name: b for b in (
    Baseline("none", "none (H from the geometry alone)", 0, False, lambda m, xc, p: None),
    Baseline("minao-fock", "one cheap PySCF Fock build of the minao density", 1, False, _minao_fock),
    Baseline("core", "T + V_nuc: analytic integrals", 0, False, _core),
    Baseline("core-j", "T + V_nuc + J of superposed atomic densities: analytic integrals", 0, False, _core_j),
    Baseline("core-jx", "T + V_nuc + long-range J + fitted atomic potentials: analytic integrals", 0, True, _core_jx),
)}
"""Every baseline kind by name, in the order ``--help`` lists them."""


def get_baseline(name: str) -> Baseline:
    """The registered baseline ``name``; InputError naming the known ones otherwise."""
    try:
        return BASELINES[name]
    except KeyError:
        raise InputError(f"unknown guess/baseline '{name}'; choose from {', '.join(BASELINES)}") from None


def baseline_help() -> str:
    """The kinds for a command's ``--help``: name and summary of each."""
    return "; ".join(f"{b.name}: {b.summary}" for b in BASELINES.values())
