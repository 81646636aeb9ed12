"""The ``--check``'s score and threshold fitted on validation rows (:mod:`eqchem.model.calibration` has the forms):
the Fock build's estimate of the gap error (:func:`fit_response_check`), its frontier residuals with the gap σ
(:func:`fit_residual_check`), or a discrepancy with the σ in quadrature (:func:`fit_check`, also the partner's)."""
from __future__ import annotations

from typing import Sequence

import numpy as np


def fit_response_check(rows: Sequence[dict], floor_ev: float = 0.1, false_alarm: float = 0.05,
                       wrong_gap_ev: float = 0.3) -> dict | None:
    """{signal "response", Coulomb scale, center, threshold} of the Fock build's response score over the validation
    ``rows`` that have the check's gap error estimates (None where fewer than 10 do): the scale, that of
    :data:`~eqchem.calibration_metrics.COULOMB_SCALES` whose estimates lie closest to the actual gap errors (mean
    absolute difference); the center, the median estimate over the right gaps (|error| ≤ ``wrong_gap_ev``); the
    threshold, the (1 - ``false_alarm``) quantile of the score |estimate − center| over the right gaps, at least
    ``floor_ev``."""
    from ..calibration_metrics import COULOMB_SCALES, RESPONSE_FIELD

    got = [(r["gap_error_ev"], *r[RESPONSE_FIELD]) for r in rows if r.get(RESPONSE_FIELD) is not None]
    if len(got) < 10:
        return None
    table = np.array(got, dtype=float)
    err, estimates = table[:, 0], table[:, 1:]
    best = int(np.argmin(np.mean(np.abs(estimates - err[:, None]), axis=0)))
    right = np.abs(err) <= wrong_gap_ev
    center = float(np.median(estimates[right, best])) if right.any() else 0.0
    score = np.abs(estimates[:, best] - center)
    threshold = float(max(floor_ev, np.quantile(score[right], 1 - false_alarm))) if right.any() else floor_ev
    return {"check_signal": "response", "check_coulomb_scale": float(COULOMB_SCALES[best]),
            "check_center_ev": center, "check_threshold_ev": threshold}


def fit_residual_check(rows: Sequence[dict], gap_sigma: Sequence[float], floor_ev: float = 0.1,
                       false_alarm: float = 0.05, wrong_gap_ev: float = 0.3) -> dict | None:
    """{signal "residuals", center, coefficients, threshold} of the Fock build's residual score over the
    validation ``rows`` that have the frontier residuals and F's eigenvalue gap shift (None where fewer than 10
    do), with their calibrated gap σ ``gap_sigma`` (eV): the center, the median shift over the right gaps
    (|error| ≤ ``wrong_gap_ev``); the coefficients, least squares of ln(|gap error| +
    :data:`~eqchem.model.calibration.RESIDUAL_OFFSET_EV`) on :func:`~eqchem.model.calibration.residual_features`;
    the threshold, the (1 - ``false_alarm``) quantile of the score over the right gaps, at least ``floor_ev``."""
    from ..calibration_metrics import RESIDUAL_SCORE_FIELDS
    from ..model.calibration import RESIDUAL_OFFSET_EV, residual_features

    got = [(r["gap_error_ev"], s, *(r[k] for k in RESIDUAL_SCORE_FIELDS)) for r, s in zip(rows, gap_sigma)
           if all(r.get(k) is not None for k in RESIDUAL_SCORE_FIELDS)]
    if len(got) < 10:
        return None
    err, sigma, r_homo, r_lumo, shift = (np.array(x, dtype=float) for x in zip(*got))
    right = np.abs(err) <= wrong_gap_ev
    center = float(np.median(shift[right])) if right.any() else 0.0
    design = np.array([residual_features(*x) for x in zip(sigma, r_homo, r_lumo, shift - center)])
    coef = np.linalg.lstsq(design, np.log(np.abs(err) + RESIDUAL_OFFSET_EV), rcond=None)[0]
    score = np.maximum(np.exp(design @ coef) - RESIDUAL_OFFSET_EV, 0.0)
    threshold = float(max(floor_ev, np.quantile(score[right], 1 - false_alarm))) if right.any() else floor_ev
    return {"check_signal": "residuals", "check_center_ev": center, "check_coefficients": [float(c) for c in coef],
            "check_threshold_ev": threshold}


def fit_check(rows: Sequence[dict], gap_sigma: Sequence[float], source: str, floor_ev: float = 0.1,
              false_alarm: float = 0.05, wrong_gap_ev: float = 0.3) -> dict:
    """{signal, center, sigma weight, threshold} of the check by ``source`` over the validation ``rows`` that ran
    it, with their calibrated gap σ ``gap_sigma`` (eV; :mod:`eqchem.model.calibration`): for the Fock build, the
    signal of :data:`~eqchem.calibration_metrics.FOCK_SIGNALS` whose gap shift alone (beyond its median over the
    right gaps) best separates the wrong gaps (|error| > ``wrong_gap_ev``) by ROC AUC (the first listed on a tie
    or without wrong gaps); the center is the median discrepancy over the right gaps; the weight, of
    :data:`~eqchem.model.calibration.CHECK_SIGMA_WEIGHTS`, the one whose score has the best ROC AUC for the
    wrong gaps (the smallest on a tie; 0 where the rows have no wrong gap); the threshold, the
    (1 - ``false_alarm``) quantile of the score over the right gaps, at least ``floor_ev``. Threshold inf
    where no row ran the check."""
    from ..calibration_metrics import FOCK_SIGNALS, auc, discrepancy_field, shift_alone_auc
    from ..model.calibration import CHECK_SIGMA_WEIGHTS

    name = "partner" if source == "partner" else "check"
    signals = [None] if source == "partner" else list(FOCK_SIGNALS)
    fits = []
    for signal in signals:
        key = discrepancy_field(source, signal)
        got = [(r[key], s, abs(r["gap_error_ev"]) > wrong_gap_ev)
               for r, s in zip(rows, gap_sigma) if r.get(key) is not None]
        if got:
            d, sigma, wrong = (np.array(x, dtype=float) for x in zip(*got))
            right = wrong == 0
            center = float(np.median(d[right])) if right.any() else 0.0
            alone = shift_alone_auc(d, wrong) if wrong.any() and right.any() else 0.5
            fits.append((alone, signal, d, sigma, wrong, center))
    if not fits:
        return {f"{name}_threshold_ev": float("inf")}
    _, signal, d, sigma, wrong, center = max(fits, key=lambda f: f[0])  # the first of the best on a tie
    right = wrong == 0

    def score(weight: float) -> np.ndarray:
        return np.hypot(weight * sigma, d - center)

    weight = 0.0
    if wrong.any() and right.any():
        aucs = [auc(wrong.astype(bool).tolist(), score(w).tolist()) for w in CHECK_SIGMA_WEIGHTS]
        weight = float(CHECK_SIGMA_WEIGHTS[int(np.argmax(aucs))])
    threshold = float(max(floor_ev, np.quantile(score(weight)[right], 1 - false_alarm))) if right.any() else floor_ev
    out = {f"{name}_center_ev": center, f"{name}_sigma_weight": weight, f"{name}_threshold_ev": threshold}
    return out if signal is None else {**out, "check_signal": signal}
