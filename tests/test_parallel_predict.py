"""Predictions shared out over helper processes (eqchem.inference.parallel) are the one-process predictions."""
from __future__ import annotations

import json
import pickle

import numpy as np

import eqchem
from eqchem.inference.pipeline import StageTimings
from eqchem.io.structure import Structure

from .conftest import WATER


def _waters(n: int, seed: int = 0) -> list[Structure]:
    rng = np.random.default_rng(seed)
    z, r = WATER
    return [Structure(np.array(z), np.array(r) + 0.05 * rng.standard_normal((3, 3)), name=f"w{i}") for i in range(n)]


def test_helpers_give_the_one_process_results_in_input_order():
    structures = _waters(10)
    model = eqchem.load_model("fast")
    one = eqchem.predict(structures, model=model, batch_size=3)
    t = StageTimings()
    many = eqchem.predict(structures, model=model, batch_size=3, workers=2, timings=t)
    assert [r.name for r in many] == [s.name for s in structures]
    for a, b in zip(one, many):  # equal up to the float32 network's round-off under another thread count
        assert np.allclose(a.hamiltonian, b.hamiltonian, atol=5e-6, rtol=0)
        assert np.allclose(a.orbital_energies, b.orbital_energies, atol=5e-6, rtol=0)
        assert np.allclose(a.dipole, b.dipole, atol=5e-5, rtol=0)
    assert t.molecules == len(structures) and t.seconds["network"] > 0 and t.seconds["baseline"] > 0
    assert many[0].mole.nao == one[0].mole.nao  # the Mole, dropped in transit, is rebuilt on use


def test_a_result_pickles_without_its_mole():
    r = eqchem.predict(_waters(1)[0], model="fast")
    _ = r.mole
    back = pickle.loads(pickle.dumps(r))
    assert back._mole is None and np.array_equal(back.hamiltonian, r.hamiltonian)
    assert back.mole.nao == r.mole.nao


def test_cli_workers_option(run_cli, tmp_path):
    path = tmp_path / "w.xyz"
    path.write_text("".join(f"3\nw{i}\n" + "".join(f"{s} {x:.6f} {y:.6f} {z:.6f}\n" for s, (x, y, z) in
                                                   zip("OHH", st.positions)) for i, st in enumerate(_waters(6))))
    code, out = run_cli("predict", "--mode", "fast", path, "--workers", "2", "--batch-size", "2",
                        "-o", tmp_path / "r.json")
    assert code == 0 and "2 processes" in out, out
    assert [r["name"] for r in json.loads((tmp_path / "r.json").read_text())] == [f"w_{i}" for i in range(6)]  # file stem + frame
    code, out = run_cli("predict", "--mode", "fast", path, "--workers", "0")
    assert code != 0 and "--workers" in out


def test_spawn_environment_hides_main_and_fixes_threads_then_restores_both(monkeypatch):
    import os
    import sys

    from eqchem.cpu import THREAD_VARIABLES, spawn_environment

    monkeypatch.setenv("OMP_NUM_THREADS", "7")
    main = sys.modules["__main__"]
    with spawn_environment(1):
        assert sys.modules["__main__"] is not main and not hasattr(sys.modules["__main__"], "__file__")
        assert all(os.environ[k] == "1" for k in THREAD_VARIABLES)
    assert sys.modules["__main__"] is main and os.environ["OMP_NUM_THREADS"] == "7"


def test_cli_prediction_runs_with_the_thread_policy(run_cli, monkeypatch, tmp_path):
    import os

    from eqchem import cpu
    from eqchem.inference.pipeline import PredictionPipeline

    seen = []  # every loaded library's threads as the pipeline finishes a batch

    def results(self, *args, **kwargs):
        out = original(self, *args, **kwargs)
        seen.append(cpu.thread_counts())
        return out

    original = PredictionPipeline.results
    monkeypatch.setattr(PredictionPipeline, "results", results)
    (tmp_path / "w.xyz").write_text("3\nname=w\nO 0 0 0.1173\nH 0 0.7572 -0.4692\nH 0 -0.7572 -0.4692\n")
    with cpu.limit_threads(2):  # two threads everywhere to start from; all restored afterwards, environment too
        for k in cpu.THREAD_VARIABLES:
            os.environ.pop(k, None)
        code, out = run_cli("predict", tmp_path / "w.xyz")  # the user chose nothing: one thread everywhere
        assert code == 0, out
        assert seen[-1]["torch"] == 1 and set(seen[-1].values()) == {1}, seen
        code, out = run_cli("predict", tmp_path / "w.xyz", "--threads", "2")
        assert code == 0 and seen[-1]["torch"] == 2, seen
        cpu.use_inference_threads(2)
        code, out = run_cli("predict", tmp_path / "w.xyz")  # OMP_NUM_THREADS=2 set: left as it is
        assert os.environ["OMP_NUM_THREADS"] == "2" and code == 0 and seen[-1]["torch"] == 2, seen
        code, out = run_cli("predict", tmp_path / "w.xyz", "--threads", "0")
        assert code != 0 and "--threads" in out
    assert len(seen) == 3 and len(seen[0]) > 1, seen  # torch and at least one BLAS checked


def test_python_prediction_runs_with_one_thread_and_restores_the_callers(monkeypatch):
    import os

    import numpy as np
    import torch

    import eqchem
    from eqchem import cpu
    from eqchem.inference.pipeline import PredictionPipeline

    seen = []

    def results(self, *args, **kwargs):
        seen.append(cpu.thread_counts())
        return original(self, *args, **kwargs)

    original = PredictionPipeline.results
    monkeypatch.setattr(PredictionPipeline, "results", results)
    water = (np.array([8, 1, 1]), np.array([[0, 0, 0.1173], [0, 0.7572, -0.4692], [0, -0.7572, -0.4692]]))
    before = os.environ.get("OMP_NUM_THREADS")
    with cpu.limit_threads(2):
        for k in cpu.THREAD_VARIABLES:
            monkeypatch.delenv(k, raising=False)
        eqchem.predict(water, model="fast")
        assert seen[-1]["torch"] == 1 and set(seen[-1].values()) == {1}, seen
        assert torch.get_num_threads() == 2  # the caller's count back afterwards
        monkeypatch.setenv("OMP_NUM_THREADS", "2")
        eqchem.predict(water, model="fast")
        assert seen[-1]["torch"] == 2, seen
    assert os.environ.get("OMP_NUM_THREADS") == before
