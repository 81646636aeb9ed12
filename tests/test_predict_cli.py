"""What a new user of ``eqchem predict`` / ``eqchem.predict`` hits: charge and spin, messages that name their
structure or path, results kept as they finish, tables that keep full names, docs that hold."""
from __future__ import annotations

import json
import subprocess
import sys

from pathlib import Path

import numpy as np
import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "datasets" / "examples"

WATER_XYZ = "3\n{comment}\nO 0.0 0.0 0.1173\nH 0.0 0.7572 -0.4692\nH 0.0 -0.7572 -0.4692\n"
H3O_XYZ = "4\ncharge=1\nO 0.0 0.0 0.10\nH 0.0 0.95 -0.20\nH 0.0 -0.95 -0.20\nH 0.90 0.0 0.40\n"


@pytest.fixture(scope="module")
def model():
    from eqchem.inference.model_file import load_model

    return load_model()


def _error_line(out: str) -> str:
    lines = [ln for ln in out.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, out
    return lines[0]


# -- charge and spin ---------------------------------------------------------------------------------
def _file(directory, name: str, text: str):
    (directory / name).write_text(text)
    return directory / name


@pytest.mark.parametrize("make_input, word, name", [
    (lambda d: _file(d, "hydronium.xyz", H3O_XYZ), "charge", "hydronium"),
    (lambda d: "[NH4+]", "charge", "[NH4+]"),
    (lambda d: "CC(=O)[O-]", "charge", "CC(=O)[O-]"),
    (lambda d: _file(d, "radical.xyz", WATER_XYZ.format(comment="charge=1 multiplicity=2")), "spin", "radical"),
])
def test_neutral_model_refuses_ions_and_open_shells(run_cli, tmp_path, make_input, word, name):
    out = tmp_path / "r.json"
    code, text = run_cli("predict", make_input(tmp_path), "--out", out)
    assert code != 0, text
    line = _error_line(text)
    assert word in line and name in line and "--allow-extrapolation" in line, line
    assert "Traceback" not in text and not out.exists()


def test_extrapolation_on_request_records_charge_spin_and_warning(run_cli, tmp_path):
    (tmp_path / "hydronium.xyz").write_text(H3O_XYZ)
    out = tmp_path / "r.json"
    code, text = run_cli("predict", tmp_path / "hydronium.xyz", "--allow-extrapolation", "--out", out)
    assert code == 0, text
    rec = json.loads(out.read_text())[0]
    assert rec["charge"] == 1 and rec["spin"] == 0 and rec["multiplicity"] == 1
    assert rec["extrapolation"] is True and any("charge +1" in w for w in rec["warnings"])
    assert "warning:" in text and "hydronium *" in text
    # 10 electrons: the HOMO is the 5th orbital (the cation's own count, not the neutral's 11)
    assert rec["homo_ev"] == pytest.approx(rec["orbital_energies_hartree"][4] * 27.211386245988)

    code, text = run_cli("predict", tmp_path / "hydronium.xyz", "--spin", "2", "--allow-extrapolation",
                         "--out", tmp_path / "t.h5")
    assert code == 0, text
    import h5py

    with h5py.File(tmp_path / "t.h5") as f:
        g = f["molecules/hydronium"]
        assert g.attrs["charge"] == 1 and g.attrs["spin"] == 2 and g.attrs["extrapolation"]
        assert "spin (2S) 2" in g.attrs["warnings"]
        occ = g["orbital_occupations"][()]
        assert occ.sum() == pytest.approx(10) and (occ == 1).sum() == 2


def test_molecule_larger_than_any_training_molecule_warns_in_every_output(model, run_cli, tmp_path):
    import h5py

    import eqchem
    from eqchem.inference.checks import ExtrapolationWarning, coverage_warnings
    from eqchem.io.readers import read_structures
    from eqchem.model.file import save_model

    small = model.with_card(heavy_atoms_range=[1, 2])  # as if trained on molecules of 1-2 heavy atoms
    ethanol, water = (read_structures(EXAMPLES / f"{name}.xyz")[0] for name in ("ethanol", "water"))
    warning = "3 heavy atoms, more than the largest training molecule (2)"
    assert coverage_warnings(small, ethanol) == [warning]
    assert coverage_warnings(small, water) == []  # inside the range (and smaller molecules are not warned)
    assert coverage_warnings(model.with_card(heavy_atoms_range=None), ethanol) == []  # files without the field
    with pytest.warns(ExtrapolationWarning, match="3 heavy atoms"):
        res = eqchem.predict(ethanol, model=small)
    assert res.warnings == [warning] and res.summary()["extrapolation"] is True

    path = save_model(tmp_path / "small.pt", small.net, small.card, small.settings, small.change_of_basis)
    for out in (tmp_path / "r.json", tmp_path / "r.h5"):
        code, text = run_cli("predict", EXAMPLES / "ethanol.xyz", EXAMPLES / "water.xyz", "--model", path,
                             "--out", out)
        assert code == 0, text
        assert f"warning: ethanol: {warning}" in " ".join(text.split()) and "ethanol *" in text
        assert "water *" not in text
    recs = {r["name"]: r for r in json.loads((tmp_path / "r.json").read_text())}
    assert recs["ethanol"]["warnings"] == [warning] and recs["ethanol"]["extrapolation"] is True
    assert recs["water"]["warnings"] == [] and recs["water"]["extrapolation"] is False
    with h5py.File(tmp_path / "r.h5") as f:
        assert f["molecules/ethanol"].attrs["warnings"] == warning and f["molecules/ethanol"].attrs["extrapolation"]
        assert not f["molecules/water"].attrs["extrapolation"]


def test_cli_charge_override_and_open_shell_message(run_cli, tmp_path):
    (tmp_path / "hydronium.xyz").write_text(H3O_XYZ)
    code, text = run_cli("predict", tmp_path / "hydronium.xyz", "--charge", "0")
    line = _error_line(text)
    assert code == 2 and "odd number of electrons" in line and "--spin" in line and "hydronium" in line


def test_python_api_charge_spin_and_basis(model):
    from pyscf import gto

    import eqchem
    from eqchem.errors import BasisError, ModelError

    atoms = [["O", (0.0, 0.0, 0.1)], ["H", (0.0, 0.95, -0.2)], ["H", (0.0, -0.95, -0.2)], ["H", (0.9, 0.0, 0.4)]]
    cation = gto.M(atom=atoms, basis="def2-svp", charge=1, verbose=0)
    with pytest.raises(ModelError, match="charge"):
        eqchem.predict(cation, model=model)
    with pytest.warns(UserWarning, match="extrapolation"):
        res = eqchem.predict(cation, model=model, extrapolate=True)
    assert res.charge == 1 and res.nocc == 5 and res.warnings
    assert np.trace(res.density_matrix @ res.overlap) == pytest.approx(10.0)
    with pytest.raises(BasisError, match="sto-3g"):
        eqchem.predict(gto.M(atom=atoms[:3], basis="sto-3g", verbose=0), model=model)

    import ase

    ion = ase.Atoms("NH4", positions=[a[1] for a in atoms] + [(-0.9, 0.0, 0.4)], info={"charge": 1})
    with pytest.raises(ModelError, match="charge"):
        eqchem.predict(ion, model=model)


# -- messages that name the user's thing --------------------------------------------------------------
def test_missing_element_names_the_structure_before_any_work(run_cli, tmp_path):
    (tmp_path / "water.xyz").write_text(WATER_XYZ.format(comment=""))
    (tmp_path / "salt.xyz").write_text("2\n\nNa 0 0 0\nCl 0 0 2.4\n")
    out = tmp_path / "r.json"
    code, text = run_cli("predict", tmp_path / "water.xyz", tmp_path / "salt.xyz", "--out", out)
    line = _error_line(text)
    assert code == 2 and "salt" in line and "Na" in line and "internal error" not in line
    assert not out.exists() and "predicting" not in text


def test_output_paths_are_checked_before_any_work(run_cli, tmp_path):
    (tmp_path / "water.xyz").write_text(WATER_XYZ.format(comment=""))
    (tmp_path / "afile").write_text("x")
    code, text = run_cli("predict", tmp_path / "water.xyz", "--out", tmp_path / "afile" / "r.json")
    line = _error_line(text)
    assert code == 2 and "--out" in line and "afile" in line and "is a file" in line
    assert "internal error" not in line and "predicting" not in text
    code, text = run_cli("predict", tmp_path / "water.xyz", "--molden", tmp_path / "afile")
    assert code == 2 and "--molden" in _error_line(text)
    if hasattr(__import__("os"), "geteuid") and __import__("os").geteuid() == 0:
        return  # root writes anywhere: the permission case cannot be staged
    ro = tmp_path / "ro"
    ro.mkdir(mode=0o500)
    code, text = run_cli("predict", tmp_path / "water.xyz", "--out", ro / "r.json")
    line = _error_line(text)
    assert code == 2 and "not writable" in line and ".tmp" not in line


def test_inconsistent_model_file_gets_a_basis_message(run_cli, tmp_path):
    import torch

    from eqchem.model.file import default_model_path

    blob = torch.load(default_model_path(), weights_only=True)
    blob["layout"]["basis"] = "sto-3g"  # weights and shells of def2-SVP, a basis name that disagrees
    torch.save(blob, tmp_path / "bad.pt")
    (tmp_path / "water.xyz").write_text(WATER_XYZ.format(comment=""))
    code, text = run_cli("predict", tmp_path / "water.xyz", "--model", tmp_path / "bad.pt")
    line = _error_line(text)
    assert code == 2 and "basis layout" in line and "bad.pt" in line and "internal error" not in line


def test_missing_input_is_answered_before_heavy_imports(tmp_path):
    code = ("import sys; from eqchem.cli.main import app\n"
            "try:\n    app(['predict', 'missing.xyz'])\nexcept SystemExit as e:\n    rc = e.code\n"
            "heavy = [m for m in ('torch', 'pyscf', 'e3nn', 'rdkit') if m in sys.modules]\n"
            "print('RC', rc, 'HEAVY', ','.join(heavy) or '-')\n")
    res = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert "RC 2 HEAVY -" in res.stdout, res.stdout + res.stderr
    assert "file not found: missing.xyz" in res.stderr


# -- every computed quantity reaches the user -----------------------------------------------------------
def test_energy_and_refine_columns_and_full_names_in_a_pipe(tmp_path):
    name = "a_rather_long_structure_name_that_an_80_column_table_would_cut"
    (tmp_path / "w.xyz").write_text(WATER_XYZ.format(comment=f"name={name}"))
    res = subprocess.run([sys.executable, "-m", "eqchem.cli", "predict", str(tmp_path / "w.xyz"), "--energy",
                          "--refine", "--out", str(tmp_path / "r.json")], capture_output=True, text=True,
                         timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    assert name in res.stdout and "E Eh" in res.stdout and "SCF cycles" in res.stdout
    rec = json.loads((tmp_path / "r.json").read_text())[0]
    assert f"{rec['energy_hartree']:.6f}" in res.stdout and f"{rec['refined_energy_hartree']:.6f}" in res.stdout
    assert rec["scf_converged"] is True and rec["scf_cycles"] >= 1


def test_interrupted_run_keeps_finished_structures(run_cli, tmp_path, monkeypatch):
    from eqchem.cli import model_commands

    frames = "".join(WATER_XYZ.format(comment=f"name=w{i}") for i in range(3))
    (tmp_path / "frames.xyz").write_text(frames)
    real, calls = model_commands._finish_prediction, []

    def finish_then_interrupt(r, *args):
        calls.append(r.name)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(r, *args)

    monkeypatch.setattr(model_commands, "_finish_prediction", finish_then_interrupt)
    out = tmp_path / "r.json"
    code, text = run_cli("predict", tmp_path / "frames.xyz", "--out", out, "--batch-size", "1")
    assert code == 130 and "interrupted after 1 of 3" in _error_line(text)
    assert [r["name"] for r in json.loads(out.read_text())] == ["w0"]


def test_result_repr_and_pyscf_view(model):
    import eqchem

    res = eqchem.predict(EXAMPLES / "water.xyz", model=model)
    text = repr(res)
    assert len(text) < 300 and "H2O" in text and "gap" in text
    mf = res.to_pyscf()
    assert mf.e_tot == pytest.approx(res.energy(), abs=1e-8) and mf.e_tot < -70
    refined, cycles = res.refine()
    assert isinstance(cycles, int) and refined.settings["converged"]


def test_card_states_coverage_functional_and_one_unit_per_quantity(run_cli):
    code, text = run_cli("info", "--model", "default")
    assert code == 0, text
    flat = " ".join(text.split())
    assert "neutral closed-shell" in flat and "VWN-RPA" in flat and "b3lyp5" in flat
    assert not any("gap" in ln and "uEh" in ln for ln in text.splitlines())
    # piped to a file, long values (notes, the architecture) wrap in their cell instead of one 400-wide line
    assert max(len(ln) for ln in text.splitlines()) <= 120 and "hidden=" in flat
