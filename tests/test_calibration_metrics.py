"""Calibration metrics on synthetic data with known answers (issue 27)."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from eqchem import calibration_metrics as cm

GAUSS_1SIGMA = 0.6826894921  # P(|z| ≤ 1)
GAUSS_3SIGMA = 0.9973002039


def gaussian(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Errors drawn N(0, σ²) with σ spread over a decade (log-normal)."""
    rng = np.random.default_rng(seed)
    sigma = np.exp(rng.normal(np.log(0.1), 0.6, n))
    return rng.normal(0.0, sigma), sigma


def test_coverage_of_calibrated_and_too_wide_sigmas():
    err, sig = gaussian(20000, 0)
    assert cm.coverage(err, sig) == pytest.approx(GAUSS_1SIGMA, abs=0.012)
    assert cm.coverage(err, 3 * sig) == pytest.approx(GAUSS_3SIGMA, abs=0.002)
    assert cm.coverage(err, sig / 3) == pytest.approx(0.2611, abs=0.012)  # P(|z| ≤ 1/3)
    assert cm.coverage([0.1, -0.1, 0.3], [0.1, 0.2, 0.2]) == pytest.approx(2 / 3)  # |e| ≤ σ inclusive, signed e
    assert math.isnan(cm.coverage([], []))


def test_reliability_bins_match_sigma_when_calibrated():
    err, sig = gaussian(20000, 1)
    table = cm.reliability_table(err, sig, bins=5)
    assert len(table) == 5 and [b["n"] for b in table] == [4000] * 5
    for lo, hi in zip(table[:-1], table[1:]):
        assert lo["sigma_hi"] <= hi["sigma_lo"]  # quantile bins in increasing σ
    for b in table:
        assert b["sigma_lo"] <= b["sigma_mean"] <= b["sigma_hi"]
        assert b["rms_error"] == pytest.approx(b["sigma_mean"], rel=0.05)
        assert b["coverage"] == pytest.approx(GAUSS_1SIGMA, abs=0.03)
    wide = cm.reliability_table(err, 3 * sig)
    for b in wide:
        assert b["rms_error"] == pytest.approx(b["sigma_mean"] / 3, rel=0.05)


def test_reliability_small_and_exact():
    # two bins of 5: σ = 1..10; errors chosen so RMS values are exact
    sig = np.arange(1.0, 11.0)
    err = np.array([1, -1, 1, -1, 1, 2, -2, 2, -2, 2], dtype=float)
    table = cm.reliability_table(err, sig, bins=5)
    assert len(table) == 2
    assert table[0]["n"] == table[1]["n"] == 5
    assert table[0]["sigma_mean"] == pytest.approx(math.sqrt(np.mean(np.arange(1, 6) ** 2)))
    assert table[0]["rms_error"] == pytest.approx(1.0) and table[1]["rms_error"] == pytest.approx(2.0)
    assert table[0]["coverage"] == 1.0
    assert len(cm.reliability_table([0.1, 0.2, 0.3], [1, 1, 1])) == 1
    assert cm.reliability_table([], []) == []


def test_spearman():
    x = np.linspace(0.1, 5.0, 40)
    assert cm.spearman(x ** 3 + 1, x) == pytest.approx(1.0)
    assert cm.spearman(-np.exp(x), x) == pytest.approx(-1.0)
    assert math.isnan(cm.spearman([1.0, 2.0], [1.0, 2.0]))
    assert math.isnan(cm.spearman([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]))


@pytest.mark.filterwarnings("error")  # one class: nan without dividing by zero
def test_auc():
    labels = np.array([0, 0, 0, 1, 1], dtype=bool)
    assert cm.auc(labels, [0.1, 0.2, 0.3, 0.8, 0.9]) == 1.0
    assert cm.auc(labels, [0.9, 0.8, 0.7, 0.2, 0.1]) == 0.0
    assert cm.auc(labels, [0.5] * 5) == 0.5
    assert cm.auc([1, 0, 1, 0], [0.9, 0.9, 0.1, 0.0]) == pytest.approx(0.625)  # one tie: ½
    assert math.isnan(cm.auc([True, True], [0.1, 0.2]))
    assert math.isnan(cm.auc([False, False], [0.1, 0.2]))


def test_auc_matches_pairwise_definition():
    rng = np.random.default_rng(3)
    labels = rng.random(60) < 0.3
    scores = np.round(rng.normal(labels * 0.8, 1.0), 1)  # rounded: many ties
    pos, neg = scores[labels], scores[~labels]
    pairwise = (np.sum(pos[:, None] > neg[None, :]) + 0.5 * np.sum(pos[:, None] == neg[None, :])) / (
        pos.size * neg.size)
    assert cm.auc(labels, scores) == pytest.approx(pairwise)


def full_rows(n: int = 400, seed: int = 5) -> list[dict]:
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        s = float(np.exp(rng.normal(np.log(0.15), 0.7)))
        gap_err = float(rng.normal(0.0, s))
        h_sigma = float(np.exp(rng.normal(np.log(50.0), 0.5)))
        rows.append({
            "h_mae_uEh": h_sigma * float(np.exp(rng.normal(0, 0.1))), "uncertainty_h_mae_uEh": h_sigma,
            "homo_error_ev": float(rng.normal(0, s)), "uncertainty_homo_ev": s,
            "lumo_error_ev": float(rng.normal(0, s)), "uncertainty_lumo_ev": s,
            "gap_error_ev": gap_err, "uncertainty_gap_ev": s,
            "dipole_error_debye": abs(float(rng.normal(0, 0.1))), "uncertainty_dipole_debye": 0.1,
            "check_score_ev": abs(gap_err) * 2.0, "flagged": abs(gap_err) > 0.3, "in_domain": i % 4 != 0,
        })
    return rows


def test_report_on_full_rows():
    rows = full_rows()
    rep = cm.calibration_report(rows)
    json.dumps(rep, allow_nan=False)
    assert rep["n_molecules"] == rep["h_mae_n"] == 400
    assert rep["h_mae_spearman"] > 0.9
    assert rep["h_mae_mean_estimated_uEh"] == pytest.approx(np.mean([r["uncertainty_h_mae_uEh"] for r in rows]))
    assert rep["h_mae_mean_actual_uEh"] == pytest.approx(np.mean([r["h_mae_uEh"] for r in rows]))
    for q in ("homo", "lumo", "gap", "dipole"):
        part = rep[q]
        assert part["n"] == 400 and sum(b["n"] for b in part["reliability"]) == 400
        assert part["coverage_1sigma"] == pytest.approx(GAUSS_1SIGMA, abs=0.08)
        assert set(part) >= {"coverage_1sigma", "mean_sigma", "rms_error", "reliability"}
    assert rep["dipole"]["mean_sigma"] == pytest.approx(0.1)
    check = rep["check"]
    n_pos = sum(abs(r["gap_error_ev"]) > 0.3 for r in rows)
    assert check["n_positive"] == n_pos > 0
    assert check["auc_gap_error_above_0.3_ev"] == 1.0  # score is monotone in |gap error|
    assert check["flag_precision"] == 1.0 and check["flag_recall"] == 1.0
    assert rep["in_domain_fraction"] == pytest.approx(0.75)
    # a looser threshold relabels: the key follows it
    assert cm.calibration_report(rows, gap_threshold_ev=0.5)["check"][cm.check_auc_key(0.5)] == 1.0


def test_flag_precision_recall_counts():
    rows = [{"gap_error_ev": g, "check_score_ev": s, "flagged": f} for g, s, f in
            [(0.5, 0.9, True), (0.4, 0.1, False), (0.1, 0.8, True), (0.0, 0.0, False), (-0.6, 0.7, True), (0.05, 0.2, True)]]
    check = cm.calibration_report(rows)["check"]
    assert check["n_positive"] == 3 and check["n_flagged"] == 4
    assert check["flag_precision"] == pytest.approx(2 / 4) and check["flag_recall"] == pytest.approx(2 / 3)
    assert check["auc_gap_error_above_0.3_ev"] == pytest.approx(6 / 9)  # pos 0.9,0.1,0.7 vs neg 0.8,0.0,0.2


def test_rows_missing_keys_are_skipped(tmp_path):
    rows = full_rows(60)
    for r in rows:
        del r["check_score_ev"], r["flagged"]
    for r in rows[:20]:
        del r["homo_error_ev"]
    for r in rows[20:30]:
        r["uncertainty_lumo_ev"] = None
        r["uncertainty_h_mae_uEh"] = float("nan")
    for r in rows:
        del r["dipole_error_debye"]
    rows.append({})
    rep = cm.calibration_report(rows)
    json.dumps(rep, allow_nan=False)
    assert "check" not in rep
    assert "dipole" not in rep
    assert rep["n_molecules"] == 61
    assert rep["homo"]["n"] == 40 and rep["lumo"]["n"] == 50 and rep["gap"]["n"] == 60
    assert rep["h_mae_n"] == 50
    lines = cm.calibration_lines(rep)
    text = "\n".join(lines)
    assert "check AUC: n/a" in text
    dip = next(line for line in lines if line.strip().startswith("dipole"))
    assert dip.split()[2:] == ["n/a"] * 4
    assert any(line.strip().startswith("homo") and "n/a" not in line for line in lines)
    assert cm.calibration_report([{}])["h_mae_spearman"] is None


def test_calibration_lines_full():
    lines = cm.calibration_lines(cm.calibration_report(full_rows(100)))
    text = "\n".join(lines)
    assert "n/a" not in text
    assert "check AUC (|gap error| > 0.3 eV): 1.000" in text
    assert "in domain: 75.0 %" in text


def test_plot_reliability(tmp_path):
    pytest.importorskip("matplotlib")
    rows = full_rows(100)
    for r in rows:
        del r["dipole_error_debye"]  # an empty panel must not break the plot
    path = tmp_path / "sub" / "reliability.png"
    cm.plot_reliability(cm.calibration_report(rows), path)
    data = path.read_bytes()
    assert len(data) > 1000 and data[:8] == b"\x89PNG\r\n\x1a\n"
