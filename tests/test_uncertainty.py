"""Every prediction says how far to trust it (issue 27): readout leverages, calibrated estimates, the domain
verdict, the check, their file round trip and their place in the outputs."""
from __future__ import annotations

import json

import numpy as np
import pytest

from .conftest import WATER
from .test_reference_values import EXAMPLES


def with_estimates(model, molecules, calibration=None):
    """``model`` with a posterior summed over ``molecules`` ((numbers, positions) pairs) and ``calibration``
    (default: the raw statistics, :data:`eqchem.inference.calibrate.UNIT`, with a finite check threshold)."""
    from dataclasses import replace

    from eqchem.inference.calibrate import UNIT, fit_posterior
    from eqchem.model.calibration import ModelUncertainty

    cal = calibration or replace(UNIT, check_threshold_ev=0.05)
    return model.with_uncertainty(ModelUncertainty(fit_posterior(model, molecules), cal))


def _water_set(n=6, seed=0):
    rng = np.random.default_rng(seed)
    z, r = np.array(WATER[0]), np.array(WATER[1], dtype=float)
    return [(z, r + rng.normal(scale=0.03, size=r.shape)) for _ in range(n)]


def _excess(domain):
    """(size, geometry) excess of a :class:`eqchem.inference.uncertainty.Domain`."""
    return domain.size_excess, domain.geometry_excess


def _rotation(seed=1):
    from scipy.spatial.transform import Rotation

    return Rotation.random(random_state=seed).as_matrix()


def test_leverage_is_small_on_the_training_features_and_grows_away_from_them():
    import torch

    from eqchem.model.posterior import GramAccumulator, leverage
    from eqchem.model.layers import TypedLinear

    torch.manual_seed(0)
    readout = TypedLinear("4x0e+2x1o", "3x0e+1x1o").double()
    x = torch.randn(40, readout.irreps_in.dim, dtype=torch.float64)
    acc = GramAccumulator(readout)
    acc.add(x)
    inv = acc.whitening(ridge=1e-12)
    h = leverage(readout, inv, x)
    # a least-squares hat matrix: each training sample's leverage lies in [0, 1]; per type their sum is the rank
    # of the features (0e: 4 + the bias, 1o: 2), averaged over the outputs' components (3 x 1 and 1 x 3)
    assert torch.all(h >= -1e-12) and torch.all(h <= 1 + 1e-9)
    assert float(h.sum()) == pytest.approx((3 * 5 + 1 * 2) / (3 * 1 + 1 * 3), rel=1e-6)
    far = leverage(readout, inv, 10 * x[:5])
    assert torch.all(far > 10 * h[:5])  # 10x the features: ~100x the leverage (minus the bias direction)


def test_estimates_are_invariant_under_rotation_translation_reflection_and_permutation():
    from eqchem.inference.predict import predict

    from .test_prediction_pipeline import tiny_model

    waters = _water_set()
    model = with_estimates(tiny_model("none"), waters)
    z, r = waters[0][0], waters[0][1] + np.array([[0.05, -0.02, 0.01], [0, 0, 0], [0, 0, 0]])
    base = predict((z, r), model, check=True).uncertainty
    perm = np.array([2, 0, 1])
    for zz, rr in ((z, r @ _rotation().T + np.array([1.0, -2.0, 0.5])), (z, -r), (z[perm], r[perm])):
        u = predict((zz, rr), model, check=True).uncertainty
        for field in ("h_mae_uEh", "homo_ev", "lumo_ev", "gap_ev", "dipole_debye", "leverage_max"):
            assert getattr(u, field) == pytest.approx(getattr(base, field), rel=1e-6), field
        for field in ("check_homo_residual_ev", "check_gap_first_order_ev", "check_gap_shift_ev"):  # the check too
            assert getattr(u, field) == pytest.approx(getattr(base, field), rel=1e-6, abs=1e-8), field
        assert u.check_gap_error_estimates_ev == pytest.approx(base.check_gap_error_estimates_ev, rel=1e-6, abs=1e-8)


def test_a_stretched_bond_is_out_of_domain_with_a_larger_estimate():
    from eqchem.inference.predict import predict
    from eqchem.inference.uncertainty import nearest_neighbour_ranges

    from dataclasses import replace

    from .test_prediction_pipeline import tiny_model

    waters = _water_set()
    model = with_estimates(tiny_model("none"), waters)
    cal = replace(model.uncertainty.calibration, nearest_neighbour=nearest_neighbour_ranges(waters),
                  leverage_limit=1e9)
    model = model.with_uncertainty(replace(model.uncertainty, calibration=cal))
    z, r = waters[0]
    ok = predict((z, r), model).uncertainty
    far = r.copy()
    far[1] = r[0] + 1.3 * (r[1] - r[0])
    bad = predict((z, far), model).uncertainty
    assert ok.in_domain and not ok.reasons
    assert not bad.in_domain and "nearest neighbour" in bad.reasons[0] and "atom 2 (H)" in bad.reasons[0]
    assert bad.h_mae_uEh > ok.h_mae_uEh and bad.leverage_max > ok.leverage_max


def test_size_outside_the_training_range_is_out_of_domain():
    from eqchem.inference.calibrate import UNIT
    from eqchem.inference.uncertainty import domain_verdict

    z, r = np.array(WATER[0]), np.array(WATER[1])
    assert domain_verdict(z, r, UNIT, [3, 20], [1, 9]).reasons == []
    assert "3 atoms" in domain_verdict(z, r, UNIT, [10, 25], [1, 9]).reasons[0]
    assert "1 heavy atoms" in domain_verdict(z, r, UNIT, [3, 25], [2, 9]).reasons[0]


def test_nearest_neighbour_ranges_are_per_element_pair():
    """An S-H bond's 1.34 Å is in domain where training had S-H bonds; a C-H bond stretched to 1.34 Å is not."""
    from dataclasses import replace

    from eqchem.inference.calibrate import UNIT
    from eqchem.inference.uncertainty import domain_verdict, nearest_neighbour_ranges

    ch = (np.array([6, 1]), np.array([[0.0, 0, 0], [1.09, 0, 0]]))
    sh = (np.array([16, 1]), np.array([[0.0, 0, 0], [1.34, 0, 0]]))
    cal = replace(UNIT, nearest_neighbour=nearest_neighbour_ranges([ch, sh]))
    assert set(cal.nearest_neighbour) == {"C-H", "H-C", "S-H", "H-S"}
    assert domain_verdict(*sh, cal, None, None).reasons == []
    stretched = (ch[0], np.array([[0.0, 0, 0], [1.34, 0, 0]]))
    assert "C-H at 1.34 Å" in domain_verdict(*stretched, cal, None, None).reasons[0]
    nh = (np.array([7, 1]), np.array([[0.0, 0, 0], [1.01, 0, 0]]))
    assert "never nearest neighbours" in domain_verdict(*nh, cal, None, None).reasons[0]


def test_calibration_fit_recovers_known_scales():
    from eqchem.inference.calibrate import fit_calibration

    rng = np.random.default_rng(0)
    rows = []
    for _ in range(30):
        lev = rng.uniform(1e-3, 1e-2)
        vh, vl = rng.uniform(0.01, 0.1, size=2)
        rows.append({"leverage_mean": lev, "leverage_max": 5 * lev, "h_mae_uEh": 7.0 * lev ** 0.5, "n_atoms": 16,
                     "uncertainty_homo_ev": np.sqrt(vh), "uncertainty_lumo_ev": np.sqrt(vl),
                     "uncertainty_gap_ev": np.sqrt(vh + vl), "homo_error_ev": 2.0 * np.sqrt(vh) * rng.choice([-1, 1]),
                     "lumo_error_ev": 0.5 * np.sqrt(vl), "gap_error_ev": -0.5 * np.sqrt(vh + vl),
                     "dipole_error_debye": 3e-4 * 7.0 * lev ** 0.5 * 4.0, "check_gap_first_order_ev": rng.uniform(-0.6, 0.0),
                     "check_partner_gap_diff_ev": rng.uniform(0.0, 0.8)})
    rows[0].update(gap_error_ev=2.0, check_gap_first_order_ev=5.0, check_partner_gap_diff_ev=5.0)  # a wrong gap: its
    cal = fit_calibration(rows[1:], {}, ["k"])                                               # score sets no threshold

    def threshold(key):  # no wrong gap to weigh the σ by: the discrepancy beyond its median alone
        d = np.array([r[key] for r in rows[1:]])
        return np.quantile(np.abs(d - np.median(d)), 0.95)

    assert cal.gap_scale == pytest.approx(0.5)
    assert cal.check_threshold_ev == pytest.approx(threshold("check_gap_first_order_ev")) and cal.check_sigma_weight == 0
    assert cal.check_center_ev == pytest.approx(np.median([r["check_gap_first_order_ev"] for r in rows[1:]]))
    assert cal.check_partner is None and cal.partner_threshold_ev == np.inf  # no partner: never by the partner
    cal = fit_calibration(rows, {}, ["k"], check_partner="accurate")
    assert cal.partner_threshold_ev == pytest.approx(threshold("check_partner_gap_diff_ev"))
    cal = fit_calibration(rows, {}, ["k"])
    assert cal.h_mae_log_slope == pytest.approx(0.5) and np.exp(cal.h_mae_log_scale) == pytest.approx(7.0)
    assert (cal.homo_scale, cal.lumo_scale) == pytest.approx((2.0, 0.5))
    assert cal.dipole_scale == pytest.approx(3e-4)
    assert cal.check_threshold_ev == pytest.approx(threshold("check_gap_first_order_ev"))  # the wrong gap's shift: top
    assert cal.leverage_limit == pytest.approx(3.0 * max(r["leverage_max"] for r in rows))


def _rows_growing_beyond(n: int, draw, rng) -> list[dict]:
    """``n`` synthetic validation rows, every other one beyond the training ranges (geometry excess 0.05-0.6, not in
    domain) with errors that grow as 1 + 2 g: H MAE 7 L^0.5 exactly, each orbital error ``draw(raw σ · growth)``."""
    rows = []
    for i in range(n):
        lev, g = rng.uniform(1e-3, 1e-2), (0.0 if i % 2 else rng.uniform(0.05, 0.6))
        vh, vl = rng.uniform(0.01, 0.1, size=2)
        grow = 1 + 2.0 * g
        rows.append({"leverage_mean": lev, "leverage_max": 5 * lev, "h_mae_uEh": 7.0 * lev ** 0.5 * grow,
                     "n_atoms": 16, "size_excess": 0.0, "geometry_excess": g, "in_domain": g == 0,
                     "uncertainty_homo_ev": np.sqrt(vh), "uncertainty_lumo_ev": np.sqrt(vl),
                     "uncertainty_gap_ev": np.sqrt(vh + vl),
                     **{f"{q}_error_ev": draw(np.sqrt(v) * grow) for q, v in (("homo", vh), ("lumo", vl), ("gap", vh + vl))},
                     "dipole_error_debye": None, "check_score_ev": None})
    return rows


def test_orbital_sigmas_cover_68_percent_of_in_domain_errors_even_heavy_tailed():
    """Laplace-distributed errors (heavy tails, like the models'): the fitted σ (orbital energies and dipole)
    covers 68 % of the in-domain validation errors, where the root mean square of error/σ would cover 76 %; the rows beyond the training
    ranges set the growth so that σ covers 68 % of theirs too (the Gaussian likelihood would have covered ~76 %)."""
    from eqchem.inference.calibrate import fit_calibration
    from eqchem.inference.uncertainty import RawStatistics, estimate

    rng = np.random.default_rng(4)
    rows = _rows_growing_beyond(800, lambda scale: rng.laplace(0, 0.3 * scale), rng)
    for r in rows:
        r["dipole_error_debye"] = rng.laplace(0, 1e-3 * r["h_mae_uEh"] * 4.0)
    cal = fit_calibration(rows, {}, ["k"])
    inside = [r for r in rows if r["in_domain"]]
    for q in ("homo_ev", "lumo_ev", "gap_ev", "dipole_debye"):
        sigma = [getattr(estimate(RawStatistics(r["leverage_mean"], r["leverage_max"], r["uncertainty_homo_ev"] ** 2,
                                                r["uncertainty_lumo_ev"] ** 2, 16), cal, []), q) for r in inside]
        error = q.replace("_ev", "_error_ev").replace("_debye", "_error_debye")
        z = np.abs([r[error] for r in inside]) / np.array(sigma)
        assert np.mean(z < 1) == pytest.approx(0.6827, abs=0.01)
        rms = np.sqrt(np.mean(z ** 2))
        assert np.mean(z < rms) > 0.73  # what the root-mean-square scale would have covered
    beyond = [r for r in rows if not r["in_domain"]]
    z = [r["gap_error_ev"] / estimate(RawStatistics(r["leverage_mean"], r["leverage_max"], r["uncertainty_homo_ev"] ** 2,
                                                    r["uncertainty_lumo_ev"] ** 2, 16, 0.0, r["geometry_excess"]),
                                      cal, []).gap_ev for r in beyond]
    assert np.mean(np.abs(z) < 1) == pytest.approx(0.6827, abs=0.03) and cal.orbital_slopes["gap_ev"][1] > 1.5


def test_the_check_score_weighs_in_the_gap_sigma_where_that_tells_wrong_gaps_apart():
    """Validation rows whose wrong gaps (error > 0.3 eV) have larger σ but ordinary Fock-build shifts: the fit
    gives the σ a weight, and the score separates them better than the shift alone; where the shift tells and
    the σ does not, the weight stays 0. The score is the shift beyond its median and the weighted σ in quadrature."""
    from eqchem.calibration_metrics import auc
    from eqchem.inference.calibrate_check import fit_check

    rng = np.random.default_rng(3)
    n, wrong = 200, np.arange(200) < 30
    sigma = np.where(wrong, rng.uniform(0.25, 0.5, n), rng.uniform(0.05, 0.3, n))
    shift = rng.normal(-0.2, 0.15, n)
    rows = [{"gap_error_ev": 0.6 if w else 0.05, "check_gap_first_order_ev": float(d)} for w, d in zip(wrong, shift)]
    fit = fit_check(rows, sigma, "fock")
    assert fit["check_sigma_weight"] > 0 and fit["check_center_ev"] == pytest.approx(np.median(shift[~wrong]))
    score = np.hypot(fit["check_sigma_weight"] * sigma, shift - fit["check_center_ev"])
    assert auc(wrong.tolist(), score.tolist()) > auc(wrong.tolist(), np.abs(shift - fit["check_center_ev"]).tolist()) + 0.2
    assert fit["check_threshold_ev"] == pytest.approx(max(0.1, np.quantile(score[~wrong], 0.95)))
    telling = [{"gap_error_ev": r["gap_error_ev"], "check_gap_first_order_ev": 2.0 if w else r["check_gap_first_order_ev"]}
               for r, w in zip(rows, wrong)]
    assert fit_check(telling, rng.uniform(0.05, 0.3, n), "fock")["check_sigma_weight"] == 0
    assert fit_check([{"gap_error_ev": 0.1}], [0.1], "partner") == {"partner_threshold_ev": np.inf}


def test_the_domain_verdict_measures_how_far_beyond_the_training_ranges():
    """A C-H bond stretched 30 % past the longest training C-H: geometry excess ln 1.3; twice the most atoms or
    half the fewest: size excess ln 2; within every range: 0, 0."""
    from dataclasses import replace

    from eqchem.inference.calibrate import UNIT
    from eqchem.inference.uncertainty import domain_verdict, nearest_neighbour_ranges

    ch = (np.array([6, 1]), np.array([[0.0, 0, 0], [1.10, 0, 0]]))
    cal = replace(UNIT, nearest_neighbour=nearest_neighbour_ranges([ch]))
    assert _excess(domain_verdict(*ch, cal, [2, 2], [1, 1])) == (0.0, 0.0)
    far = (ch[0], np.array([[0.0, 0, 0], [1.43, 0, 0]]))
    assert _excess(domain_verdict(*far, cal, [2, 2], [1, 1])) == pytest.approx((0.0, np.log(1.3)))
    near = (ch[0], np.array([[0.0, 0, 0], [1.00, 0, 0]]))
    assert _excess(domain_verdict(*near, cal, [2, 2], [1, 1])) == pytest.approx((0.0, np.log(1.1)))
    assert _excess(domain_verdict(*ch, cal, [1, 1], [1, 1]))[0] == pytest.approx(np.log(2))
    assert _excess(domain_verdict(*ch, cal, [4, 8], [2, 9]))[0] == pytest.approx(np.log(2))  # half the fewest atoms or heavy atoms


def test_a_stretched_carbon_carbon_bond_is_out_of_domain_by_its_bond_valences():
    """Ethane with its C-C bond stretched by 30 %: every atom's nearest neighbour is still its C-H partner, so the
    nearest-neighbour ranges miss it; both carbons lose ~0.8 of their bond-valence sums (~4 at rest)."""
    from dataclasses import replace

    from eqchem.inference.calibrate import UNIT, training_domain
    from eqchem.inference.uncertainty import bond_valences, domain_verdict
    from eqchem.io.readers import read_structures

    ethane = read_structures("CC")[0]
    z, r = ethane.numbers, ethane.positions
    rng = np.random.default_rng(0)
    training = [(z, r + rng.normal(scale=0.01, size=r.shape)) for _ in range(5)]
    nn, domain = training_domain(training)
    cal = replace(UNIT, nearest_neighbour=nn, **domain)
    v = bond_valences(z, r)
    assert v[z == 6] == pytest.approx(4.0, abs=0.3) and v[z == 1] == pytest.approx(1.0, abs=0.15)
    c1, c2 = np.flatnonzero(z == 6)
    far = r.copy()
    side = [c2] + [i for i in np.flatnonzero(z == 1) if np.linalg.norm(r[i] - r[c2]) < 1.2]
    far[side] += 0.3 * (r[c2] - r[c1])
    d = np.linalg.norm(far[:, None] - far[None], axis=-1) + np.eye(len(z)) * 9
    assert (z[d.argmin(axis=1)] != z).all()  # every nearest neighbour still a C-H partner
    assert domain_verdict(z, r, cal, None, None).reasons == []
    reasons = domain_verdict(z, far, cal, None, None).reasons
    assert len(reasons) == 1 and "bond-valence sum" in reasons[0] and "(C[H1,H1,H1]): " in reasons[0] and "training C " in reasons[0]
    assert bond_valences(z, far)[c1] < v[c1] - 0.6 and domain_verdict(z, far, cal, None, None).geometry_excess > 0.12


def test_bond_valences_are_judged_within_the_atoms_environment():
    """Trained on ethane and fluoroform, a carbon's bond-valence sum spans 3.8-4.35; fluoroform with one C-F bond
    stretched by 15 % keeps its carbon inside that span (only the fluorine's sum tells, by its element's range),
    but not inside the span of carbons bonded to F, F, F, H (each bonded to it alone). An environment with fewer training atoms than
    MIN_ENVIRONMENT_ATOMS falls back to its element's range."""
    from dataclasses import replace

    from eqchem.inference.calibrate import UNIT, training_domain
    from eqchem.inference.uncertainty import (MIN_ENVIRONMENT_ATOMS, domain_verdict, valence_environments,
                                              valence_range, valence_ranges)
    from eqchem.io.readers import read_structures

    rng = np.random.default_rng(0)
    ethane, fluoroform = (read_structures(smi)[0] for smi in ("CC", "C(F)(F)F"))
    training = [(m.numbers, m.positions + rng.normal(scale=0.005, size=m.positions.shape))
                for m in (ethane, fluoroform) for _ in range(4)]
    _, domain = training_domain(training)
    z, r = fluoroform.numbers, fluoroform.positions
    c, f = int(np.flatnonzero(z == 6)[0]), int(np.flatnonzero(z == 9)[0])
    far = r.copy()
    far[f] = r[c] + 1.15 * (r[f] - r[c])
    v, labels = valence_environments(z, far)
    assert labels[c] == "C[F1,F1,F1,H1]" and domain["valence_ranges"]["C"][0] < v[c] < domain["valence_ranges"]["C[F1,F1,F1,H1]"][0]
    cal = replace(UNIT, **domain)  # the valence check alone (no nearest-neighbour ranges)
    per_element = replace(cal, valence_ranges={k: x for k, x in domain["valence_ranges"].items() if "[" not in k})
    assert c == 0 and domain_verdict(z, r, cal, None, None).reasons == []
    assert [x.split(":")[0] for x in domain_verdict(z, far, per_element, None, None).reasons] == [f"atom {f + 1} (F[C4])"]
    reasons = domain_verdict(z, far, cal, None, None).reasons
    assert len(reasons) == 1 and "atom 1 (C[F1,F1,F1,H1])" in reasons[0] and "training C[F1,F1,F1,H1]" in reasons[0]
    one = valence_ranges(training[4:5])  # one fluoroform: its carbon once, its fluorines three times
    assert MIN_ENVIRONMENT_ATOMS == 3 and "C[F1,F1,F1,H1]" not in one and "F[C4]" in one
    assert valence_range(one, "C[F1,F1,F1,H1]") == one["C"] and valence_range(one, "N[C3,C3]") is None


def test_out_of_domain_estimates_are_no_better_than_a_typical_molecule_inside():
    """The floor of out-of-domain estimates: the mean in-domain validation estimate (fitted), times 1 + the
    excess; a molecule inside keeps its fitted estimate however small."""
    from dataclasses import replace

    from eqchem.inference.calibrate import UNIT, fit_calibration
    from eqchem.inference.uncertainty import RawStatistics, estimate

    rng = np.random.default_rng(2)
    rows = []
    for i in range(40):
        lev, vh, vl = rng.uniform(1e-3, 1e-2), *rng.uniform(0.01, 0.1, size=2)
        rows.append({"leverage_mean": lev, "leverage_max": 2 * lev, "h_mae_uEh": 5e3 * lev, "n_atoms": 12,
                     "size_excess": 0.0, "geometry_excess": 0.0, "in_domain": True,
                     "uncertainty_homo_ev": np.sqrt(vh), "uncertainty_lumo_ev": np.sqrt(vl),
                     "uncertainty_gap_ev": np.sqrt(vh + vl), "homo_error_ev": rng.normal(0, 0.1),
                     "lumo_error_ev": rng.normal(0, 0.1), "gap_error_ev": rng.normal(0, 0.1),
                     "dipole_error_debye": rng.normal(0, 0.3), "check_score_ev": None})
    cal = fit_calibration(rows, {}, ["k"])
    inside = [estimate(RawStatistics(r["leverage_mean"], r["leverage_max"], r["uncertainty_homo_ev"] ** 2,
                                     r["uncertainty_lumo_ev"] ** 2, 12), cal, []) for r in rows]
    assert cal.out_of_domain_floor["gap_ev"] == pytest.approx(np.mean([u.gap_ev for u in inside]))
    small = RawStatistics(1e-4, 2e-4, 1e-4, 1e-4, 30, size_excess=0.5)
    assert estimate(small, cal, []).gap_ev < 0.5 * cal.out_of_domain_floor["gap_ev"]  # in domain: as fitted
    larger = estimate(small, cal, ["30 atoms, outside the training molecules' 3-12"])
    for q, floor in cal.out_of_domain_floor.items():
        assert getattr(larger, q) == pytest.approx(1.5 * floor)
    assert not larger.in_domain and estimate(small, replace(cal, out_of_domain_floor={}), ["x"]).gap_ev < floor
    assert UNIT.out_of_domain_floor == {}


def test_calibration_fit_recovers_how_errors_grow_beyond_the_training_ranges():
    """Validation rows whose errors grow as 1 + 2 g with their geometry excess g (H MAE exactly, orbital energies
    in distribution): the fit finds the slopes, the scales stay those of the rows inside, and estimates grow."""
    from eqchem.inference.calibrate import fit_calibration
    from eqchem.inference.uncertainty import RawStatistics, estimate

    rng = np.random.default_rng(1)
    rows = _rows_growing_beyond(600, lambda scale: rng.normal(0, 0.5 * scale), rng)
    cal = fit_calibration(rows, {}, ["k"])
    assert cal.h_mae_geometry_slope == pytest.approx(2.0, rel=1e-4) and cal.h_mae_size_slope == pytest.approx(0.0)
    assert cal.h_mae_log_slope == pytest.approx(0.5, rel=1e-4)
    for q in ("homo_ev", "lumo_ev", "gap_ev"):
        assert cal.orbital_slopes[q][1] == pytest.approx(2.0, rel=0.25) and cal.orbital_slopes[q][0] == 0.0
    assert cal.gap_scale == pytest.approx(0.5, rel=0.1) and cal.n_beyond == 300
    inside, beyond = (estimate(RawStatistics(5e-3, 1e-2, 0.05, 0.05, 16, 0.0, g), cal, []) for g in (0.0, 0.3))
    assert beyond.gap_ev / inside.gap_ev == pytest.approx(1 + 0.3 * cal.orbital_slopes["gap_ev"][1])
    assert beyond.h_mae_uEh / inside.h_mae_uEh == pytest.approx(1.6, rel=1e-3) and beyond.geometry_excess == 0.3
    assert fit_calibration(rows[1::2], {}, ["k"]).orbital_slopes["gap_ev"] == [0.0, 0.0]  # none beyond: no growth


def test_the_check_flags_a_prediction_its_fock_build_moves_and_costs_one_build(monkeypatch):
    from eqchem.inference.pipeline import PredictionPipeline
    from eqchem.inference.predict import predict

    from .test_prediction_pipeline import tiny_model

    waters = _water_set()
    model = with_estimates(tiny_model("none"), waters)  # untrained: its orbitals are far from self-consistent
    builds = []
    original = PredictionPipeline._fock
    monkeypatch.setattr(PredictionPipeline, "_fock", lambda self, *a: builds.append(1) or original(self, *a))
    res = predict(waters[0], model, check=True)
    u = res.uncertainty
    assert builds == [1] and u.flagged and abs(u.check_gap_first_order_ev) > 0.05 and u.residual_uEh > 1000
    assert u.check_gap_first_order_ev == pytest.approx(u.check_lumo_first_order_ev - u.check_homo_first_order_ev)
    assert predict(waters[0], model).uncertainty.flagged is None and builds == [1]  # no check, no build
    stepped = with_estimates(tiny_model("none", fock_mixing=0.4), waters)
    builds.clear()
    assert predict(waters[0], stepped, check=True).uncertainty.flagged is not None
    assert builds == [1]  # the Fock step's own build serves the check


def test_the_check_scores_whichever_fock_shift_tells_wrong_gaps_apart_on_validation():
    """Validation rows where one of the Fock build's gap shifts (first order, eigenvalues) is large for the wrong
    gaps and the other is noise: the fit scores the telling one, centered on its right gaps' median."""
    from eqchem.inference.calibrate_check import fit_check

    rng = np.random.default_rng(6)
    n, wrong = 200, np.arange(200) < 30
    telling = np.where(wrong, rng.uniform(0.8, 1.5, n), rng.normal(0.1, 0.1, n))
    noise = rng.normal(-0.15, 0.3, n)
    for signal, (first, eig) in (("first_order", (telling, noise)), ("eigenvalues", (noise, telling))):
        rows = [{"gap_error_ev": 0.6 if w else 0.05, "check_gap_first_order_ev": float(a), "check_gap_shift_ev": float(b)}
                for w, a, b in zip(wrong, first, eig)]
        fit = fit_check(rows, np.full(n, 0.1), "fock")
        assert fit["check_signal"] == signal
        assert fit["check_center_ev"] == pytest.approx(np.median(telling[~wrong]))
    assert "check_signal" not in fit_check(rows, np.full(n, 0.1), "partner")  # no partner rows: threshold inf only


def test_the_checks_first_order_shifts_are_the_residuals_diagonal_in_the_predicted_orbitals():
    """For F = H + δ (a random symmetric δ, nonorthogonal AOs) the check's first-order HOMO and LUMO shifts are
    c_iᵀ δ c_i of H's orbitals: they match the eigenvalue shifts to O(δ²) (halving δ quarters the difference),
    and the score takes the calibration's signal."""
    from dataclasses import replace

    from eqchem.inference.calibrate import UNIT
    from eqchem.inference.consistency_check import self_check
    from eqchem.inference.uncertainty import Uncertainty

    rng = np.random.default_rng(5)
    n, nocc = 12, 4
    a = rng.normal(size=(n, n))
    s = np.eye(n) + 0.1 * (a + a.T) / 2
    h = np.diag(np.linspace(-1.0, 1.0, n)) + 0.05 * (a + a.T)
    d = rng.normal(size=(n, n))
    d = (d + d.T) / 2
    unc = Uncertainty(0.0, 0.1, 0.1, 0.1, 0.0, True)
    diffs = []
    for eps in (1e-3, 5e-4):
        u = self_check(unc, h + eps * d, h, s, nocc, replace(UNIT, check_signal="first_order"))
        diffs.append(abs(u.check_gap_first_order_ev - u.check_gap_shift_ev))
        assert u.check_gap_first_order_ev == pytest.approx(u.check_gap_shift_ev, rel=0.05)
    assert diffs[1] / diffs[0] == pytest.approx(0.25, rel=0.05)
    assert u.check_score_ev == pytest.approx(abs(u.check_gap_first_order_ev))  # UNIT: weight 0, center 0
    old = self_check(unc, h + 5e-4 * d, h, s, nocc, UNIT)  # files calibrated before session 22: eigenvalues
    assert old.check_score_ev == pytest.approx(abs(old.check_gap_shift_ev))


def test_the_checks_frontier_residuals_see_the_mixing_a_first_order_shift_misses():
    """F − H = t S (c_h c_kᵀ + c_k c_hᵀ) S couples the HOMO h with a lower occupied orbital k and nothing else:
    the HOMO's first-order shift is 0 but its residual is t (the LUMO's 0), and the residual score is the
    calibration's power law in σ_gap, the residuals and the eigenvalue gap shift beyond its center."""
    from dataclasses import replace

    from eqchem.inference.calibrate import UNIT
    from eqchem.inference.consistency_check import self_check
    from eqchem.inference.uncertainty import Uncertainty
    from eqchem.model.calibration import RESIDUAL_OFFSET_EV
    from eqchem.orbitals import solve_generalized
    from eqchem.units import HARTREE_EV

    rng = np.random.default_rng(7)
    n, nocc, t = 12, 4, 0.02
    a = rng.normal(size=(n, n))
    s = np.eye(n) + 0.1 * (a + a.T) / 2
    h = np.diag(np.linspace(-1.0, 1.0, n)) + 0.05 * (a + a.T)
    c = solve_generalized(h, s)[1]
    sc_h, sc_k = s @ c[:, nocc - 1], s @ c[:, 0]
    fock = h + t * (np.outer(sc_h, sc_k) + np.outer(sc_k, sc_h))
    cal = replace(UNIT, check_signal="residuals", check_center_ev=0.1, check_coefficients=[np.log(2.0), 0.5, 1.0, 0.0, 1.0])
    u = self_check(Uncertainty(0.0, 0.1, 0.1, 0.4, 0.0, True), fock, h, s, nocc, cal)
    assert u.check_homo_first_order_ev == pytest.approx(0.0, abs=1e-9)
    assert u.check_homo_residual_ev == pytest.approx(t * HARTREE_EV, rel=1e-8)
    assert u.check_lumo_residual_ev == pytest.approx(0.0, abs=1e-6)
    beyond = abs(u.check_gap_shift_ev - 0.1) + RESIDUAL_OFFSET_EV  # the eigenvalue shift (second order here)
    assert u.check_score_ev == pytest.approx(2.0 * 0.4 ** 0.5 * t * HARTREE_EV * beyond - RESIDUAL_OFFSET_EV, rel=1e-8)
    assert u.flagged is False  # UNIT's threshold: inf


def test_the_residual_check_fits_its_power_law_on_validation_and_flags_about_one_right_gap_in_twenty():
    """Validation rows whose |gap error| + offset is exactly 0.8 σ^0.3 r_homo^1.2 r_lumo^0.5 (|d − c| + offset)^0.7,
    c the median shift d of the right gaps: the least-squares fit recovers the coefficients and c, the threshold is
    the 95th percentile of the right gaps' scores, and rows without residuals fall back to a gap shift's score."""
    from eqchem.inference.calibrate import fit_calibration, rescored
    from eqchem.inference.calibrate_check import fit_residual_check
    from eqchem.model.calibration import RESIDUAL_OFFSET_EV

    rng = np.random.default_rng(8)
    center, m = -0.15, 150  # pairs of rows alike but for a shift d = center ± x: the right gaps' median is center
    sigma, r_h, r_l, x = (np.tile(v, 2) for v in (rng.uniform(0.2, 0.5, m), rng.uniform(0.3, 2.0, m),
                                                   rng.uniform(0.3, 2.0, m), rng.uniform(0.0, 1.0, m)))
    d = center + np.concatenate([x[:m], -x[m:]])
    err = 0.8 * sigma ** 0.3 * r_h ** 1.2 * r_l ** 0.5 * (x + RESIDUAL_OFFSET_EV) ** 0.7 - RESIDUAL_OFFSET_EV
    keep = err > 1e-3  # |error| + offset follows the law only where the law exceeds the offset
    sigma, r_h, r_l, d, err = (v[keep] for v in (sigma, r_h, r_l, d, err))
    right = err <= 0.3
    assert 20 < (~right).sum() < len(err) - 20
    rows = [{"gap_error_ev": float(e * rng.choice([-1, 1])), "check_homo_residual_ev": float(a),
             "check_lumo_residual_ev": float(b), "check_gap_shift_ev": float(y)} for e, a, b, y in zip(err, r_h, r_l, d)]
    fit = fit_residual_check(rows, sigma)
    assert fit["check_signal"] == "residuals" and fit["check_center_ev"] == pytest.approx(center)
    assert fit["check_coefficients"] == pytest.approx([np.log(0.8), 0.3, 1.2, 0.5, 0.7], abs=1e-8)
    assert fit["check_threshold_ev"] == pytest.approx(max(0.1, np.quantile(err[right], 0.95)))
    assert fit_residual_check(rows[:9], sigma[:9]) is None  # too few rows to fit
    shifts = [{"gap_error_ev": r["gap_error_ev"], "check_gap_first_order_ev": 0.1} for r in rows]
    assert fit_residual_check(shifts, sigma) is None

    base = {"leverage_mean": 1e-3, "leverage_max": 1e-2, "uncertainty_homo_ev": 0.1, "uncertainty_lumo_ev": 0.1,
            "uncertainty_gap_ev": 0.14, "n_atoms": 9,
            "size_excess": 0.0, "geometry_excess": 0.0, "reasons": [], "homo_error_ev": 0.1, "lumo_error_ev": 0.1,
            "h_mae_uEh": 300.0, "dipole_error_debye": 0.1, "check_by": "fock"}
    cal = fit_calibration([{**base, **r} for r in rows], {}, ["k"])
    assert cal.check_signal == "residuals" and len(cal.check_coefficients) == 5
    scored = [rescored({**base, **r}, cal) for r in rows]
    wrong = np.abs(err) > 0.3
    assert np.mean([r["flagged"] for r, w in zip(scored, wrong) if not w]) == pytest.approx(0.05, abs=0.02)
    assert np.mean([r["flagged"] for r, w in zip(scored, wrong) if w]) > 0.5


def test_the_check_partner_is_a_second_model_in_place_of_the_fock_build(monkeypatch):
    """--check with a check partner: the accurate model (its minao guess and its Fock step) predicts the same
    molecule and the gap difference flags it; no Fock build of the fast model's density. Where the partner
    cannot take the molecule (another basis), the Fock build checks as before."""
    from dataclasses import replace

    import eqchem
    from eqchem.inference.model_file import load_model
    from eqchem.inference.pipeline import PredictionPipeline
    from eqchem.inference.predict import predict
    from eqchem.units import HARTREE_EV

    from .test_prediction_pipeline import tiny_model

    def partnered(model, threshold):
        cal = replace(model.uncertainty.calibration, check_partner="accurate", partner_threshold_ev=threshold)
        return model.with_uncertainty(replace(model.uncertainty, calibration=cal))

    builds = []
    original = PredictionPipeline._fock
    monkeypatch.setattr(PredictionPipeline, "_fock", lambda self, *a: builds.append(1) or original(self, *a))
    ethanol = str(EXAMPLES / "ethanol.xyz")
    fast = partnered(load_model("fast"), 0.0)
    u = eqchem.predict(ethanol, model=fast, check=True).uncertainty
    gaps = [eqchem.predict(ethanol, model=m).gap * HARTREE_EV for m in (fast, "accurate")]
    assert u.check_by == "partner" and u.check_gap_shift_ev is None
    assert len(builds) == 2  # the partner's Fock step, here and in its own prediction above: none of the fast model's
    assert u.check_partner_gap_diff_ev == pytest.approx(gaps[1] - gaps[0], abs=1e-6)
    assert u.flagged is (abs(u.check_partner_gap_diff_ev) > 0)
    assert eqchem.predict(ethanol, model=partnered(fast, 10.0), check=True).uncertainty.flagged is False
    waters = _water_set()
    other_basis = partnered(with_estimates(tiny_model("none"), waters), 0.0)  # sto-3g: the partner has def2-svp
    builds.clear()
    u = predict(waters[0], other_basis, check=True).uncertainty
    assert u.check_by == "fock" and builds == [1] and u.check_partner_gap_diff_ev is None


def test_estimates_travel_in_the_model_file_and_every_output(tmp_path, run_cli):
    import h5py

    from eqchem.calibration_metrics import COULOMB_SCALES
    from eqchem.inference.model_file import load_model
    from eqchem.model.file import read_header

    from .test_prediction_pipeline import tiny_model

    waters = _water_set()
    model = with_estimates(tiny_model("none"), waters).with_card(basis="sto-3g", train_keys=["a"])
    path = model.save(tmp_path / "m.pt")
    again = load_model(path)
    assert again.uncertainty.calibration == model.uncertainty.calibration
    assert all(np.allclose(a, b, rtol=1e-6) for a, b in zip(again.uncertainty.posterior.offd,
                                                            model.uncertainty.posterior.offd))
    assert read_header(path).card.train_keys == ["a"]  # the torch-free header still reads
    (tmp_path / "w.xyz").write_text("3\nname=w\nO 0 0 0.1173\nH 0 0.7572 -0.4692\nH 0 -0.7572 -0.4692\n")
    code, out = run_cli("predict", tmp_path / "w.xyz", "--model", path, "--check", "--out", tmp_path / "r.json")
    assert code == 0, out
    assert " ± " in out and "flagged" in out
    rec = json.loads((tmp_path / "r.json").read_text())
    unc = (rec[0] if isinstance(rec, list) else rec["results"][0])["uncertainty"]
    assert unc["gap_ev"] > 0 and unc["flagged"] is True and "in_domain" in unc
    assert len(unc["check_gap_error_estimates_ev"]) == len(COULOMB_SCALES)
    code, out = run_cli("predict", tmp_path / "w.xyz", "--model", path, "--check", "--out", tmp_path / "r.h5")
    assert code == 0, out
    with h5py.File(tmp_path / "r.h5") as f:
        attrs = f["molecules"][next(iter(f["molecules"]))].attrs
        assert attrs["uncertainty_gap_ev"] > 0 and "uncertainty_in_domain" in attrs
        assert attrs["uncertainty_check_gap_error_estimates_ev"].shape == (len(COULOMB_SCALES),)


def test_the_shipped_fast_model_says_how_far_to_trust_it(run_cli):
    """Calibrated estimates in the package: water (3 atoms) is out of domain, its gap 0.4 eV off (reference:
    datasets/examples/reference_values.json) but within twice its estimated σ; ethanol with its O-H bond
    stretched by 30 % is out of domain, and the check (one Fock build and its Coulomb response; its score the
    estimated gap error beyond its center) flags it: its gap is off by more than 0.5 eV against PySCF on the same
    geometry, and the check's estimate lies within 30 % of that; with a C-H bond stretched alike it is out of domain and its gap error (> 0.3 eV) lies within
    twice its σ."""
    import eqchem
    from eqchem.inference.model_file import load_model
    from eqchem.io.readers import read_structures
    from eqchem.calibration_metrics import COULOMB_SCALES

    from .test_reference_values import load_reference

    ev = 27.211386245988
    model = load_model("fast")
    cal = model.uncertainty.calibration
    assert model.uncertainty.posterior.n_molecules >= 200 and cal.n_molecules >= 40
    assert not set(cal.keys) & set(model.card.train_keys)  # calibrated on validation molecules only
    water = eqchem.predict(str(EXAMPLES / "water.xyz"), model=model, check=True)
    u = water.uncertainty
    assert not u.in_domain and "3 atoms" in u.reasons[0] and u.check_by == "fock" and u.residual_uEh > 0
    error = abs(water.gap * ev - load_reference()["molecules"]["water"]["gap"] * ev)
    assert 0.3 < error < 2 * u.gap_ev
    assert cal.check_signal == "response"  # the score: the check's estimate of the gap error beyond its center
    assert u.check_gap_error_ev == u.check_gap_error_estimates_ev[COULOMB_SCALES.index(cal.check_coulomb_scale)]
    assert u.check_score_ev == pytest.approx(abs(u.check_gap_error_ev - cal.check_center_ev))
    assert u.flagged == (u.check_score_ev > cal.check_threshold_ev)
    ethanol = read_structures(str(EXAMPLES / "ethanol.xyz"))[0]
    oh, oh_error = _stretched_ethanol(ethanol, 8, model)  # its O-H bond 30 % longer: gap off by 0.83 eV
    assert not oh.uncertainty.in_domain and any("nearest neighbour" in r for r in oh.uncertainty.reasons)
    assert abs(oh_error) > 0.5 and oh.uncertainty.flagged
    assert abs(oh.uncertainty.check_gap_error_ev - oh_error) < 0.3 * abs(oh_error)  # and says by how much
    ch, ch_error = _stretched_ethanol(ethanol, 6, model)  # a C-H bond: off by 0.35 eV, gap sigma 0.79 eV, not flagged
    assert not ch.uncertainty.in_domain and 0.3 < abs(ch_error) < 2 * ch.uncertainty.gap_ev
    code, out = run_cli("info", "--model", "fast")
    assert code == 0 and "calibrated on" in out


def _stretched_ethanol(ethanol, partner: int, model):
    """The prediction (with ``--check``) of ``ethanol`` with its first hydrogen bonded to an atom of element
    ``partner`` moved 30 % farther from it, and its gap error (eV) against PySCF on that geometry (the cheap
    label settings: density fitting, grid 1, 1e-8; about 2 s)."""
    import eqchem
    from pyscf import dft, gto

    z, r = ethanol.numbers, ethanol.positions
    d = np.linalg.norm(r[:, None] - r[None], axis=-1) + np.eye(len(z)) * 9
    h = next(i for i in np.flatnonzero(z == 1) if z[d[i].argmin()] == partner)
    j = int(d[h].argmin())
    stretched = r.copy()
    stretched[h] = r[j] + 1.3 * (r[h] - r[j])
    res = eqchem.predict((z, stretched), model=model, check=True)
    mol = gto.M(atom=[[int(a), tuple(p)] for a, p in zip(z, stretched)], basis="def2-svp", verbose=0)
    mf = dft.RKS(mol).density_fit(auxbasis="def2-universal-jkfit")
    mf.xc, mf.grids.level, mf.conv_tol = "b3lyp", 1, 1e-8
    mf.kernel()
    nocc = mol.nelectron // 2
    return res, (res.gap - (mf.mo_energy[nocc] - mf.mo_energy[nocc - 1])) * 27.211386245988


def test_calibrate_and_evaluate_through_the_cli(tmp_path, run_cli):
    """eqchem calibrate fits on validation keys only and refuses too few; eqchem evaluate reports calibration."""
    from eqchem.data.reader import H5Dataset
    from eqchem.errors import InputError
    from eqchem.inference.calibrate import calibrate
    from eqchem.inference.model_file import load_model

    from .conftest import generate_water_set
    from .test_prediction_pipeline import tiny_model

    data = generate_water_set(tmp_path, 13, seed=3)
    keys = H5Dataset(data).keys()
    model = tiny_model("none").with_card(basis="sto-3g", train_keys=keys[:6], val_keys=keys[6:12])
    path = model.save(tmp_path / "m.pt")
    code, out = run_cli("calibrate", path, data, "--out", tmp_path / "cal.pt", "--report", tmp_path / "rep.json")
    assert code == 0, out
    cal = load_model(tmp_path / "cal.pt").uncertainty
    assert cal.posterior.n_molecules == 6 and sorted(cal.calibration.keys) == sorted(keys[6:12])
    assert "1σ cover" in out and json.loads((tmp_path / "rep.json").read_text())[0]["report"]["n_molecules"] == 6
    # the validation rows were measured against the training molecules' ranges (what the growth terms fit on)
    from dataclasses import replace

    from eqchem.inference.calibrate import UNIT, read_molecules, training_domain
    from eqchem.inference.uncertainty import domain_verdict

    ds = H5Dataset(data)
    nn, domain = training_domain(read_molecules([(ds, k) for k in keys[:6]]))
    rows = json.loads((tmp_path / "rep.json").read_text())[0]["molecules"]
    expected = [domain_verdict(ds.numbers(r["key"]), ds.read(r["key"], overlap=False).positions,
                               replace(UNIT, nearest_neighbour=nn, **domain), None, None).geometry_excess for r in rows]
    assert [r["geometry_excess"] for r in rows] == pytest.approx(expected) and max(expected) > 0
    with pytest.raises(InputError, match="training keys"):
        calibrate(load_model(path), [H5Dataset(data)], keys[:8])
    with pytest.raises(InputError, match="at least"):
        calibrate(load_model(path), [H5Dataset(data)], keys[6:8])
    stranger = load_model(path).with_card(train_keys=["not_in_the_data"])
    with pytest.raises(InputError, match="none of the model's 1 training keys"):
        calibrate(stranger, [H5Dataset(data)], keys[6:12])
    # training molecules whose labels are gone: their geometries alone give the same posterior and domain
    from eqchem.io.structure import Structure
    from eqchem.io.xyz import write_xyz

    gone = [f"gone_{i}" for i in range(6)]
    write_xyz(tmp_path / "train.xyz", [Structure(ds.numbers(k), ds.read(k, overlap=False).positions, name=g)
                                       for k, g in zip(keys[:6], gone)])
    path2 = model.with_card(train_keys=gone).save(tmp_path / "m2.pt")
    code, out2 = run_cli("calibrate", path2, data, "--train-structures", tmp_path / "train.xyz", "--out",
                         tmp_path / "cal2.pt", "--report", tmp_path / "rep2.json")
    assert code == 0, out2
    assert load_model(tmp_path / "cal2.pt").uncertainty.posterior.n_molecules == 6
    rows2 = json.loads((tmp_path / "rep2.json").read_text())[0]["molecules"]
    for field, rel in (("leverage_mean", 1e-5), ("leverage_max", 1e-5), ("geometry_excess", 1e-6),
                       ("uncertainty_gap_ev", 1e-3)):  # xyz keeps 10 decimals; float32 features, whose noise the fitted scales amplify
        assert [r[field] for r in rows2] == pytest.approx([r[field] for r in rows], rel=rel), field
    code, out2 = run_cli("calibrate", path2, data, "--out", tmp_path / "cal3.pt")
    assert code != 0 and "none of the model's 6 training keys" in out2
    code, out = run_cli("evaluate", data, "--model", tmp_path / "cal.pt", "--check", "--reliability-plot",
                        tmp_path / "r.png", "--out", tmp_path / "m.json")
    assert code == 0, out
    assert "Spearman" in out and "check AUC" in out and (tmp_path / "r.png").stat().st_size > 0
    res = json.loads((tmp_path / "m.json").read_text())[0]
    assert res["calibration"]["n_molecules"] == len(keys) == len(res["uncertainty"])
    assert all(r["check_score_ev"] is not None for r in res["uncertainty"])
    assert "the check's estimate of the gap error: within" in out  # and how close its estimates came
    rows = res["uncertainty"]
    assert res["calibration"]["check"]["estimate_mae_ev"] == pytest.approx(
        np.mean([abs(r["check_gap_error_ev"] - r["gap_error_ev"]) for r in rows]))


def test_one_anderson_step_finds_the_fixed_point_of_a_linear_scf_map():
    """Where the SCF map is linear, G(X) = H* + α (X − H*), and the response supplied is exactly its residual at F
    (J = G(F) − F at λ = 1), one Anderson step lands on H*: the estimated gap error is the prediction's gap minus
    H*'s, for screening (α < 0) and for slow convergence (0 < α < 1); a wrong scale misses it."""
    from eqchem.inference.consistency_check import anderson_gap_errors

    rng = np.random.default_rng(11)
    n, nocc = 10, 4
    eps = np.linspace(-1.0, 1.0, n)  # the prediction H = diag(eps) in its own orbitals
    e = rng.normal(scale=0.03, size=(n, n))
    e = (e + e.T) / 2
    star = np.diag(eps) - e
    true_error = (eps[nocc] - eps[nocc - 1]) - np.diff(np.linalg.eigvalsh(star)[nocc - 1:nocc + 1])[0]
    for alpha in (-2.0, 0.4):
        fock = star + alpha * e
        response = alpha * (alpha - 1.0) * e  # G(F) - F
        exact, wrong = anderson_gap_errors(eps, fock, response, nocc, (1.0, 0.5), eps[nocc] - eps[nocc - 1])
        assert exact == pytest.approx(true_error, abs=1e-10)
        assert abs(wrong - true_error) > 0.1 * abs(true_error)


def test_the_response_check_scores_its_estimate_at_the_calibrated_scale_and_fits_the_scale_on_validation():
    """Validation rows whose errors match the estimates at λ = 0.6 (noise elsewhere): the fit keeps 0.6, centers the
    score on the right gaps' median estimate, flags about one right gap in twenty; the score reads the estimate at
    the calibration's scale; rows without estimates fall back to the residual score."""
    from dataclasses import replace

    from eqchem.calibration_metrics import COULOMB_SCALES, RESPONSE_FIELD
    from eqchem.inference.calibrate import UNIT, fit_calibration, rescored
    from eqchem.inference.calibrate_check import fit_response_check

    rng = np.random.default_rng(3)
    err = np.concatenate([rng.normal(scale=0.08, size=180), rng.choice([-1, 1], 40) * rng.uniform(0.35, 1.2, 40)])
    k = COULOMB_SCALES.index(0.6)
    rows = []
    for x in err:
        est = x + rng.normal(scale=0.3, size=len(COULOMB_SCALES))
        est[k] = x + 0.02 + rng.normal(scale=0.01)
        rows.append({"gap_error_ev": float(x), RESPONSE_FIELD: est.tolist()})
    fit = fit_response_check(rows)
    assert fit["check_signal"] == "response" and fit["check_coulomb_scale"] == 0.6
    right = np.abs(err) <= 0.3
    est = np.array([r[RESPONSE_FIELD][k] for r in rows])
    assert fit["check_center_ev"] == pytest.approx(np.median(est[right]))
    cal = replace(UNIT, **fit)
    scores = np.array([cal.check_score("fock", 1.0, r) for r in rows])
    assert scores == pytest.approx(np.abs(est - fit["check_center_ev"]))
    assert 0.03 <= np.mean(scores[right] > fit["check_threshold_ev"]) <= 0.07
    assert np.all(scores[~right] > fit["check_threshold_ev"])
    assert fit_response_check([{"gap_error_ev": 0.1, "check_homo_residual_ev": 1.0}] * 20) is None
    assert cal.measured_by("fock", rows[0]) and not cal.measured_by("fock", {"check_homo_residual_ev": 1.0})
    assert cal.check_score("fock", 1.0, {"check_homo_residual_ev": 1.0}) == 0.0  # no LUMO, no estimate: not flagged
    base = {"leverage_mean": 1e-3, "leverage_max": 1e-2, "uncertainty_homo_ev": 0.1, "uncertainty_lumo_ev": 0.1,
            "uncertainty_gap_ev": 0.14, "n_atoms": 9, "reasons": [], "check_by": "fock",
            "check_gap_error_ev": -9.0}  # as computed under UNIT's scale: rescoring reads the fitted one's
    full = fit_calibration([{**base, "homo_error_ev": 0.1, "lumo_error_ev": 0.1, "h_mae_uEh": 300.0, **r}
                            for r in rows], {}, ["k"])
    assert full.check_signal == "response" and full.check_coulomb_scale == 0.6
    scored = rescored({**base, **rows[-1]}, full)
    assert scored["check_gap_error_ev"] == rows[-1][RESPONSE_FIELD][k] and scored["flagged"]


def test_the_check_estimates_the_gap_error_of_a_perturbed_kohn_sham_matrix():
    """Water, B3LYP/def2-SVP at the check's cheap settings: the converged Kohn-Sham matrix H* with random symmetric
    errors among its lowest nine orbitals is the "prediction" (six of them); from its one Fock build and the
    Coulomb response, the check's estimates of the gap error (its gap minus H*'s) lie closer to the true ones than
    the first-order shift does at every scale, and with the Coulomb response unscaled (all the response there is
    for errors among the frontier orbitals of a molecule this small) within a third of its mean error."""
    from eqchem.dft.fock_step import coulomb_response, fock_of_prediction
    from eqchem.dft.frame import canonical_mole
    from eqchem.inference.calibrate import UNIT
    from eqchem.inference.consistency_check import self_check
    from eqchem.inference.uncertainty import Uncertainty
    from eqchem.orbitals import solve_generalized
    from eqchem.units import HARTREE_EV

    numbers = np.array([8, 1, 1])
    positions = np.array([[0.0, 0.0, 0.117], [0.0, 0.757, -0.467], [0.0, -0.757, -0.467]])
    frame = canonical_mole(numbers, positions, "def2-svp")
    mf = frame.ks("b3lyp")
    mf.conv_tol = 1e-10
    mf.kernel()
    d = frame.d
    star = d @ mf.get_fock() @ d.T
    star = (star + star.T) / 2
    s = d @ frame.mol.intor("int1e_ovlp") @ d.T
    nocc, n = 5, 9
    c = solve_generalized(star, s)[1][:, :n]
    sc = s @ (c * np.sign(c[np.abs(c).argmax(axis=0), range(n)]))  # signs fixed: the same errors on any machine

    def gap(m):
        e = solve_generalized(m, s)[0]
        return (e[nocc] - e[nocc - 1]) * HARTREE_EV

    true, first_order, estimates = [], [], []
    for seed in range(6):
        noise = np.random.default_rng(seed).normal(scale=0.01, size=(n, n))
        h = star + sc @ ((noise + noise.T) / 2) @ sc.T
        fresh = canonical_mole(numbers, positions, "def2-svp")  # the check's own builds, as a prediction makes them
        fock = fock_of_prediction(numbers, positions, h, s, 10, "def2-svp", "b3lyp", fresh)
        j = coulomb_response(numbers, positions, h, fock, s, 10, "def2-svp", "b3lyp", fresh)
        u = self_check(Uncertainty(0.0, 0.1, 0.1, 0.1, 0.0, True), fock, h, s, nocc, UNIT, coulomb=j)
        true.append(gap(h) - gap(star))
        first_order.append(-u.check_gap_first_order_ev)  # F's first-order shift of the gap, the error's opposite
        estimates.append(u.check_gap_error_estimates_ev)
    true, estimates = np.array(true), np.array(estimates)
    assert np.mean(np.abs(true)) > 0.2
    mae_first = np.mean(np.abs(np.array(first_order) - true))
    mae = np.mean(np.abs(estimates - true[:, None]), axis=0)  # per scale
    assert np.all(mae < 0.6 * mae_first)
    assert mae[-1] < 0.3 * mae_first  # λ = 1
