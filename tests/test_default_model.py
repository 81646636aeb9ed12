"""The default model shipped inside the package: loads, describes itself, predicts, knows its domain."""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

import eqchem
from eqchem.inference.model_file import default_model_path

EXAMPLES = Path(__file__).resolve().parent.parent / "datasets" / "examples"


@pytest.fixture(scope="module")
def model():
    return eqchem.load_model()


def test_default_model_is_small_and_self_describing(model):
    assert default_model_path().stat().st_size < 5e6
    assert model.basis == "def2-svp" and model.xc == "b3lyp"
    assert set(model.elements) == {1, 6, 7, 8, 9}
    meta = model.metadata
    assert meta["grids_level"] == 3 and meta["conv_tol"] == 1e-10
    assert meta["n_train_molecules"] >= 100 and len(meta["train_keys"]) == meta["n_train_structures"]
    for k in ("h_mae_uEh", "h_mae_diag_uEh", "h_mae_offd_uEh", "eps_occ_mae_uEh", "psi_cos_pct", "gap_mae_ev"):
        assert np.isfinite(meta["test_metrics"][k]), k
    listed = (Path(__file__).resolve().parent.parent / "datasets" / "qm9" / "default_training_set.csv").read_text()
    assert all(k in listed for k in meta["train_keys"])


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
    (tmp_path / "hcl.xyz").write_text("2\nname=hcl\nH 0 0 0\nCl 0 0 1.27\n")
    code, out = run_cli("predict", tmp_path / "hcl.xyz")
    assert code != 0 and "Cl" in out and "not covered" in out
    big = eqchem.read_structures("CCCCCCCCCCCCCCCC")[0]  # hexadecane: 50 atoms, beyond QM9's size range
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        eqchem.predict(big, model=model)
    assert any("extrapolation" in str(w.message) for w in caught)
