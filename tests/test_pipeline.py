"""End to end: generate -> train -> load_model -> predict / diagonalize / evaluate, API and CLI."""
from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

import eqchem
from eqchem import basis
from eqchem.data.reader import H5Dataset

from .conftest import generate_water_set


@pytest.fixture(scope="module")
def water_data(tmp_path_factory):
    """A small MD17-like water set (PBE/STO-3G) and a model trained on it for a few epochs."""
    from typer.testing import CliRunner

    from eqchem.cli.main import app

    d = tmp_path_factory.mktemp("water")
    generate_water_set(d, samples=15, seed=1)
    res = CliRunner().invoke(app, ["train", str(d / "water.h5"), "--out", str(d / "model.pt"), "--max-epochs", "4",
                    "--batch-size", "4", "--split-by", "structure", "--val-fraction", "0.2"])
    assert res.exit_code == 0, res.output
    return d


def test_train_writes_a_self_describing_model(water_data, run_cli):
    m = eqchem.load_model(water_data / "model.pt")
    assert m.basis == "sto-3g" and m.xc == "pbe" and m.elements == (1, 8) and m.target == "hamiltonian"
    meta = m.metadata
    for k in ("data_hash", "metrics", "train_keys", "val_keys", "eqchem_version", "pyscf_version", "atoms_range"):
        assert k in meta, k
    assert meta["atoms_range"] == [3, 3] and meta["heavy_atoms_range"] == [1, 1]  # water: one heavy atom
    assert m.describe()["coverage"].startswith("H O; 1 heavy atom, 3 atoms per training structure; ")
    assert "exact exchange" in meta["xc_description"]  # the parsed functional travels with the model
    assert meta["train_hardware"]["processes"] == 1 and meta["train_hardware"]["torch_threads"] >= 1
    assert meta["n_train_structures"] == 13 and meta["n_val_structures"] == 3
    assert not set(meta["train_keys"]) & set(meta["val_keys"])
    assert np.isfinite(meta["metrics"]["val_mae_uEh"])
    code, out = run_cli("info", water_data / "model.pt")
    assert code == 0 and "sto-3g" in out and "data hash" in out and "trained on" in out
    assert "1 process(es)" in m.describe()["trained on"]


def test_resume_continues_the_same_run(water_data, run_cli):
    run_dir = water_data / "model_run"
    assert (run_dir / "checkpoints" / "last.ckpt").exists()
    import torch

    earlier = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False, map_location="cpu")["train_seconds"]
    assert earlier > 0
    code, out = run_cli("train", water_data / "water.h5", "--out", water_data / "model2.pt", "--max-epochs", "5",
                        "--batch-size", "4", "--split-by", "structure", "--val-fraction", "0.2",
                        "--run-dir", run_dir, "--resume")
    assert code == 0, out
    assert "resuming" in out
    meta = eqchem.load_model(water_data / "model2.pt").metadata
    assert meta["epochs"] == 5
    # the model's training time counts the run it resumed (its checkpoint's seconds), not only the last epoch
    assert f"includes {earlier / 60:.1f} min of the run it resumed" in out and meta["train_seconds"] > earlier


def test_prediction_is_invariant_and_equivariant(water_data, rng):
    """Energies, gap, charges invariant; dipole rotates; under rotation + translation + permutation."""
    m = eqchem.load_model(water_data / "model.pt")
    numbers = np.array([8, 1, 1])
    pos = np.array([[0.0, 0.02, 0.1173], [0.0, 0.74, -0.46], [0.03, -0.77, -0.47]])
    ref = eqchem.predict((numbers, pos), model=m)
    r = basis.random_rotation(rng)
    perm = np.array([2, 0, 1])
    moved = eqchem.predict((numbers[perm], pos[perm] @ r.T + np.array([1.0, -2.0, 0.5])), model=m)
    assert np.allclose(moved.orbital_energies, ref.orbital_energies, atol=1e-5)
    assert abs(moved.gap - ref.gap) < 1e-5 and abs(moved.homo - ref.homo) < 1e-5
    assert np.allclose(moved.mulliken_charges, ref.mulliken_charges[perm], atol=1e-5)
    assert np.allclose(moved.dipole, r @ ref.dipole, atol=1e-5)
    # the Hamiltonian itself: H' = P D H Dᵀ Pᵀ
    d = basis.wigner_d_ao(ref.mole, r)
    h_rot = d @ ref.hamiltonian @ d.T
    off = np.array([0, 5, 6, 7])
    ao_perm = np.concatenate([np.arange(off[i], off[i + 1]) for i in perm])
    assert np.allclose(moved.hamiltonian, h_rot[np.ix_(ao_perm, ao_perm)], atol=1e-5)
    assert np.allclose(ref.hamiltonian, ref.hamiltonian.T)


def test_result_api_pyscf_views_energy_and_refine(water_data):
    from pyscf import dft

    m = eqchem.load_model(water_data / "model.pt")
    res = eqchem.predict(str(water_data / "water.xyz"), model=m)
    assert isinstance(res, eqchem.OrbitalResult)
    assert res.nocc == 5 and res.hamiltonian.shape == (7, 7) and res.density_matrix.shape == (7, 7)
    assert abs(np.trace(res.density_matrix @ res.overlap) - 10) < 1e-8
    assert abs(res.mulliken_charges.sum()) < 1e-8
    mf = res.to_pyscf()
    assert np.allclose(mf.make_rdm1(), res.density_matrix)
    e_pred = res.energy()
    conv, cycles = res.refine()
    ref = dft.RKS(res.mole)
    ref.xc, ref.grids.level, ref.conv_tol = "pbe", 2, 1e-9
    ref.kernel()
    assert abs(conv.settings["energy"] - ref.e_tot) < 1e-7 and cycles > 0
    assert e_pred >= ref.e_tot - 1e-6  # variational: the predicted density is not below the SCF minimum


def test_diagonalize_reference_reproduces_pyscf(water_data, run_cli):
    """eqchem diagonalize on stored reference H == PySCF's own eig / make_rdm1 / dip_moment / mulliken_pop."""
    from pyscf import dft, gto, scf

    code, out = run_cli("diagonalize", water_data / "water.h5", "--out", water_data / "diag.h5")
    assert code == 0, out
    ref = H5Dataset(water_data / "water.h5")["water"]
    rec = H5Dataset(water_data / "diag.h5")["water"]
    mol = gto.M(atom=[[int(z), p] for z, p in zip(rec.numbers, rec.positions)], basis="sto-3g", verbose=0)
    mf = dft.RKS(mol)
    e, c = mf.eig(ref.hamiltonian, ref.overlap)
    occ = mf.get_occ(e, c)
    dm = mf.make_rdm1(c, occ)
    assert np.abs(rec.orbital_energies - e).max() < 1e-8
    assert np.abs(rec.orbital_energies - ref.orbital_energies).max() < 1e-5  # vs the SCF's own (conv_tol 1e-9)
    assert np.abs(rec.density_matrix - dm).max() < 1e-8
    assert np.allclose(rec.dipole, scf.hf.dip_moment(mol, dm, unit="Debye", verbose=0), atol=1e-6)
    with h5py.File(water_data / "diag.h5", "r") as f:
        assert abs(f["molecules/water"].attrs["gap"] - (e[5] - e[4])) < 1e-8
    charges = scf.hf.mulliken_pop(mol, dm, ref.overlap, verbose=0)[1]
    res = eqchem.inference.result.from_matrix("w", rec.numbers, rec.positions, ref.hamiltonian, ref.overlap,
                                              "sto-3g", "pbe")
    assert np.allclose(res.mulliken_charges, charges, atol=1e-8)


def test_cli_predict_outputs_agree_with_api(water_data, run_cli):
    from pyscf.tools import molden

    xyz = water_data / "water.xyz"
    code, out = run_cli("predict", xyz, "--model", water_data / "model.pt", "--out", water_data / "r.json",
                        "--molden", water_data / "molden", "--cube", "homo,density", "--cube-dir", water_data / "cubes",
                        "--energy")
    assert code == 0, out
    assert "gap eV" in out and "H2O" in out
    rec = json.loads((water_data / "r.json").read_text())[0]
    for k in ("name", "formula", "homo_ev", "lumo_ev", "gap_ev", "orbital_energies_hartree", "dipole_debye",
              "mulliken_charges", "model", "energy_hartree"):
        assert k in rec, k
    # a one-structure CLI run builds its network without e3nn's einsum-order search (quick): the same build here,
    # so the numbers agree to the last bit rather than to float32 round-off of a differently ordered contraction
    api = eqchem.predict(str(xyz), model=eqchem.load_model(water_data / "model.pt", quick=True))
    assert np.allclose(rec["orbital_energies_hartree"], api.orbital_energies, atol=1e-9)
    assert f"{api.gap * 27.211386245988:.3f}" in out
    code, out = run_cli("predict", xyz, "--model", water_data / "model.pt", "--out", water_data / "r.h5")
    assert code == 0, out
    h5rec = H5Dataset(water_data / "r.h5")["water"]
    assert np.allclose(h5rec.hamiltonian, api.hamiltonian, atol=1e-12)
    # molden loads back into PySCF with the same orbitals
    mol, e, c, occ, *_ = molden.load(str(water_data / "molden" / "water.molden"))
    assert np.allclose(e, api.orbital_energies, atol=1e-6) and occ.sum() == 10
    # cube: right grid, density integrates to the electron count
    lines = (water_data / "cubes" / "water_density.cube").read_text().splitlines()
    nx, ny, nz = (int(lines[i].split()[0]) for i in (3, 4, 5))
    vol = np.prod([float(lines[i].split()[1 + i - 3]) for i in (3, 4, 5)])
    data = np.array(" ".join(lines[6 + 3:]).split(), dtype=float)
    assert data.size == nx * ny * nz
    assert abs(data.sum() * vol - 10) / 10 < 0.01


def test_evaluate_reports_metrics_and_plot(water_data, run_cli):
    code, out = run_cli("evaluate", water_data / "water.h5", "--model", water_data / "model.pt",
                        "--out", water_data / "metrics.json", "--plot", water_data / "parity.png", "--limit", "4",
                        "--scf")
    assert code == 0, out
    summary = json.loads((water_data / "metrics.json").read_text())[0]["summary"]
    for k in ("h_mae_uEh", "h_mae_diag_uEh", "h_mae_offd_uEh", "eps_occ_mae_uEh", "psi_cos_pct", "homo_mae_ev",
              "lumo_mae_ev", "gap_mae_ev", "scf_ratio"):
        assert k in summary and np.isfinite(summary[k]), k
    assert (water_data / "parity.png").stat().st_size > 1000


@pytest.mark.parametrize("case", ["element", "overlap", "odd", "empty", "malformed", "model_file", "basis"])
def test_predict_errors_are_one_clear_line(water_data, run_cli, tmp_path, case):
    model = water_data / "model.pt"
    files = {
        "element": ("x.xyz", "2\nname=x\nC 0 0 0\nO 0 0 1.2\n", "not covered"),
        "overlap": ("x.xyz", "3\nname=x\nO 0 0 0\nH 0 0 0.05\nH 0 1 0\n", "overlapping"),
        "odd": ("x.xyz", "2\nname=x\nO 0 0 0\nH 0 0 1\n", "odd number of electrons"),
        "empty": ("x.xyz", "", "empty"),
        "malformed": ("x.xyz", "3\nname=x\nO 0 0 zero\nH 0 0 1\nH 0 1 0\n", "x.xyz"),
    }
    if case in files:
        name, text, needle = files[case]
        (tmp_path / name).write_text(text)
        code, out = run_cli("predict", tmp_path / name, "--model", model, "--out", tmp_path / "o.json")
    elif case == "model_file":
        (tmp_path / "bad.pt").write_bytes(b"not a model")
        code, out = run_cli("predict", water_data / "water.xyz", "--model", tmp_path / "bad.pt",
                            "--out", tmp_path / "o.json")
        needle = "not a readable eqchem model"
    else:  # data in another basis than the model
        (tmp_path / "w.xyz").write_text((water_data / "water.xyz").read_text())
        assert run_cli("generate", tmp_path / "w.xyz", "--out", tmp_path / "svp.h5", "--xc", "pbe",
                       "--basis", "def2-svp")[0] == 0
        code, out = run_cli("evaluate", tmp_path / "svp.h5", "--model", model, "--out", tmp_path / "o.json")
        needle = "basis"
    assert code != 0, out
    assert needle in out.lower() or needle in out
    assert "Traceback" not in out and len(out.strip().splitlines()) <= 2
    assert not (tmp_path / "o.json").exists()


def test_tiny_model_memorizes_three_structures(water_data):
    """Overfit: a tiny float64 model reproduces 3 training structures to < 1e-5 Eh MAE."""
    import torch

    from eqchem.training.config import TrainConfig
    from eqchem.training.train import train

    ds = H5Dataset(water_data / "water.h5")
    keys = ds.keys()
    split = water_data / "split3.json"
    split.write_text(json.dumps({"train": keys[:3], "val": keys[3:4]}))
    cfg = TrainConfig.load(None, {"split_file": str(split), "max_epochs": 2, "batch_size": 3, "dtype": "float64",
                                  "model.hidden": "16,8,4", "model.pair_channels": "4,2,2", "refit_ridge": 1e-12})
    train([water_data / "water.h5"], water_data / "tiny.pt", cfg, run_dir=water_data / "tiny_run", log=lambda m: None)
    m = eqchem.load_model(water_data / "tiny.pt")
    assert next(m.net.parameters()).dtype == torch.float64
    recs = [ds[k] for k in keys[:3]]
    preds = m.predict_matrices([(r.numbers, r.positions) for r in recs])
    mae = np.mean([np.abs(p - r.hamiltonian).mean() for p, r in zip(preds, recs)])
    assert mae < 1e-5, mae


def test_ddp_training_on_two_cpu_processes(water_data):
    """Lightning DDP (gloo) with 2 CPU processes trains and writes one model file."""
    import subprocess
    import sys

    out = water_data / "ddp.pt"
    res = subprocess.run([sys.executable, "-m", "eqchem.cli", "train", str(water_data / "water.h5"), "--out", str(out),
                          "--max-epochs", "1", "--batch-size", "4", "--split-by", "structure", "--val-fraction", "0.2",
                          "--devices", "2", "--accelerator", "cpu", "--run-dir", str(water_data / "ddp_run")],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    assert eqchem.load_model(out).metadata["n_train_structures"] == 13


def test_ddp_metrics_match_a_single_process_run(water_data, tmp_path):
    """With a frozen body the model is the exact ridge solution on all training data: two DDP processes
    (Gram matrices all-reduced) and one process must give the same validation metrics."""
    import subprocess
    import sys

    cfg = tmp_path / "frozen.yaml"
    cfg.write_text("model: {pair_channels: '8,4,4', diag_channels: 8}\nbody_lr_scale: 0.0\nrefit_every: 1\n"
                   "refit_ridge: 1.0e-8\nema_decay: 0.0\nmax_epochs: 1\nsplit_by: structure\nval_fraction: 0.2\n"
                   "dtype: float64\n")
    metrics = []
    for devices in ("1", "2"):
        out = tmp_path / f"frozen_{devices}.pt"
        res = subprocess.run([sys.executable, "-m", "eqchem.cli", "train", str(water_data / "water.h5"), "--out",
                              str(out), "--config", str(cfg), "--batch-size", "2", "--devices", devices,
                              "--accelerator", "cpu", "--run-dir", str(tmp_path / f"run_{devices}")],
                             capture_output=True, text=True, timeout=600)
        assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
        metrics.append(eqchem.load_model(out).metadata["metrics"]["val_mae_uEh"])
    assert abs(metrics[0] - metrics[1]) <= 1e-6 * metrics[0], metrics


def test_resume_refuses_a_changed_config(water_data, run_cli):
    code, out = run_cli("train", water_data / "water.h5", "--out", water_data / "model3.pt", "--max-epochs", "5",
                        "--batch-size", "2", "--split-by", "structure", "--val-fraction", "0.2",
                        "--run-dir", water_data / "model_run", "--resume")
    assert code != 0 and "config changed" in out and "batch_size" in out


def test_resume_prefers_the_newest_checkpoint_and_slurm_is_detected(water_data, monkeypatch):
    """A Slurm requeue checkpoint (hpc_ckpt_*, written by Lightning on SIGUSR1) newer than last.ckpt wins."""
    import os
    import shutil

    from lightning.fabric.plugins.environments import SLURMEnvironment

    from eqchem.training.config import TrainConfig
    from eqchem.training.train import resume_checkpoint

    run_dir = water_data / "requeue_run"
    shutil.copytree(water_data / "model_run", run_dir)
    last = run_dir / "checkpoints" / "last.ckpt"
    cfg = TrainConfig.from_dict({k: v for k, v in __import__("yaml").safe_load(
        (run_dir / "train_config.yaml").read_text()).items()})
    assert resume_checkpoint(run_dir, cfg) == str(last)
    hpc = run_dir / "hpc_ckpt_1.ckpt"
    shutil.copy(last, hpc)
    os.utime(hpc, (last.stat().st_mtime + 10, last.stat().st_mtime + 10))
    assert resume_checkpoint(run_dir, cfg) == str(hpc)
    monkeypatch.setenv("SLURM_NTASKS", "2")
    monkeypatch.setenv("SLURM_JOB_NAME", "train")
    assert SLURMEnvironment.detect()
