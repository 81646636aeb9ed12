"""The ``--check`` of one prediction: one cheap Fock build from its density (:func:`self_check`) or a second
model's prediction (:func:`partner_check`), scored and flagged as its model file's calibration says
(:mod:`eqchem.model.calibration`); the fields it fills are :class:`~eqchem.inference.uncertainty.Uncertainty`'s."""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from ..calibration_metrics import COULOMB_SCALES
from ..model.calibration import UncertaintyCalibration
from ..units import HARTREE_EV, MICRO_HARTREE
from .uncertainty import Uncertainty


def anderson_gap_errors(eigenvalues: np.ndarray, fock: np.ndarray, coulomb: np.ndarray, nocc: int,
                        scales: tuple[float, ...], reported_gap: float) -> list[float]:
    """The gap errors (``reported_gap`` minus the estimated SCF gap, in the matrices' unit) that one step of
    Anderson mixing estimates, one per scale λ of ``scales``. In the predicted H's orthonormal orbital basis,
    where H = diag(``eigenvalues``) (nmo,): ``fock`` F = F[P(H)] and ``coulomb`` J = J[P(F) − P(H)], (nmo, nmo).

    The SCF's map X -> F[P(X)] at two points: H, with residual f0 = F − H, and F, with residual f1 ≈ λ J (the
    change of F[P] from P(H) to P(F), of which the Coulomb part is computed and λ stands in for the rest); the
    mix of the two whose mixed residual is smallest, θ = ⟨f0, f0 − f1⟩ / ‖f0 − f1‖², estimates the fixed point as
    X* = (1 − θ) F + θ (F + λ J) (the mixed point plus its residual), and X*'s gap the SCF's gap."""
    f0 = fock - np.diag(eigenvalues)
    out = []
    for scale in scales:
        step = f0 - scale * coulomb
        norm = float(np.sum(step * step))
        theta = float(np.sum(f0 * step)) / norm if norm > 0 else 0.0
        e = np.linalg.eigvalsh(fock + theta * scale * coulomb)
        out.append(float(reported_gap - (e[nocc] - e[nocc - 1])))
    return out


def self_check(unc: Uncertainty, fock: np.ndarray, hamiltonian: np.ndarray, overlap: np.ndarray, nocc: int,
               cal: UncertaintyCalibration, seconds: float = 0.0, coulomb: np.ndarray | None = None,
               reported: np.ndarray | None = None) -> Uncertainty:
    """``unc`` with the check of one Fock build: ``fock`` = F[P(H)] (nao, nao) Eh of the predicted
    ``hamiltonian``'s aufbau density; in the predicted orbitals' basis, D = Cᵀ (F − H) C: the HOMO and LUMO
    shifts to first order (D_ii), as eigenvalues of F, and the frontier residuals (‖D_:i‖ without D_ii); with
    ``coulomb`` = J[P(F) − P(H)] (nao, nao) Eh (:func:`eqchem.dft.fock_step.coulomb_response`), the gap error of
    the ``reported`` matrix (the prediction; default H) that one Anderson step estimates
    (:func:`anderson_gap_errors`); flagged when the calibration's score
    (:meth:`~eqchem.model.calibration.UncertaintyCalibration.check_score`, with ``unc.gap_ev``) exceeds its
    threshold."""
    from ..orbitals import solve_generalized

    e_h, c_h = solve_generalized(hamiltonian, overlap)
    e_f = solve_generalized(fock, overlap)[0]
    frontier = [i for i in (nocc - 1, nocc) if i < len(e_h)]
    d = c_h.T @ (fock - hamiltonian) @ c_h[:, frontier]  # (nmo, 2) Eh
    diagonal = d[frontier, range(len(frontier))]
    first = diagonal * HARTREE_EV
    off = np.sqrt(np.maximum((d ** 2).sum(axis=0) - diagonal ** 2, 0.0)) * HARTREE_EV
    eig = (e_f[frontier] - e_h[frontier]) * HARTREE_EV
    has_lumo = len(frontier) == 2
    shifts = {"check_homo_first_order_ev": float(first[0]),
              "check_lumo_first_order_ev": float(first[-1]) if has_lumo else 0.0,
              "check_homo_shift_ev": float(eig[0]), "check_lumo_shift_ev": float(eig[-1]) if has_lumo else 0.0,
              "check_homo_residual_ev": float(off[0]), "check_lumo_residual_ev": float(off[-1]) if has_lumo else 0.0}
    shifts["check_gap_first_order_ev"] = shifts["check_lumo_first_order_ev"] - shifts["check_homo_first_order_ev"]
    shifts["check_gap_shift_ev"] = shifts["check_lumo_shift_ev"] - shifts["check_homo_shift_ev"]
    if coulomb is not None and has_lumo:
        # the fast mode reports H itself: its orbital energies are at hand
        e_r = e_h if reported is None or reported is hamiltonian else solve_generalized(reported, overlap)[0]
        estimates = anderson_gap_errors(e_h, c_h.T @ fock @ c_h, c_h.T @ coulomb @ c_h, nocc, COULOMB_SCALES,
                                        float(e_r[nocc] - e_r[nocc - 1]))
        shifts["check_gap_error_estimates_ev"] = [v * HARTREE_EV for v in estimates]
        shifts["check_gap_error_ev"] = cal.gap_error_estimate(shifts)
    score = cal.check_score("fock", unc.gap_ev, shifts)
    return replace(unc, flagged=bool(score > cal.check_threshold("fock")), check_by="fock", check_score_ev=score,
                   check_fock_score_ev=score, **shifts,
                   residual_uEh=float(np.abs(fock - hamiltonian).mean() * MICRO_HARTREE),
                   seconds=unc.seconds + seconds)


def partner_check(unc: Uncertainty, partner_gap_ev: float, gap_ev: float, cal: UncertaintyCalibration) -> Uncertainty:
    """``unc`` with the partner model's check: its gap ``partner_gap_ev`` against this prediction's ``gap_ev``
    (both eV), flagged when the score of their difference (:meth:`~eqchem.model.calibration.
    UncertaintyCalibration.check_score`) exceeds the calibration's partner threshold; the Fock build's fields
    (if ``unc`` has them) stay, for evaluations that ask for both."""
    diff = float(partner_gap_ev - gap_ev)
    score = cal.check_score("partner", unc.gap_ev, {"check_partner_gap_diff_ev": diff})
    return replace(unc, flagged=bool(score > cal.check_threshold("partner")), check_by="partner",
                   check_score_ev=score, check_partner_score_ev=score, check_partner_gap_diff_ev=diff)
