"""PySCF's integrals computed ahead in a helper process (eqchem.inference.integrals_ahead) give the
predictions the pipeline computes itself; model headers read without torch."""
from __future__ import annotations

import json
import subprocess
import sys
from concurrent.futures import Future
from pathlib import Path

import numpy as np
import pytest
import torch

import eqchem
from eqchem.basis import element_shells
from eqchem.cpu import available_cores
from eqchem.inference.integrals_ahead import IntegralsAhead, _geometry_key, start_integrals_ahead
from eqchem.model.file import model_path, read_header
from eqchem.inference.pipeline import PredictionPipeline
from eqchem.io.structure import Structure

from .conftest import WATER

ETHANOL = str(Path(__file__).resolve().parents[1] / "datasets" / "examples" / "ethanol.xyz")

needs_two_cores = pytest.mark.skipif(available_cores() < 2, reason="the helper is started only with 2+ cores")


def _molecules() -> list[Structure]:
    z, r = WATER
    rng = np.random.default_rng(3)
    water = Structure(np.array(z), np.array(r) + 0.03 * rng.standard_normal((3, 3)), name="water")
    ethanol = eqchem.read_structures(ETHANOL)[0]
    cation = Structure(np.array(z), np.array(r), charge=1, spin=1, name="water+")
    return [water, ethanol, cation]


def test_the_header_is_the_saved_dict_without_torch():
    from eqchem.model.file import read_model_file

    code = ("import sys; from eqchem.model.file import read_header, model_path; "
            "h = read_header(model_path('fast')); assert 'torch' not in sys.modules; "
            "print(h.config.baseline, h.basis, h.settings.correction_pair_cutoff)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    blob = torch.load(model_path("fast"), weights_only=True)
    full = read_model_file("fast")
    assert out == [full.config.baseline, blob["layout"]["basis"], str(full.settings.correction_pair_cutoff)]
    header = read_header(model_path("fast"))
    assert header.card == full.card and header.config == full.config and header.settings == full.settings


def test_not_a_model_file_has_no_header(tmp_path):
    torch.save({"format": "something-else", "w": torch.ones(2)}, tmp_path / "other.pt")
    (tmp_path / "text.pt").write_text("not a zip")
    assert read_header(tmp_path / "other.pt") is None
    assert read_header(tmp_path / "text.pt") is None
    assert read_header(tmp_path / "missing.pt") is None


def test_no_helper_where_the_model_file_is_unreadable(tmp_path):
    mols = _molecules()
    assert start_integrals_ahead(tmp_path / "missing.pt", mols) is None
    assert start_integrals_ahead("no-such-mode", mols) is None


@needs_two_cores
@pytest.mark.parametrize("mode", ["fast", "accurate"])
def test_results_with_the_helpers_integrals_are_the_pipelines_own(mode):
    mols = _molecules() if mode == "fast" else _molecules()[:1]  # accurate: a minao Fock build + a Fock step
    model = eqchem.load_model(mode)
    own = PredictionPipeline(model, batch_size=4).results(mols, [[]] * len(mols))
    ahead = start_integrals_ahead(mode, mols)
    assert ahead is not None
    try:
        taken = PredictionPipeline(model, batch_size=4, integrals_ahead=ahead).results(mols, [[]] * len(mols))
        for s in mols:  # every structure (ion included: its own electron count) was computed by the helper
            assert ahead.integrals(s.numbers, s.positions, int(s.numbers.sum()) - s.charge) is not None
        assert ahead.integrals(mols[0].numbers, mols[0].positions + 0.1, 10) is None
        assert ahead.shells()[8] == element_shells(model.basis, 8)  # the basis check's layouts
    finally:
        ahead.close()
    for a, b in zip(own, taken):  # the same functions on the same Mole: equal to round-off
        assert np.allclose(a.hamiltonian, b.hamiltonian, atol=1e-12, rtol=0)
        assert np.allclose(a.overlap, b.overlap, atol=1e-12, rtol=0)
        assert np.allclose(a.orbital_energies, b.orbital_energies, atol=1e-10, rtol=0)
        assert np.allclose(a.dipole, b.dipole, atol=1e-10, rtol=0)
        assert np.allclose(a.mulliken_charges, b.mulliken_charges, atol=1e-10, rtol=0)
        assert b.mole.nao == a.overlap.shape[0]  # the Mole is still there on demand


def test_a_failed_helper_leaves_the_work_to_the_pipeline():
    mols = _molecules()[:1]
    failed = Future()
    failed.set_exception(RuntimeError("helper died"))
    s = mols[0]
    ahead = IntegralsAhead(None, failed, [_geometry_key(s.numbers, s.positions, 10)], "def2-svp")
    model = eqchem.load_model("fast")
    taken = PredictionPipeline(model, integrals_ahead=ahead).results(mols, [[]])
    own = PredictionPipeline(model).results(mols, [[]])
    assert ahead.integrals(s.numbers, s.positions, 10) is None
    assert np.allclose(taken[0].hamiltonian, own[0].hamiltonian, atol=1e-12, rtol=0)


@needs_two_cores
def test_a_fast_json_prediction_from_the_shell_needs_no_pyscf_in_its_own_process(tmp_path):
    out = tmp_path / "out.json"
    code = ("import sys; from eqchem.cli.main import app\n"
            f"sys.argv = ['eqchem', 'predict', '--mode', 'fast', {ETHANOL!r}, '-o', {str(out)!r}]\n"
            "try:\n    app()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
            "print('pyscf' in sys.modules)")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert run.stdout.strip().splitlines()[-1] == "False"
    record = json.loads(out.read_text())[0]
    direct = eqchem.predict(ETHANOL, model="fast")
    assert abs(record["gap_ev"] - direct.summary()["gap_ev"]) < 1e-4
    assert np.allclose(record["dipole_debye"], direct.dipole, atol=1e-4)
