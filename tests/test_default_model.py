"""The default model shipped inside the package: loads, describes itself, predicts, knows its domain."""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

import eqchem
from eqchem.model.file import default_model_path

EXAMPLES = Path(__file__).resolve().parent.parent / "datasets" / "examples"


@pytest.fixture(scope="module")
def model():
    return eqchem.load_model()


def test_default_model_is_small_and_self_describing(model):
    assert default_model_path().stat().st_size < 5e6
    assert model.basis == "def2-svp" and model.xc == "b3lyp"
    assert set(model.elements) == {1, 6, 7, 8, 9, 16, 17, 35}  # QM9's and the drug-like fragments' S, Cl, Br
    meta = model.metadata
    assert meta["grids_level"] == 3 and meta["conv_tol"] == 1e-10
    assert meta["n_train_molecules"] >= 100 and len(meta["train_keys"]) == meta["n_train_structures"]
    for k in ("h_mae_uEh", "h_mae_diag_uEh", "h_mae_offd_uEh", "eps_occ_mae_uEh", "psi_cos_pct", "gap_mae_ev"):
        assert np.isfinite(meta["test_metrics"][k]), k
    listed = (Path(__file__).resolve().parent.parent / meta["training_set_file"]).read_text()
    assert all(k in listed for k in meta["train_keys"])


def test_the_default_is_the_fast_mode(model):
    """The default mode needs no Fock build. How well it predicts is checked against PySCF references, not
    against the metrics stored in its own file: tests/test_reference_values.py."""
    assert model.metadata["mode"] == "fast" and model.fock_builds() == 0


def test_default_model_card_on_the_cli(run_cli):
    code, out = run_cli("info", "--model", "default")
    assert code == 0 and "b3lyp" in out and "def2-svp" in out and "H C N O F" in out


def test_readme_main_job(run_cli, model):
    code, out = run_cli("predict", EXAMPLES / "glycine.xyz")
    assert code == 0, out
    res = eqchem.predict(str(EXAMPLES / "glycine.xyz"))
    assert res.nocc == 20 and np.isfinite(res.gap) and res.hamiltonian.shape == (95, 95)
    assert f"{res.gap * 27.211386245988:.3f}" in out


def test_domain_checks(model, run_cli, tmp_path):
    (tmp_path / "ph3.xyz").write_text("4\nname=phosphine\nP 0 0 0\nH 1.42 0 0\nH -0.07 1.42 0\nH -0.07 -0.07 1.42\n")
    code, out = run_cli("predict", tmp_path / "ph3.xyz")
    assert code != 0 and "P" in out and "not covered" in out
    assert model.covers_elements([1, 6, 8]) and not model.covers_elements([15, 1])
    big = eqchem.read_structures("CCCCCCCCCCCCCCCC")[0]  # hexadecane: 50 atoms, beyond QM9's size range
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        eqchem.predict(big, model=model)
    assert any("extrapolation" in str(w.message) for w in caught)


def test_the_default_answers_for_everyday_molecules_with_s_cl_br(run_cli, tmp_path):
    """Issue 26's four everyday molecules (thiophene, chlorobenzene, DMSO, 3-bromopyridine), once refused: the
    default model answers for each from SMILES, in domain, each gap within 0.5 eV of PySCF's (B3LYP/def2-SVP at
    the cheap label settings, ``eqchem generate --preset fast-labels`` on the same SMILES geometries)."""
    import json

    pyscf_gap_ev = {"thiophene": 6.10, "chlorobenzene": 6.19, "DMSO": 7.28, "3-bromopyridine": 5.83}
    code, out = run_cli("predict", EXAMPLES / "s_cl_br.smi", "--out", tmp_path / "r.json")
    assert code == 0 and "Traceback" not in out, out
    rec = json.loads((tmp_path / "r.json").read_text())
    results = rec if isinstance(rec, list) else rec["results"]
    assert len(results) == 4
    for r in results:
        name = next(n for n in pyscf_gap_ev if r["name"].startswith(n))
        assert abs(r["gap_ev"] - pyscf_gap_ev[name]) < 0.5 and r["uncertainty"]["in_domain"], r


@pytest.mark.parametrize("mode", ["accurate", "fast"])
def test_both_modes_ship_small_self_described_models(mode):
    from eqchem.inference.model_file import load_model
    from eqchem.model.file import DEFAULT_MODE, SHIPPED_MODELS

    m = load_model(mode)
    assert m.path == default_model_path(mode) and m.path.name == SHIPPED_MODELS[mode]
    assert m.path.stat().st_size < 5e6 and np.isfinite(m.metadata["test_metrics"]["h_mae_uEh"])
    if mode == "fast":  # shipped by datasets/ship_model.py, which records these
        assert m.metadata["test_metrics"]["n_test_molecules"] >= 20 and m.metadata["mode"] == "fast"
        assert m.metadata["test_metrics"]["seconds_per_molecule"] > 0
    # fast: no PySCF Fock build at all (a grid-free Δ baseline, no Fock step); accurate: two
    assert m.fock_builds() == (0 if mode == "fast" else 2)
    assert load_model().path == default_model_path(DEFAULT_MODE) == load_model("default").path


def test_mode_and_model_file_are_exclusive_and_unknown_modes_are_one_line(run_cli, tmp_path):
    (tmp_path / "w.xyz").write_text("3\n\nO 0 0 0.1173\nH 0 0.7572 -0.4692\nH 0 -0.7572 -0.4692\n")
    code, out = run_cli("predict", tmp_path / "w.xyz", "--mode", "fast", "--model", "x.pt")
    assert code != 0 and "not both" in out and "Traceback" not in out
    code, out = run_cli("predict", tmp_path / "w.xyz", "--mode", "turbo")
    assert code != 0 and "unknown model mode 'turbo'" in out and "Traceback" not in out
    code, out = run_cli("predict", tmp_path / "w.xyz", "--mode", "fast")
    assert code == 0 and "Traceback" not in out, out
