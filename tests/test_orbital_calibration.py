"""The orbital energies' σ beyond the training ranges: each of HOMO, LUMO and gap grows by its own slopes and keeps
its own floor, fitted so that ±σ covers 68 % of the out-of-domain validation errors (eqchem.inference.
calibrate_orbitals); files calibrated before keep one growth for all three."""
from dataclasses import replace

import numpy as np
import pytest

from eqchem.inference.calibrate import UNIT, fit_calibration, rescored
from eqchem.inference.calibrate_orbitals import COVERAGE, quantile_loss
from eqchem.inference.uncertainty import RawStatistics, estimate


def _rows(rng: np.random.Generator, n: int = 800) -> list[dict]:
    """Half the rows inside the training ranges, half beyond (geometry excess 0.05–0.6, out of domain). Beyond,
    the HOMO's errors do not grow but its raw σ is a third of the typical one (the in-domain mean would over-cover
    them); the LUMO's grow as 1 + 2 g; Laplace errors (heavy tails) of scale 0.3 · raw σ · growth."""
    rows = []
    for i in range(n):
        g = 0.0 if i % 2 else rng.uniform(0.05, 0.6)
        vh, vl = rng.uniform(0.01, 0.1, size=2) * ((1 / 9, 1.0) if g else (1.0, 1.0))
        errors = {"homo": rng.laplace(0, 0.3 * np.sqrt(vh)), "lumo": rng.laplace(0, 0.3 * np.sqrt(vl) * (1 + 2 * g))}
        errors["gap"] = errors["lumo"] - errors["homo"]
        rows.append({"leverage_mean": 5e-3, "leverage_max": 1e-2, "h_mae_uEh": 300.0, "n_atoms": 16,
                     "size_excess": 0.0, "geometry_excess": g, "in_domain": g == 0, "reasons": [] if g == 0 else ["x"],
                     "uncertainty_homo_ev": np.sqrt(vh), "uncertainty_lumo_ev": np.sqrt(vl),
                     "uncertainty_gap_ev": np.sqrt(vh + vl), "dipole_error_debye": None, "check_score_ev": None,
                     **{f"{q}_error_ev": float(e) for q, e in errors.items()}})
    return rows


def _coverage(rows: list[dict], cal, quantity: str) -> float:
    sigma = [getattr(estimate(RawStatistics(r["leverage_mean"], r["leverage_max"], r["uncertainty_homo_ev"] ** 2,
                                            r["uncertainty_lumo_ev"] ** 2, 16, 0.0, r["geometry_excess"]),
                              cal, r["reasons"]), f"{quantity}_ev") for r in rows]
    return float(np.mean(np.abs([r[f"{quantity}_error_ev"] for r in rows]) <= np.array(sigma)))


def test_each_orbital_energy_grows_by_its_own_slopes_and_floor_to_cover_68_percent_beyond():
    """The LUMO's slope finds its growth, the HOMO's stays ~0 and its floor drops below the in-domain mean (which
    would have covered ~90 % of its small errors beyond); ±σ covers 68 % of each quantity's errors inside and
    beyond. One shared growth and the full floor (files before session 25) miss beyond."""
    rng = np.random.default_rng(11)
    rows = _rows(rng, 2000)
    cal = fit_calibration(rows, {}, ["k"])
    assert cal.orbital_slopes["lumo_ev"][1] == pytest.approx(2.0, rel=0.3)
    assert cal.orbital_slopes["homo_ev"][1] < 0.3
    inside = [r for r in rows if r["in_domain"]]
    beyond = [r for r in rows if not r["in_domain"]]
    mean_inside_homo = np.mean([estimate(RawStatistics(5e-3, 1e-2, r["uncertainty_homo_ev"] ** 2,
                                                       r["uncertainty_lumo_ev"] ** 2, 16), cal, []).homo_ev
                                for r in inside])
    assert cal.out_of_domain_floor["homo_ev"] == pytest.approx(mean_inside_homo) and cal.floor_factors["homo_ev"] < 0.8
    for q in ("homo", "lumo", "gap"):
        assert _coverage(inside, cal, q) == pytest.approx(COVERAGE, abs=0.03)
        assert _coverage(beyond, cal, q) == pytest.approx(COVERAGE, abs=0.04)
    shared = replace(cal, orbital_slopes={}, orbital_size_slope=0.0, orbital_geometry_slope=2.0, floor_factors={})
    assert _coverage(beyond, shared, "homo") > 0.85


def test_beyond_the_training_sizes_the_whole_floor_holds():
    """A molecule larger than any training one keeps the in-domain mean (times 1 + its excess) as its floor
    whatever factor the fit gave the floor within the training sizes."""
    cal = replace(UNIT, out_of_domain_floor={"gap_ev": 0.2}, floor_factors={"gap_ev": 0.0})
    tiny = RawStatistics(5e-3, 1e-2, 1e-4, 1e-4, 16)
    assert estimate(replace(tiny, geometry_excess=0.1), cal, ["stretched"]).gap_ev == pytest.approx(np.sqrt(2e-4))
    assert estimate(replace(tiny, size_excess=0.1), cal, ["larger"]).gap_ev == pytest.approx(0.22)
    assert estimate(replace(tiny, size_excess=0.1), cal, []).gap_ev == pytest.approx(np.sqrt(2e-4))  # in domain


def test_files_calibrated_before_grow_every_orbital_energy_by_one_pair_of_slopes():
    old = replace(UNIT, orbital_size_slope=1.0, orbital_geometry_slope=2.0)
    raw = RawStatistics(5e-3, 1e-2, 0.04, 0.09, 16, 0.1, 0.3)
    u, inside = estimate(raw, old, []), estimate(replace(raw, size_excess=0.0, geometry_excess=0.0), old, [])
    for q in ("homo_ev", "lumo_ev", "gap_ev"):
        assert getattr(u, q) == pytest.approx(1.7 * getattr(inside, q))
    new = replace(old, orbital_slopes={"homo_ev": [0.0, 0.0], "lumo_ev": [0.0, 1.0], "gap_ev": [1.0, 0.0]})
    u = estimate(raw, new, [])
    assert (u.homo_ev, u.lumo_ev, u.gap_ev) == pytest.approx((inside.homo_ev, 1.3 * inside.lumo_ev, 1.1 * inside.gap_ev))


def test_a_calibration_refits_from_its_report_without_predicting(tmp_path):
    """eqchem calibrate --refit REPORT: the rows of a report (rescored, some called out of domain by the leverage
    limit) give back the calibration they came from; a report without the orbitals' leverages is refused."""
    import json

    from typer.testing import CliRunner

    from eqchem.cli.main import app
    from eqchem.inference.calibrate import refit, unit_row
    from eqchem.inference.model_file import load_model
    from eqchem.model.calibration import ModelUncertainty
    from eqchem.model.posterior import ReadoutPosterior

    rows = _rows(np.random.default_rng(5), 300)
    # within the tolerance of the ranges (in domain, excess > 0) but with a leverage beyond the limit the fit sets
    # from the rows without excess: called out of domain once rescored
    rows[0].update(geometry_excess=0.01, in_domain=True, reasons=[], leverage_max=1.0)
    cal = fit_calibration(rows, {}, [f"k{i}" for i in range(len(rows))])
    scored = [{**rescored(r, cal), "key": f"k{i}"} for i, r in enumerate(rows)]
    assert not scored[0]["in_domain"] and unit_row(scored[0])["in_domain"]
    model = load_model("fast")
    model = model.with_uncertainty(ModelUncertainty(model.uncertainty.posterior, cal))
    again, rows_again = refit(model, scored)
    for name in ("homo_scale", "lumo_scale", "gap_scale", "h_mae_log_scale", "leverage_limit"):
        assert getattr(again.uncertainty.calibration, name) == pytest.approx(getattr(cal, name))
    report = tmp_path / "report.json"
    report.write_text(json.dumps([{"molecules": scored}]))
    model.save(tmp_path / "m.pt")
    res = CliRunner().invoke(app, ["calibrate", str(tmp_path / "m.pt"), "--refit", str(report),
                                   "--out", str(tmp_path / "again.pt")])
    assert res.exit_code == 0, res.output
    assert load_model(tmp_path / "again.pt").uncertainty.calibration.gap_scale == pytest.approx(cal.gap_scale)
    report.write_text(json.dumps([{"molecules": [{k: v for k, v in r.items() if k != "leverage_homo"}
                                                 for r in scored]}]))
    res = CliRunner().invoke(app, ["calibrate", str(tmp_path / "m.pt"), "--refit", str(report),
                                   "--out", str(tmp_path / "no.pt")])
    assert res.exit_code != 0 and "leverages" in res.output and not (tmp_path / "no.pt").exists()
    assert isinstance(model.uncertainty.posterior, ReadoutPosterior)


def test_a_calibration_refits_from_its_rescored_rows():
    """Rescored rows carry their orbitals' leverages: the same fit comes back from them as from the rows under the
    unit calibration where rescoring called none of them out of domain (no leverage beyond the limit here)."""
    rows = _rows(np.random.default_rng(5), 300)
    cal = fit_calibration(rows, {}, ["k"])
    scored = [rescored(r, cal) for r in rows]
    assert [r["in_domain"] for r in scored] == [r["in_domain"] for r in rows]
    again = fit_calibration(scored, {}, ["k"])
    for name in ("homo_scale", "lumo_scale", "gap_scale", "out_of_domain_floor"):
        assert getattr(again, name) == pytest.approx(getattr(cal, name), nan_ok=True)  # no dipoles: nan
    for q, k in cal.orbital_slopes.items():
        assert again.orbital_slopes[q] == pytest.approx(k)
    assert rescored(rows[0], cal)["leverage_homo"] == pytest.approx(rows[0]["uncertainty_homo_ev"] ** 2)


def test_the_quantile_loss_is_least_where_sigma_covers_its_fraction_of_heavy_tailed_errors():
    errors = np.random.default_rng(2).standard_cauchy(4000)
    grid = np.linspace(0.3, 5.0, 400)
    best = grid[np.argmin([quantile_loss(errors, np.full_like(errors, s)) for s in grid])]
    assert np.mean(np.abs(errors) <= best) == pytest.approx(COVERAGE, abs=0.01)
