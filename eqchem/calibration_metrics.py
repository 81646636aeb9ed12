"""Calibration of per-molecule uncertainty estimates against observed errors (issue 27).

Works on evaluation rows: a list of dicts, one per molecule. Keys (any may be missing or None; each metric
uses only the rows that have all of its keys with finite values):

- actual: ``h_mae_uEh`` (µEh), ``homo_error_ev``, ``lumo_error_ev``, ``gap_error_ev`` (signed predicted −
  reference, eV), ``dipole_error_debye`` (absolute error of |μ|, D);
- estimated 1σ: ``uncertainty_h_mae_uEh``, ``uncertainty_homo_ev``, ``uncertainty_lumo_ev``,
  ``uncertainty_gap_ev``, ``uncertainty_dipole_debye``; ``in_domain`` (bool);
- check: ``check_score_ev`` (larger = more suspicious), ``flagged`` (bool); where present, each source's own
  score: ``check_fock_score_ev`` (one Fock build's gap shift), ``check_partner_score_ev`` (partner's gap −
  this gap), each beyond its typical value and with the gap σ in quadrature
  (:meth:`eqchem.model.calibration.UncertaintyCalibration.check_score`).

Pure NumPy/SciPy; matplotlib only inside :func:`plot_reliability`.
"""
from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from scipy import stats

QUANTITIES: dict[str, tuple[str, str, str]] = {
    "homo": ("homo_error_ev", "uncertainty_homo_ev", "eV"),
    "lumo": ("lumo_error_ev", "uncertainty_lumo_ev", "eV"),
    "gap": ("gap_error_ev", "uncertainty_gap_ev", "eV"),
    "dipole": ("dipole_error_debye", "uncertainty_dipole_debye", "D"),
}
"""Report key -> (actual error key, 1σ key, unit)."""

SPEARMAN_FLOOR = 0.5
COVERAGE_RANGE = (0.5, 0.85)
AUC_FLOOR = 0.9
FOCK_SIGNALS = {"first_order": "check_gap_first_order_ev", "eigenvalues": "check_gap_shift_ev"}
"""The gap shifts of the check's Fock build F = F[P(H)] that a calibration may score (its ``check_signal``), and the
row field holding each: ``first_order``, δε_i = c_iᵀ (F − H) c_i in the predicted orbitals c_i (what one build
tells of the prediction's own orbital energies, as the σ propagate); ``eigenvalues``, the gap of F's eigenvalues
minus the prediction's (files calibrated before session 22): they add the second-order mixing of occupied and
virtual orbitals by the residual's large occupied-virtual block, which moves right gaps too."""


RESIDUAL_FIELDS = ("check_homo_residual_ev", "check_lumo_residual_ev")
"""The row fields of the check's frontier-orbital residuals r_i = ‖(F − H) c_i‖ orthogonal to c_i (eV, in the
predicted orbitals' orthonormal basis)."""

RESIDUAL_SCORE_FIELDS = (*RESIDUAL_FIELDS, FOCK_SIGNALS["eigenvalues"])
"""The row fields the residual score (``check_signal = "residuals"``) takes besides the gap σ, in the order of
:func:`eqchem.model.calibration.residual_features`: the frontier residuals and F's eigenvalue gap shift (eV)."""


COULOMB_SCALES = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 1.0)
"""Scales λ of the check's Coulomb response J[P(F) − P(H)] standing in for the whole response of the Fock matrix
to the density (the exchange-correlation kernel, negative, takes back part of the Coulomb one): the check estimates
the gap error at each (:func:`eqchem.inference.consistency_check.anderson_gap_errors`) and a calibration keeps the one
closest to the validation molecules' errors (``check_coulomb_scale``)."""

RESPONSE_FIELD = "check_gap_error_estimates_ev"
"""The row field of the check's gap error estimates (eV, predicted − estimated SCF gap), one per
:data:`COULOMB_SCALES`: what the response score (``check_signal = "response"``) takes."""


def discrepancy_field(source: str, signal: str | None = None) -> str:
    """The row field (and :class:`~eqchem.inference.uncertainty.Uncertainty` field) holding the signed discrepancy
    (eV) a check by ``source`` scores: "partner", the partner model's gap difference; "fock", the Fock build's gap
    shift of ``signal`` (:data:`FOCK_SIGNALS`)."""
    return "check_partner_gap_diff_ev" if source == "partner" else FOCK_SIGNALS[signal]


def shift_alone_auc(discrepancy: np.ndarray, wrong: np.ndarray) -> float:
    """ROC AUC for the ``wrong`` gaps (bool) of |discrepancy − its median over the right gaps| alone (no σ)."""
    return auc(wrong.astype(bool), np.abs(discrepancy - np.median(discrepancy[~wrong.astype(bool)])))


def spearman(est: Sequence[float], actual: Sequence[float]) -> float:
    """Spearman rank correlation of estimated vs actual values; nan with fewer than 3 pairs or constant input."""
    est, actual = np.asarray(est, dtype=float), np.asarray(actual, dtype=float)
    if est.shape != actual.shape:
        raise ValueError(f"spearman: {est.shape} estimates vs {actual.shape} actual values")
    if est.size < 3:
        return math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # constant input: scipy warns and returns nan
        return float(stats.spearmanr(est, actual)[0])


def coverage(errors: Sequence[float], sigmas: Sequence[float]) -> float:
    """Fraction of |error| ≤ σ (1 σ; a calibrated Gaussian gives 0.683); nan when empty."""
    errors, sigmas = np.asarray(errors, dtype=float), np.asarray(sigmas, dtype=float)
    if errors.shape != sigmas.shape:
        raise ValueError(f"coverage: {errors.shape} errors vs {sigmas.shape} sigmas")
    return float(np.mean(np.abs(errors) <= sigmas)) if errors.size else math.nan


def reliability_table(errors: Sequence[float], sigmas: Sequence[float], bins: int = 5,
                      min_per_bin: int = 5) -> list[dict[str, float]]:
    """Bins of equal counts in increasing σ (at most ``bins``, fewer so each holds ≥ ``min_per_bin`` rows,
    at least one bin when any rows). Each bin: ``n``, ``sigma_lo``/``sigma_hi`` (σ range), ``sigma_mean``
    (RMS of σ: the predicted RMS error), ``rms_error`` (observed RMS error), ``coverage`` (fraction
    |error| ≤ σ). Units are those of the inputs. Calibrated: rms_error ≈ sigma_mean in every bin."""
    errors, sigmas = np.asarray(errors, dtype=float), np.asarray(sigmas, dtype=float)
    if errors.shape != sigmas.shape:
        raise ValueError(f"reliability_table: {errors.shape} errors vs {sigmas.shape} sigmas")
    n = errors.size
    if n == 0:
        return []
    nbins = max(1, min(bins, n // max(1, min_per_bin)))
    order = np.argsort(sigmas, kind="stable")
    table = []
    for idx in np.array_split(order, nbins):
        e, s = errors[idx], sigmas[idx]
        table.append({"n": int(idx.size), "sigma_lo": float(s.min()), "sigma_hi": float(s.max()),
                      "sigma_mean": float(np.sqrt(np.mean(s ** 2))), "rms_error": float(np.sqrt(np.mean(e ** 2))),
                      "coverage": float(np.mean(np.abs(e) <= s))})
    return table


def auc(labels: Sequence[bool], scores: Sequence[float]) -> float:
    """ROC AUC = Mann–Whitney U / (n_pos n_neg): probability a positive scores above a negative, ties ½;
    nan when either class is empty."""
    labels, scores = np.asarray(labels, dtype=bool), np.asarray(scores, dtype=float)
    if labels.shape != scores.shape:
        raise ValueError(f"auc: {labels.shape} labels vs {scores.shape} scores")
    n_pos = int(labels.sum())
    n_neg = labels.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return math.nan
    ranks = stats.rankdata(scores)  # average ranks: ties count ½
    u = ranks[labels].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def _value(row: dict, key: str) -> float | None:
    v = row.get(key)
    if v is None:
        return None
    v = float(v)
    return v if math.isfinite(v) else None


def _columns(rows: Sequence[dict], *keys: str) -> tuple[np.ndarray, ...]:
    """Float columns of ``keys`` over the rows that have all of them finite."""
    out: list[list[float]] = [[] for _ in keys]
    for row in rows:
        vals = [_value(row, k) for k in keys]
        if all(v is not None for v in vals):
            for col, v in zip(out, vals):
                col.append(v)
    return tuple(np.asarray(col, dtype=float) for col in out)


def _finite(x: float) -> float | None:
    """nan -> None, so the report is strict JSON."""
    return None if x is None or not math.isfinite(x) else float(x)


def check_auc_key(gap_threshold_ev: float = 0.3) -> str:
    """The AUC key in ``report["check"]``: ``auc_gap_error_above_0.3_ev`` for the default threshold."""
    return f"auc_gap_error_above_{gap_threshold_ev:g}_ev"


def calibration_report(rows: Sequence[dict[str, Any]], gap_threshold_ev: float = 0.3) -> dict[str, Any]:
    """Calibration summary of evaluation rows; JSON-able (undefined values are None, never nan).

    Keys:

    - ``n_molecules``: len(rows);
    - ``h_mae_n``: rows with both ``h_mae_uEh`` and ``uncertainty_h_mae_uEh``; over those,
      ``h_mae_spearman`` (rank correlation estimated vs actual; None below 3 rows),
      ``h_mae_mean_estimated_uEh``, ``h_mae_mean_actual_uEh``;
    - ``homo``, ``lumo``, ``gap``, ``dipole`` (only those with rows having error and σ): ``n``,
      ``coverage_1sigma`` (fraction |error| ≤ σ), ``mean_sigma`` (mean σ), ``rms_sigma``, ``rms_error``
      (eV or D), ``reliability`` (:func:`reliability_table` bins);
    - ``check`` (only when some row has ``check_score_ev`` and ``gap_error_ev``): ``n``,
      ``gap_threshold_ev``, ``n_positive`` (|gap error| > threshold), ``auc_gap_error_above_<t>_ev``
      (see :func:`check_auc_key`; scores = check_score_ev), and over rows with ``flagged`` and
      ``gap_error_ev``: ``n_flagged``, ``flag_precision`` (positives among flagged), ``flag_recall``
      (flagged among positives); ``auc_fock`` / ``auc_partner`` and ``n_fock`` / ``n_partner``: each source's
      score alone over the rows that have it; ``auc_first_order_shift_alone`` / ``auc_eigenvalues_shift_alone``:
      each Fock gap shift (:data:`FOCK_SIGNALS`) beyond its median over the right gaps, without the σ;
      ``auc_residuals_alone``: the geometric mean of the frontier residuals (:data:`RESIDUAL_FIELDS`) alone;
      over rows with the check's estimate of the gap error (``check_gap_error_ev``): ``n_estimate``,
      ``estimate_mae_ev`` (mean |estimate − actual gap error|), ``gap_error_mae_ev`` (mean |actual error|: what
      the estimate is to beat), ``estimate_correlation`` (Pearson, signed);
    - ``in_domain_fraction``: fraction of rows with ``in_domain`` set that are in domain (None if none).
    """
    rows = list(rows)
    report: dict[str, Any] = {"n_molecules": len(rows)}
    est, act = _columns(rows, "uncertainty_h_mae_uEh", "h_mae_uEh")
    report["h_mae_n"] = int(est.size)
    report["h_mae_spearman"] = _finite(spearman(est, act))
    report["h_mae_mean_estimated_uEh"] = float(est.mean()) if est.size else None
    report["h_mae_mean_actual_uEh"] = float(act.mean()) if act.size else None

    for name, (err_key, sig_key, _unit) in QUANTITIES.items():
        err, sig = _columns(rows, err_key, sig_key)
        if err.size == 0:
            continue
        report[name] = {"n": int(err.size), "coverage_1sigma": coverage(err, sig), "mean_sigma": float(sig.mean()),
                        "rms_sigma": float(np.sqrt(np.mean(sig ** 2))),
                        "rms_error": float(np.sqrt(np.mean(err ** 2))), "reliability": reliability_table(err, sig)}

    score, gap_err = _columns(rows, "check_score_ev", "gap_error_ev")
    if score.size:
        positive = np.abs(gap_err) > gap_threshold_ev
        check: dict[str, Any] = {"n": int(score.size), "gap_threshold_ev": float(gap_threshold_ev),
                                 "n_positive": int(positive.sum()),
                                 check_auc_key(gap_threshold_ev): _finite(auc(positive, score))}
        flagged, gap_err_f = _columns(rows, "flagged", "gap_error_ev")
        flagged, pos_f = flagged.astype(bool), np.abs(gap_err_f) > gap_threshold_ev
        tp = int(np.sum(flagged & pos_f))
        for source in ("fock", "partner"):  # each score alone, over the rows that have it
            sc, ge = _columns(rows, f"check_{source}_score_ev", "gap_error_ev")
            if sc.size:
                check[f"auc_{source}"] = _finite(auc(np.abs(ge) > gap_threshold_ev, sc))
                check[f"n_{source}"] = int(sc.size)
        r_homo, r_lumo, ge = _columns(rows, *RESIDUAL_FIELDS, "gap_error_ev")
        if r_homo.size:  # the frontier residuals alone: their geometric mean, without the σ
            check["auc_residuals_alone"] = _finite(auc(np.abs(ge) > gap_threshold_ev, np.sqrt(r_homo * r_lumo)))
        est, ge = _columns(rows, "check_gap_error_ev", "gap_error_ev")
        if est.size:  # the check's own estimate of the gap error against the actual one
            check.update(n_estimate=int(est.size), estimate_mae_ev=float(np.mean(np.abs(est - ge))),
                         gap_error_mae_ev=float(np.mean(np.abs(ge))),
                         estimate_correlation=_finite(float(np.corrcoef(est, ge)[0, 1])) if est.size > 2 else None)
        for signal, key in FOCK_SIGNALS.items():  # each Fock shift alone (beyond its median over right gaps)
            d, ge = _columns(rows, key, "gap_error_ev")
            pos = np.abs(ge) > gap_threshold_ev
            if d.size and (~pos).any():
                check[f"auc_{signal}_shift_alone"] = _finite(shift_alone_auc(d, pos))
        check["n_flagged"] = int(flagged.sum())
        check["flag_precision"] = tp / int(flagged.sum()) if flagged.any() else None
        check["flag_recall"] = tp / int(pos_f.sum()) if pos_f.any() else None
        report["check"] = check

    in_domain = [bool(r["in_domain"]) for r in rows if r.get("in_domain") is not None]
    report["in_domain_fraction"] = float(np.mean(in_domain)) if in_domain else None
    return report


def _fmt(x: Any, spec: str, suffix: str = "") -> str:
    return "n/a" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{x:{spec}}{suffix}"


def calibration_lines(report: dict[str, Any]) -> list[str]:
    """Plain-text calibration table of a :func:`calibration_report` for the terminal ("n/a" where absent)."""
    lines = [f"calibration over {report.get('n_molecules', 0)} molecules "
             f"(targets: 1σ coverage {COVERAGE_RANGE[0]:.0%}–{COVERAGE_RANGE[1]:.0%}, Spearman ≥ {SPEARMAN_FLOOR}, "
             f"check AUC ≥ {AUC_FLOOR})",
             f"  {'quantity':<12}{'n':>6}{'1σ cover':>10}{'mean σ':>10}{'RMS err':>10}"]
    for name, (_e, _s, unit) in QUANTITIES.items():
        q = report.get(name) or {}
        lines.append(f"  {name + ' (' + unit + ')':<12}{_fmt(q.get('n'), 'd'):>6}"
                     f"{_fmt(None if q.get('coverage_1sigma') is None else 100 * q['coverage_1sigma'], '.1f', ' %'):>10}"
                     f"{_fmt(q.get('mean_sigma'), '.3f'):>10}{_fmt(q.get('rms_error'), '.3f'):>10}")
    lines.append(f"  H MAE Spearman (estimated vs actual): {_fmt(report.get('h_mae_spearman'), '.3f')} "
                 f"over {report.get('h_mae_n', 0)}; mean estimated {_fmt(report.get('h_mae_mean_estimated_uEh'), '.1f')}"
                 f" vs actual {_fmt(report.get('h_mae_mean_actual_uEh'), '.1f')} µEh")
    check = report.get("check")
    if check:
        t = check["gap_threshold_ev"]
        lines.append(f"  check AUC (|gap error| > {t:g} eV): {_fmt(check.get(check_auc_key(t)), '.3f')} "
                     f"({check['n_positive']} of {check['n']} positive); flag precision "
                     f"{_fmt(check.get('flag_precision'), '.2f')}, recall {_fmt(check.get('flag_recall'), '.2f')}")
        for source, what in (("fock", "one Fock build"), ("partner", "partner model")):
            if check.get(f"n_{source}"):
                lines.append(f"    by the {what}'s score alone: AUC {_fmt(check.get(f'auc_{source}'), '.3f')} over "
                             f"{check[f'n_{source}']}")
        shifts = [f"{signal.replace('_', ' ')} {_fmt(check.get(f'auc_{signal}_shift_alone'), '.3f')}"
                  for signal in FOCK_SIGNALS if f"auc_{signal}_shift_alone" in check]
        if shifts:
            lines.append(f"    by the Fock build's gap shift alone, without σ: AUC {', '.join(shifts)}")
        if check.get("n_estimate"):
            lines.append(f"    the check's estimate of the gap error: within {_fmt(check['estimate_mae_ev'], '.3f')} eV "
                         f"of the actual errors on average (those average {_fmt(check['gap_error_mae_ev'], '.3f')} eV; "
                         f"correlation {_fmt(check.get('estimate_correlation'), '.2f')}; {check['n_estimate']} molecules)")
        if "auc_residuals_alone" in check:
            lines.append(f"    by the frontier orbitals' residuals in F alone, without σ: AUC "
                         f"{_fmt(check['auc_residuals_alone'], '.3f')}")
    else:
        lines.append("  check AUC: n/a")
    frac = report.get("in_domain_fraction")
    lines.append(f"  in domain: {_fmt(None if frac is None else 100 * frac, '.1f', ' %')}")
    return lines


def plot_reliability(report: dict[str, Any], path: str | Path) -> None:
    """PNG at ``path``: one panel per quantity (homo, lumo, gap, dipole), predicted RMS σ per bin (x) vs
    observed RMS error (y) with the y = x line; titles give the 1σ coverage."""
    try:
        import matplotlib
    except ImportError as exc:
        raise ImportError("plot_reliability needs matplotlib (pip install matplotlib)") from exc
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(QUANTITIES), figsize=(4 * len(QUANTITIES), 4))
    for ax, (name, (_e, _s, unit)) in zip(axes, QUANTITIES.items()):
        q = report.get(name)
        if not q or not q.get("reliability"):
            ax.set_title(f"{name}: no data")
            ax.set_axis_off()
            continue
        x = [b["sigma_mean"] for b in q["reliability"]]
        y = [b["rms_error"] for b in q["reliability"]]
        hi = 1.05 * max(max(x), max(y)) or 1.0
        ax.plot([0, hi], [0, hi], "k--", lw=0.8, label="y = x")
        ax.plot(x, y, "o-", label="bins")
        ax.set_xlim(0, hi)
        ax.set_ylim(0, hi)
        ax.set_xlabel(f"predicted RMS σ ({unit})")
        ax.set_ylabel(f"observed RMS error ({unit})")
        ax.set_title(f"{name}: 1σ coverage {100 * q['coverage_1sigma']:.0f} % (n={q['n']})")
        ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
