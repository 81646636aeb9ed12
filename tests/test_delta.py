"""Δ-models: the minao-Fock guess is exactly equivariant, `eqchem guess` stores it, and a model trained
on H - guess predicts guess + correction, invariant under rotation, reflection, translation, permutation."""
from __future__ import annotations

import numpy as np
import pytest

import eqchem
from eqchem import basis
from eqchem.dft.guess import guess_hamiltonian
from eqchem.inference.pipeline import PredictionPipeline
from eqchem.orbitals import solve_generalized

from .conftest import ETHANOL, WATER, generate_water_set


@pytest.mark.parametrize("kind, bound", [("minao-fock", 0.02), ("core-j", 0.12)])
@pytest.mark.parametrize("mol, basis_name", [(WATER, "def2-svp"), (ETHANOL, "sto-3g")])
def test_guess_is_equivariant_and_close_to_the_scf_matrix(mol, basis_name, kind, bound, rng):
    from pyscf import dft, gto

    numbers, pos = np.array(mol[0]), np.array(mol[1])
    h0 = guess_hamiltonian(numbers, pos, basis_name, "b3lyp", kind)
    assert np.allclose(h0, h0.T, atol=1e-14)
    for proper in (True, False):
        r = basis.random_rotation(rng) * (1 if proper else -1)
        perm = rng.permutation(len(numbers))
        moved = guess_hamiltonian(numbers[perm], (pos @ r.T + [0.3, -1.0, 2.0])[perm], basis_name, "b3lyp", kind)
        m = gto.M(atom=[[int(z), tuple(x)] for z, x in zip(numbers, pos)], basis=basis_name, verbose=0)
        d = basis.wigner_d_ao(m, r)
        off = np.cumsum([0] + [sum(2 * s.l + 1 for s in shells) for shells in basis.shell_layout(m)])
        ao = np.concatenate([np.arange(off[i], off[i + 1]) for i in perm])
        expect = (d @ h0 @ d.T)[np.ix_(ao, ao)]
        assert np.abs(moved - expect).max() < 1e-10
    # a physical guess: within ~0.02 Eh (MAE) of the converged Kohn–Sham matrix for minao-fock, ~0.1 Eh for
    # the grid-free core-j (it lacks exchange-correlation), both far closer than the core Hamiltonian
    mol_ = gto.M(atom=[[int(z), tuple(x)] for z, x in zip(numbers, pos)], basis=basis_name, verbose=0)
    mf = dft.RKS(mol_)
    mf.xc = "b3lyp"
    mf.kernel()
    f = mf.get_fock()
    assert np.abs(h0 - f).mean() < bound
    assert np.abs(h0 - f).mean() < 0.2 * np.abs(mf.get_hcore() - f).mean()


@pytest.mark.parametrize("mol, basis_name", [(WATER, "def2-svp"), (ETHANOL, "sto-3g")])
def test_core_j_coulomb_is_that_of_neutral_atomic_densities(mol, basis_name):
    """J of the s-Gaussian fits is close to PySCF's exact J of its atomic-HF guess density, and each fitted
    atom holds exactly Z electrons: with V_nuc, the potential vanishes on a function far from the molecule."""
    from pyscf import gto, scf

    from eqchem.dft.atomic_density import superposed_density_coulomb

    atoms = [[int(z), tuple(x)] for z, x in zip(*mol)]
    m = gto.M(atom=atoms, basis=basis_name, verbose=0)
    mf = scf.RHF(m)
    exact = mf.get_j(m, mf.init_guess_by_atom(m))
    j = superposed_density_coulomb(m, basis_name)
    assert np.abs(j - exact).mean() < 3e-3 and np.abs(j - exact).max() < 3e-2
    # an ion's electrons scale the neutral atoms' density (as the minao guess does)
    n = float(m.nelectron)
    assert np.allclose(superposed_density_coulomb(m, basis_name, n - 1), j * (n - 1) / n)
    # a ghost s function 6 Å away: V_nuc ~ -Z/r there, V_nuc + J of neutral atoms ~ 0
    far = gto.M(atom=atoms + [["ghost-H", (0.0, 0.0, 6.0)]], basis={"default": basis_name, "ghost-H": "sto-3g"},
                verbose=0)
    v = far.intor("int1e_nuc")[-1, -1]
    vj = v + superposed_density_coulomb(far, basis_name)[-1, -1]
    assert v < -0.5 and abs(vj) < 1e-4 * abs(v), (v, vj)


@pytest.fixture(scope="module")
def delta_data(tmp_path_factory):
    d = tmp_path_factory.mktemp("delta")
    generate_water_set(d, samples=12, seed=2)
    return d


def test_delta_training_needs_guesses_then_predicts_guess_plus_correction(delta_data, run_cli, rng):
    d = delta_data
    args = ["train", d / "water.h5", "--out", d / "delta.pt", "--max-epochs", "2", "--batch-size", "4",
            "--split-by", "structure", "--val-fraction", "0.25", "--baseline", "minao-fock"]
    code, out = run_cli(*args)
    assert code != 0 and "eqchem guess" in out and "Traceback" not in out
    code, out = run_cli("guess", d / "water.h5", "--kind", "huckel")
    assert code != 0 and "unknown guess" in out and "Traceback" not in out
    code, out = run_cli("guess", d / "water.h5")
    assert code == 0 and "13 computed" in out
    code, out = run_cli("guess", d / "water.h5")
    assert code == 0 and "0 computed, 13 already present" in out
    code, out = run_cli(*args)
    assert code == 0, out
    m = eqchem.load_model(d / "delta.pt")
    assert m.baseline.name == "minao-fock"
    numbers = np.array([8, 1, 1])
    pos = np.array([[0.0, 0.02, 0.1173], [0.0, 0.74, -0.46], [0.03, -0.77, -0.47]])
    res = eqchem.predict((numbers, pos), model=m)
    # the network's own output (no guess) plus the guess is the prediction
    bare = PredictionPipeline(m, baseline_stage=False).matrices([(numbers, pos)])[0]
    assert np.allclose(res.hamiltonian, bare + guess_hamiltonian(numbers, pos, "sto-3g", "pbe"), atol=1e-10)
    filtering = m.with_settings(correction_overlap_cutoff=0.5)  # projected correction (STO-3G water: a few directions)
    from eqchem.dft.guess import guess_and_overlap
    from eqchem.inference.correction import filter_correction

    g, s = guess_and_overlap(numbers, pos, "sto-3g", "pbe")
    filtered = filtering.predict_matrices([(numbers, pos)])[0]
    assert np.allclose(filtered, g + filter_correction(bare, s, 0.5), atol=1e-10)
    assert not np.allclose(filtered, res.hamiltonian, atol=1e-6)
    assert m.settings.correction_overlap_cutoff == 0.0  # the loaded model is left as it was
    r = -basis.random_rotation(rng)  # improper: rotation and inversion
    perm = np.array([1, 2, 0])
    moved = eqchem.predict((numbers[perm], pos[perm] @ r.T + 1.5), model=m)
    assert np.allclose(moved.orbital_energies, res.orbital_energies, atol=1e-5)
    assert np.allclose(moved.mulliken_charges, res.mulliken_charges[perm], atol=1e-5)
    assert np.allclose(moved.dipole, r @ res.dipole, atol=1e-5)
    # distant pairs left to the guess: O-H (0.96 Å) half-way through the switch, H-H (1.5 Å) beyond it
    switching = m.with_settings(correction_pair_cutoff=1.45)
    switched = switching.predict_matrices([(numbers, pos)])[0]
    moved_switched = switching.predict_matrices([(numbers[perm], pos[perm] @ r.T + 1.5)])[0]
    o, h1, h2 = slice(0, 5), slice(5, 6), slice(6, 7)  # STO-3G water AOs: O 1s 2s 2p, H 1s, H 1s
    assert np.allclose(switched[h1, h2], g[h1, h2], atol=1e-12)  # beyond the cutoff: the guess alone
    assert np.allclose(switched[o, o], res.hamiltonian[o, o], atol=1e-12)  # on-site blocks untouched
    assert not np.allclose(switched[o, h1], res.hamiltonian[o, h1], atol=1e-8)
    assert not np.allclose(switched[o, h1], g[o, h1], atol=1e-8)
    s_moved = guess_and_overlap(numbers[perm], pos[perm] @ r.T + 1.5, "sto-3g", "pbe")[1]
    e1, e2 = solve_generalized(switched, s)[0], solve_generalized(moved_switched, s_moved)[0]
    assert np.allclose(e1, e2, atol=1e-6)  # still equivariant


def test_pair_switch_is_a_smooth_step():
    from eqchem.inference.correction import pair_switch

    d = np.array([0.5, 3.9, 4.0, 4.5, 5.0, 5.1, 9.0])
    w = pair_switch(d, 5.0)
    assert np.allclose(w[[0, 1, 2]], 1.0) and np.allclose(w[[4, 5, 6]], 0.0) and np.isclose(w[3], 0.5)
    assert np.all(np.diff(pair_switch(np.linspace(3.0, 6.0, 301), 5.0)) <= 0)
    assert np.allclose(pair_switch(d, 0.0), 1.0)


def test_fine_tuning_with_the_orbital_energy_loss_starts_from_the_given_model(delta_data, run_cli, tmp_path):
    d = delta_data
    assert run_cli("guess", d / "water.h5")[0] == 0
    base = ["train", d / "water.h5", "--batch-size", "4", "--split-by", "structure", "--val-fraction", "0.25",
            "--baseline", "minao-fock", "--max-epochs", "1"]
    code, out = run_cli(*base, "--out", tmp_path / "stage1.pt")
    assert code == 0, out
    cfg = tmp_path / "ft.yaml"  # no readout refits and a vanishing learning rate: the start is the model
    cfg.write_text("refit_every: 0\nlr: 1.0e-12\nmin_lr: 1.0e-13\nema_decay: 0.0\nmonitor: val_loss\n")
    code, out = run_cli(*base, "--config", cfg, "--out", tmp_path / "ft.pt", "--init", tmp_path / "stage1.pt",
                        "--eig-weight", "1.0")
    assert code == 0, out
    assert "val_eps_mae_uEh" in out and "initialized from" in out
    a, b = eqchem.load_model(tmp_path / "stage1.pt"), eqchem.load_model(tmp_path / "ft.pt")
    mol = [(np.array([8, 1, 1]), np.array([[0.0, 0.0, 0.12], [0.0, 0.76, -0.47], [0.0, -0.76, -0.47]]))]
    assert np.allclose(a.predict_matrices(mol)[0], b.predict_matrices(mol)[0], atol=1e-7)
    code, out = run_cli(*base, "--out", tmp_path / "f64.pt", "--init", tmp_path / "stage1.pt",
                        "--eig-weight", "1.0", "--precision", "64")
    assert code == 0, out  # float64 fine-tuning of a float32 model is fine
    (tmp_path / "wide.yaml").write_text("model:\n  hidden: '8,4'\n")
    code, out = run_cli(*base, "--config", tmp_path / "wide.yaml", "--out", tmp_path / "bad.pt",
                        "--init", tmp_path / "stage1.pt")
    assert code != 0 and "different network" in out and "Traceback" not in out


def test_correction_filter_removes_near_null_overlap_directions_equivariantly(rng):
    from pyscf import gto

    from eqchem.inference.correction import filter_correction

    numbers, pos = np.array(ETHANOL[0]), np.array(ETHANOL[1])
    mol = gto.M(atom=[[int(z), tuple(x)] for z, x in zip(numbers, pos)], basis="def2-svp", verbose=0)
    s = mol.intor_symmetric("int1e_ovlp")
    c = rng.normal(size=s.shape)
    c = c + c.T
    assert np.array_equal(filter_correction(c, s, 0.0), c)
    out = filter_correction(c, s, 0.05)
    w, u = np.linalg.eigh(s)
    small, large = u[:, w < 0.05], u[:, w > 0.05]
    assert small.shape[1] > 0
    assert np.abs(small.T @ out).max() < 1e-10                       # nothing left along near-null directions
    assert np.allclose(large.T @ out @ large, large.T @ c @ large)    # the rest untouched
    r = -basis.random_rotation(rng)
    d = basis.wigner_d_ao(mol, r)
    assert np.abs(filter_correction(d @ c @ d.T, d @ s @ d.T, 0.05) - d @ out @ d.T).max() < 1e-10


def test_guesses_of_several_kinds_live_side_by_side_and_core_j_models_need_no_fock_build(delta_data, run_cli,
                                                                                       monkeypatch):
    from eqchem.data.guess_file import GuessFile, guess_path
    from eqchem.data.reader import H5Dataset

    d = delta_data
    code, out = run_cli("guess", d / "water.h5", "--kind", "core-j")
    assert code == 0 and "13 computed" in out and guess_path(d / "water.h5", "core-j").name == "water.guess-core-j.h5"
    gf = GuessFile(d / "water.h5", "core-j")
    key = next(iter(H5Dataset(d / "water.h5").keys()))
    r = H5Dataset(d / "water.h5")[key]
    assert np.allclose(gf[key], guess_hamiltonian(r.numbers, r.positions, "sto-3g", "pbe", "core-j"), atol=1e-12)
    code, out = run_cli("train", d / "water.h5", "--out", d / "corej.pt", "--max-epochs", "1", "--batch-size", "4",
                        "--split-by", "structure", "--val-fraction", "0.25", "--baseline", "core-j")
    assert code == 0, out
    m = eqchem.load_model(d / "corej.pt")
    import eqchem.dft.frame as frame

    monkeypatch.setattr(frame, "cheap_ks", lambda *a: (_ for _ in ()).throw(AssertionError("a Fock build")))
    numbers, pos = np.array([8, 1, 1]), np.array([[0.0, 0.02, 0.1173], [0.0, 0.74, -0.46], [0.03, -0.77, -0.47]])
    res = eqchem.predict((numbers, pos), model=m, fock_step=False)
    bare = PredictionPipeline(m, fock_step=False, baseline_stage=False).matrices([(numbers, pos)])[0]
    assert np.allclose(res.hamiltonian, bare + guess_hamiltonian(numbers, pos, "sto-3g", "pbe", "core-j"), atol=1e-10)
