"""How well each form of the ``--check`` score tells wrong gaps (|error| > 0.3 eV) on validation molecules, by
repeated 5-fold cross-validation: each form is fitted on four fifths of the rows and scores the fifth, and the ROC
AUC is taken over the pooled held-out scores (mean over repeats). What sessions 23 and 24 chose the check's form by
(:mod:`eqchem.model.calibration`); for reports with the check's gap error estimates, also how close those lie to the
actual errors at each scale of the Coulomb response.

    python bench/check_scores.py REPORT.json... [--repeats 20] [--out bench/results/check_scores]

REPORT: what ``eqchem calibrate --report`` writes (the validation rows with their calibrated gap σ and the check's
measurements: frontier residuals, gap shifts, gap error estimates). Forms: the check's estimate of the gap error
beyond its center (session 24's, :func:`eqchem.inference.calibrate_check.fit_response_check`, where the report has
the estimates); the least-squares power law of
:func:`eqchem.model.calibration.residual_features` with all of its terms (session 23's form) or some of them, and
session 22's score, a gap shift and the σ in quadrature (:func:`eqchem.inference.calibrate_check.fit_check`).
"""
from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import numpy as np

POWER_LAW_FORMS = {
    "σ, residuals and eigenvalue shift (session 23)": (0, 1, 2, 3, 4),
    "σ and residuals": (0, 1, 2, 3),
    "residuals and eigenvalue shift": (0, 2, 3, 4),
    "residuals alone": (0, 2, 3),
    "σ and eigenvalue shift": (0, 1, 4),
}
"""Name -> the columns of :func:`~eqchem.model.calibration.residual_features` (0: the constant) a form keeps."""
QUADRATURE_FORM = "session 22: a gap shift and σ in quadrature"
RESPONSE_FORM = "the check's estimate of the gap error (session 24, shipped)"


def _columns(rows: list[dict]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row: |gap error| (eV), the features without the shift's center (shift raw in the last column), σ."""
    from eqchem.calibration_metrics import RESIDUAL_SCORE_FIELDS

    err = np.array([abs(r["gap_error_ev"]) for r in rows])
    raw = np.array([[r["uncertainty_gap_ev"], *(r[k] for k in RESIDUAL_SCORE_FIELDS)] for r in rows], dtype=float)
    return err, raw, raw[:, 0]


def power_law_scores(err: np.ndarray, raw: np.ndarray, train: np.ndarray, test: np.ndarray,
                     columns: tuple[int, ...], wrong_gap_ev: float = 0.3) -> np.ndarray:
    """Held-out log-scores of the power law on ``columns``, fitted on the ``train`` rows as the calibration fits the
    shipped form (the shift's center: the median over the training rows' right gaps)."""
    from eqchem.model.calibration import RESIDUAL_OFFSET_EV, residual_features

    right = err[train] <= wrong_gap_ev
    center = float(np.median(raw[train][right, 3])) if right.any() else 0.0
    x = np.array([residual_features(s, a, b, d - center) for s, a, b, d in raw])[:, list(columns)]
    coef = np.linalg.lstsq(x[train], np.log(err[train] + RESIDUAL_OFFSET_EV), rcond=None)[0]
    return x[test] @ coef


def quadrature_scores(rows: list[dict], sigma: np.ndarray, train: np.ndarray, test: np.ndarray) -> np.ndarray:
    """Held-out scores of session 22's form (its signal, center and σ weight chosen on the ``train`` rows)."""
    from eqchem.inference.calibrate import UNIT
    from eqchem.inference.calibrate_check import fit_check

    fit = fit_check([rows[i] for i in train], sigma[train], "fock")
    cal = replace(UNIT, **{k: v for k, v in fit.items() if k != "check_threshold_ev"})
    return np.array([cal.check_score("fock", sigma[i], rows[i]) for i in test])


def response_scores(rows: list[dict], train: np.ndarray, test: np.ndarray) -> np.ndarray:
    """Held-out scores of the response form (its Coulomb scale and center fitted on the ``train`` rows as the
    calibration fits them)."""
    from eqchem.inference.calibrate import UNIT
    from eqchem.inference.calibrate_check import fit_response_check

    cal = replace(UNIT, **fit_response_check([rows[i] for i in train]))
    return np.array([cal.check_score("fock", 0.0, rows[i]) for i in test])


def estimate_errors(rows: list[dict]) -> dict[str, float]:
    """{Coulomb scale: mean |estimate − actual gap error| (eV)} over the rows with the check's estimates, and the
    mean |actual gap error| ("errors") beside them."""
    from eqchem.calibration_metrics import COULOMB_SCALES, RESPONSE_FIELD

    got = [r for r in rows if r.get(RESPONSE_FIELD) is not None]
    if not got:
        return {}
    err = np.array([r["gap_error_ev"] for r in got])
    est = np.array([r[RESPONSE_FIELD] for r in got])
    return {**{f"{s:g}": float(np.mean(np.abs(est[:, i] - err))) for i, s in enumerate(COULOMB_SCALES)},
            "errors": float(np.mean(np.abs(err)))}


def cross_validated_auc(rows: list[dict], repeats: int = 20, folds: int = 5, seed: int = 0,
                        wrong_gap_ev: float = 0.3) -> dict[str, float]:
    """{form: mean over ``repeats`` of the AUC of the pooled held-out scores} over validation ``rows``."""
    from eqchem.calibration_metrics import auc

    err, raw, sigma = _columns(rows)
    wrong = err > wrong_gap_ev
    rng = np.random.default_rng(seed)
    from eqchem.calibration_metrics import RESPONSE_FIELD

    response = all(r.get(RESPONSE_FIELD) is not None for r in rows)
    out: dict[str, list[float]] = {name: [] for name in ((RESPONSE_FORM,) if response else ()) + (
        *POWER_LAW_FORMS, QUADRATURE_FORM)}
    for _ in range(repeats):
        order = rng.permutation(len(rows))
        scores = {name: np.zeros(len(rows)) for name in out}
        for f in range(folds):
            test = order[f::folds]
            train = np.setdiff1d(order, test)
            for name, columns in POWER_LAW_FORMS.items():
                scores[name][test] = power_law_scores(err, raw, train, test, columns, wrong_gap_ev)
            scores[QUADRATURE_FORM][test] = quadrature_scores(rows, sigma, train, test)
            if response:
                scores[RESPONSE_FORM][test] = response_scores(rows, train, test)
        for name in out:
            out[name].append(auc(wrong, scores[name]))
    return {name: float(np.mean(v)) for name, v in out.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("reports", nargs="+", type=Path)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--out", type=Path, default=Path("bench/results/check_scores"))
    args = ap.parse_args()
    from eqchem.inference.calibrate import report_rows

    results = {}
    for path in args.reports:
        rows = report_rows(path)
        n_wrong = sum(abs(r["gap_error_ev"]) > 0.3 for r in rows)
        results[path.name] = {"n": len(rows), "n_wrong": n_wrong, "auc": cross_validated_auc(rows, args.repeats),
                              "estimate_mae_ev": estimate_errors(rows)}
        print(f"{path.name}: {len(rows)} validation molecules, {n_wrong} with |gap error| > 0.3 eV", flush=True)
    names = list(dict.fromkeys(name for v in results.values() for name in v["auc"]))
    lines = ["| check score form | " + " | ".join(f"{k} ({v['n']}, {v['n_wrong']} wrong)" for k, v in results.items())
             + " |", "|---|" + "---:|" * len(results)]
    lines += [f"| {name} | " + " | ".join(f"{v['auc'][name]:.3f}" if name in v["auc"] else "n/a"
                                          for v in results.values()) + " |" for name in names]
    text = "\n".join(lines) + (f"\n\n5-fold cross-validated ROC AUC for |gap error| > 0.3 eV, mean of {args.repeats} "
                               "repeats (bench/check_scores.py).\n")
    maes = {k: v["estimate_mae_ev"] for k, v in results.items() if v["estimate_mae_ev"]}
    if maes:
        scales = [k for k in next(iter(maes.values())) if k != "errors"]
        text += ("\n| Coulomb scale λ | " + " | ".join(maes) + " |\n|---|" + "---:|" * len(maes) + "\n"
                 + "".join(f"| {s} | " + " | ".join(f"{m[s]:.3f}" for m in maes.values()) + " |\n" for s in scales)
                 + "| (mean \\|gap error\\| itself) | " + " | ".join(f"{m['errors']:.3f}" for m in maes.values())
                 + " |\n\nMean |estimate − actual gap error| (eV) of the check's estimate at each scale of its "
                 "Coulomb response, over all validation molecules (the calibration keeps the smallest).\n")
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "check_scores.md").write_text(text)
    (args.out / "check_scores.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
