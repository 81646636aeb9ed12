"""Prediction has one owner, :class:`PredictionPipeline`: named stages in order, each timed; ``predict_matrices``
and ``eqchem.predict`` go through it with the same numbers; ``eqchem predict --timings`` prints the stages."""
from __future__ import annotations

import subprocess
import sys
import time

import numpy as np
import pytest

import eqchem
from eqchem.inference.pipeline import STAGES, PredictionPipeline, StageTimings
from eqchem.inference.predict import run_predictions

from .conftest import WATER, generate_water_set

WATER_MOLS = [(np.array(WATER[0]), np.array(WATER[1])),
              (np.array(WATER[0]), np.array(WATER[1]) + np.array([[0.0, 0.03, -0.02], [0.02, -0.04, 0.0], [0.0] * 3]))]


def tiny_model(baseline: str = "none", fock_mixing: float = 0.0, **config):
    """An untrained float64 network for H and O in STO-3G, PBE as its functional (in memory, seeded)."""
    import torch

    from eqchem.basis import BasisLayout
    from eqchem.inference.model_file import EqchemModel
    from eqchem.model.card import ModelCard
    from eqchem.model.config import ModelConfig
    from eqchem.model.hamiltonian import build_model
    from eqchem.model.settings import PredictionSettings

    torch.manual_seed(0)
    cfg = ModelConfig(hidden="8,4", pair_channels="4,2,2", diag_channels=4, baseline=baseline)
    net = build_model(BasisLayout.from_basis("sto-3g", [1, 8]), cfg, 4.0, torch.float64)
    return EqchemModel(net, ModelCard(xc="pbe", name=f"tiny-{baseline}"),
                       PredictionSettings(fock_mixing=fock_mixing, **config), None)


@pytest.fixture
def one_thread():
    """PySCF's threaded grid sums are not bitwise reproducible; one thread makes Fock builds repeatable."""
    from pyscf import lib

    with lib.with_omp_threads(1):
        yield


def test_every_stage_is_timed_and_the_stages_add_up_to_the_total():
    from .test_uncertainty import with_estimates

    model = with_estimates(tiny_model("minao-fock", fock_mixing=0.3, correction_pair_cutoff=1.45), WATER_MOLS)
    timings = StageTimings()
    t0 = time.perf_counter()
    run = run_predictions(WATER_MOLS, model, batch_size=2, timings=timings, check=True)
    wall = time.perf_counter() - t0
    t = run.timings
    assert t is timings and len(run.results) == 2 and t.molecules == 2
    assert tuple(t.seconds) == STAGES == ("structures", "network", "blocks", "baseline", "fock_step", "result",
                                          "uncertainty", "check", "check_response")
    assert all(s > 0 for s in t.seconds.values()), t.seconds
    assert t.total == pytest.approx(sum(t.seconds.values()))
    assert 0.9 * wall <= t.total <= wall  # nothing of note happens outside a stage
    assert t.per_molecule() == {k: v / 2 for k, v in t.seconds.items()}
    d = t.as_dict()
    assert d["molecules"] == 2 and d["total_s"] == t.total and d["seconds"] == t.seconds
    # each result's seconds: its share of the matrix stages plus its own result stage (not the checks)
    assert t.total - t.seconds["structures"] <= sum(r.seconds for r in run.results) <= wall


def test_timings_accumulate_over_calls_of_eqchem_predict():
    model = tiny_model()
    t = StageTimings()
    one = eqchem.predict(WATER_MOLS[0], model=model, timings=t)
    first = dict(t.seconds)
    both = eqchem.predict(WATER_MOLS, model=model, timings=t)
    assert t.molecules == 3 and len(both) == 2
    assert all(t.seconds[k] > first[k] for k in ("structures", "network", "blocks", "result"))
    assert np.allclose(one.hamiltonian, both[0].hamiltonian, atol=1e-12)  # batched: round-off apart
    again = eqchem.predict(WATER_MOLS[0], model=model)  # timings or not: the same prediction
    assert np.array_equal(again.hamiltonian, one.hamiltonian) and again.gap == one.gap


@pytest.mark.parametrize("baseline, mixing, config", [
    ("none", 0.0, {}),
    ("none", 0.3, {}),
    ("core-j", 0.0, {"correction_pair_cutoff": 1.45, "correction_overlap_cutoff": 0.3}),
    ("minao-fock", 0.3, {"correction_pair_cutoff": 1.45}),
])
def test_predict_matrices_is_the_pipeline_exactly(baseline, mixing, config, one_thread):
    model = tiny_model(baseline, mixing, **config)
    mats = model.predict_matrices(WATER_MOLS, batch_size=2, charges=[0, 0])
    piped = PredictionPipeline(model, batch_size=2).matrices(WATER_MOLS, charges=[0, 0])
    for a, b in zip(mats, piped):
        assert a.dtype == b.dtype == np.float64 and a.shape == (7, 7)
        assert np.array_equal(a, b)
    results = run_predictions(WATER_MOLS, model, batch_size=2).results
    for a, r in zip(mats, results):
        assert np.array_equal(a, r.hamiltonian)


def test_predict_matrices_and_predict_delegate_to_the_pipeline(monkeypatch):
    from eqchem.inference.model_file import EqchemModel

    calls = []
    predicted = PredictionPipeline._predict
    monkeypatch.setattr(PredictionPipeline, "_predict",
                        lambda self, *a, **k: calls.append(type(self)) or predicted(self, *a, **k))
    model = tiny_model()
    model.predict_matrices(WATER_MOLS)
    eqchem.predict(WATER_MOLS, model=model)
    assert calls == [PredictionPipeline, PredictionPipeline]
    assert not hasattr(EqchemModel, "_assemble")  # prediction lives in the pipeline only


def test_delta_model_stages_compose_guess_filtered_correction_and_fock_step_bit_for_bit(one_thread):
    from eqchem.dft.fock_step import fock_step
    from eqchem.dft.frame import canonical_mole
    from eqchem.dft.guess import guess_and_overlap
    from eqchem.inference.correction import filter_correction

    model = tiny_model("minao-fock", fock_mixing=0.3, correction_overlap_cutoff=0.3)
    z, r = WATER_MOLS[1]
    bare = PredictionPipeline(model, fock_step=False, baseline_stage=False).matrices([(z, r)])[0]  # the network's part
    frame = canonical_mole(z, r, "sto-3g")
    guess, s = guess_and_overlap(z, r, "sto-3g", "pbe", "minao-fock", frame, 10)
    delta = guess + filter_correction(bare, s, 0.3)
    assert np.array_equal(PredictionPipeline(model, fock_step=False).matrices([(z, r)])[0], delta)
    stepped = fock_step(z, r, delta, s, 10, "sto-3g", "pbe", 0.3, frame, 0)
    assert np.array_equal(PredictionPipeline(model).matrices([(z, r)])[0], stepped)


@pytest.mark.parametrize("baseline, mixing, fock_step, ran", [
    ("none", 0.0, True, ()),
    ("none", 0.3, False, ()),
    ("none", 0.3, True, ("fock_step",)),
    ("core-j", 0.0, True, ("baseline",)),
    ("minao-fock", 0.3, False, ("baseline",)),
    ("minao-fock", 0.3, True, ("baseline", "fock_step")),
])
def test_baseline_and_fock_step_stages_run_only_where_the_model_has_them(baseline, mixing, fock_step, ran):
    t = run_predictions(WATER_MOLS[0], tiny_model(baseline, mixing), fock_step=fock_step).timings
    for stage in ("baseline", "fock_step"):
        if stage in ran:
            assert t.seconds[stage] > 0, (stage, t.seconds)
        else:
            assert t.seconds[stage] == 0.0, (stage, t.seconds)
    assert all(t.seconds[k] > 0 for k in ("structures", "network", "blocks", "result"))


def test_refusals_still_come_from_the_structures_stage(monkeypatch):
    from eqchem.errors import ModelError

    forward = []
    network = PredictionPipeline._network
    monkeypatch.setattr(PredictionPipeline, "_network", lambda self, *a: forward.append(1) or network(self, *a))
    model = tiny_model()
    carbon = (np.array([6, 1, 1, 1, 1]), np.array([[0.0, 0, 0], [0.63, 0.63, 0.63], [-0.63, -0.63, 0.63],
                                                    [-0.63, 0.63, -0.63], [0.63, -0.63, -0.63]]))
    t = StageTimings()
    with pytest.raises(ModelError):
        model.predict_matrices([WATER_MOLS[0], carbon])
    with pytest.raises(ModelError):
        PredictionPipeline(model, timings=t).matrices([WATER_MOLS[0], carbon])
    assert not forward and t.seconds["blocks"] == 0.0 and t.molecules == 0  # refused before the network ran
    assert t.seconds["structures"] > 0
    with pytest.raises(KeyError):
        with t.stage("diagonalize"):
            pass


def test_cli_predict_prints_the_stage_table_after_the_results(run_cli, tmp_path):
    from eqchem.model.card import ModelCard
    from eqchem.model.file import save_model

    model = tiny_model("core-j")
    save_model(tmp_path / "tiny.pt", model.net, ModelCard(xc="pbe", basis="sto-3g"), model.settings)
    xyz = tmp_path / "water.xyz"
    xyz.write_text("3\nname=water\n" + "".join(f"{s} {x} {y} {z}\n" for s, (x, y, z) in zip("OHH", WATER[1])))
    code, out = run_cli("predict", xyz, xyz, "--model", tmp_path / "tiny.pt", "--timings")
    assert code == 0, out
    head, sep, table = out.partition("prediction stages")
    assert sep and "water" in head and "HOMO eV" in head, out  # the results first, then the stage table
    assert "2 molecule(s)" in table and "s / molecule" in table
    rows = [[c.strip() for c in ln.split("│")[1:-1]] for ln in table.splitlines() if ln.startswith("│")]
    assert [row[0] for row in rows] == [*STAGES, "total"], table
    seconds = {row[0]: float(row[1]) for row in rows}
    assert abs(sum(seconds[k] for k in STAGES) - seconds["total"]) < 5e-4, table
    assert all(abs(float(row[2]) - float(row[1]) / 2) < 1e-4 for row in rows), table  # per molecule: 2 of them
    # the baseline stage may round to 0 here: a helper process computed the guesses while torch imported
    assert seconds["network"] > 0 and seconds["fock_step"] == 0, table
    code, out = run_cli("predict", xyz, "--model", tmp_path / "tiny.pt")
    assert code == 0 and "prediction stages" not in out and "fock_step" not in out


def test_evaluate_goes_through_the_pipeline(tmp_path):
    from eqchem.data.reader import H5Dataset
    from eqchem.inference.evaluate import evaluate

    ds = H5Dataset(generate_water_set(tmp_path, samples=2, seed=3))
    model = tiny_model("core-j")
    t = StageTimings()
    ev = evaluate(ds, model, batch_size=2, timings=t)
    assert ev["summary"]["n_molecules"] == 3 and t.molecules == 3
    assert all(t.seconds[k] > 0 for k in ("structures", "network", "blocks", "baseline"))
    assert t.seconds["fock_step"] == 0.0 and t.seconds["result"] == 0.0  # evaluate needs matrices only
    recs = [ds[k] for k in ds.keys()]
    h = model.predict_matrices([(r.numbers, r.positions) for r in recs[:2]])[0]
    assert ev["molecules"][0]["key"] == recs[0].key
    assert ev["molecules"][0]["h_mae_uEh"] == pytest.approx(np.abs(h - recs[0].hamiltonian).mean() * 1e6)


def test_pipeline_and_pair_lists_import_without_heavy_modules():
    code = ("import sys\nimport eqchem.inference.pipeline, eqchem.cli.model_commands\n"
            "print('HEAVY', ','.join(m for m in ('torch', 'pyscf', 'e3nn') if m in sys.modules) or '-')\n"
            "from eqchem.model.graph import local_pairs\n"
            "print('GRAPH', ','.join(m for m in ('e3nn', 'eqchem.training', 'eqchem.inference.model_file')"
            " if m in sys.modules) or '-')\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "HEAVY -" in res.stdout and "GRAPH -" in res.stdout, res.stdout + res.stderr
    from eqchem.model.graph import local_pairs
    from eqchem.training import data

    assert data.local_pairs is local_pairs
    p = local_pairs(np.array(WATER[1]), 1.2)
    assert p.dtype == np.int64 and p.tolist() == [[0, 0, 1, 2], [1, 2, 0, 0]]  # O-H both ways; H-H is 1.51 Å


def test_pairs_beyond_the_correction_pair_cutoff_are_not_computed_and_nothing_changes(monkeypatch):
    """A Δ-model's atom-pair corrections are zero from ``correction_pair_cutoff`` on: the network predicts
    only the pairs within it (fewer pair blocks, less time), with the same matrices as when it predicted every
    pair within the model's pair cutoff and the switch zeroed the far ones."""
    model = tiny_model("core", correction_pair_cutoff=2.5)
    mols = WATER_MOLS + [(np.array([8, 1, 1, 8, 1, 1]),
                          np.concatenate([WATER[1], np.array(WATER[1]) + [0.0, 0.0, 2.6]]))]
    pipeline = PredictionPipeline(model)
    seen = []
    original = PredictionPipeline._batch

    def recording(self, chunk, cutoff):
        b = original(self, chunk, cutoff)
        seen.append(sum(p.shape[1] for p in b.pairs))
        return b

    monkeypatch.setattr(PredictionPipeline, "_batch", recording)
    fewer = pipeline.matrices(mols)
    monkeypatch.setattr(PredictionPipeline, "pair_cutoff", property(lambda self: self.model.net.config.pair_cutoff))
    every = pipeline.matrices(mols)
    assert seen[0] < seen[1]  # the water dimer's far pairs were left out
    for a, b in zip(fewer, every):
        assert np.abs(a - b).max() < 1e-12
