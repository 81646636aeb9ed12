"""The damped Fock step after the network (``ModelConfig.fock_mixing``): a physical operation, equivariant,
with the converged Kohn–Sham matrix as its fixed point, and wired into prediction, evaluation and the CLI."""
from __future__ import annotations

import numpy as np
import pytest

import eqchem
from eqchem import basis
from eqchem.dft.fock_step import fock_of_density, fock_step
from eqchem.dft.frame import canonical_mole
from eqchem.dft.guess import guess_and_overlap
from eqchem.errors import InputError
from eqchem.orbitals import solve_generalized

from .conftest import ETHANOL, WATER


@pytest.fixture(scope="module")
def water_scf():
    """Converged B3LYP/def2-SVP water: (numbers, positions Å, F (nao, nao) Eh, S)."""
    from pyscf import dft, gto

    numbers, pos = np.array(WATER[0]), np.array(WATER[1])
    mol = gto.M(atom=[[int(z), tuple(x)] for z, x in zip(numbers, pos)], basis="def2-svp", verbose=0)
    mf = dft.RKS(mol)
    mf.xc = "b3lyp"
    mf.grids.level = 3
    mf.conv_tol = 1e-11
    mf.kernel()
    return numbers, pos, mf.get_fock(), mf.get_ovlp()


def test_the_converged_matrix_is_a_fixed_point(water_scf):
    numbers, pos, f, s = water_scf
    # the cheap build (grid 1, density fitting) reproduces F[P_scf] to a few µEh
    again = fock_step(numbers, pos, f, s, 10, "def2-svp", "b3lyp", mixing=1.0)
    assert np.abs(again - f).mean() < 2e-5 and np.abs(again - f).max() < 2e-3
    # a perturbed matrix is not: the step moves it (its density changed)
    noisy = f + 0.01 * np.eye(len(f))[::-1]
    noisy = 0.5 * (noisy + noisy.T)
    stepped = fock_step(numbers, pos, noisy, s, 10, "def2-svp", "b3lyp", mixing=0.5)
    assert np.abs(stepped - noisy).max() > 1e-3
    assert np.allclose(fock_step(numbers, pos, noisy, s, 10, "def2-svp", "b3lyp", mixing=0.0), noisy)
    with pytest.raises(InputError, match="9 electrons cannot have spin"):
        fock_step(numbers, pos, f, s, 9, "def2-svp", "b3lyp", mixing=0.5)


def test_fock_build_is_equivariant(rng):
    from pyscf import gto

    numbers, pos = np.array(ETHANOL[0]), np.array(ETHANOL[1])
    g, s = guess_and_overlap(numbers, pos, "sto-3g", "b3lyp")
    _, c = solve_generalized(g, s)
    p = 2 * c[:, :13] @ c[:, :13].T  # 26 electrons
    f0 = fock_of_density(numbers, pos, p, "sto-3g", "b3lyp")
    # one frame shared by the guess and the step (the model's path: grid and DF tensors built once)
    frame = canonical_mole(numbers, pos, "sto-3g")
    assert np.allclose(guess_and_overlap(numbers, pos, "sto-3g", "b3lyp", frame=frame)[0], g, atol=1e-12)
    assert np.abs(fock_of_density(numbers, pos, p, "sto-3g", "b3lyp", frame) - f0).max() < 1e-12
    mol = gto.M(atom=[[int(z), tuple(x)] for z, x in zip(numbers, pos)], basis="sto-3g", verbose=0)
    off = np.cumsum([0] + [sum(2 * sh.l + 1 for sh in shells) for shells in basis.shell_layout(mol)])
    for proper in (True, False):
        r = basis.random_rotation(rng) * (1 if proper else -1)
        perm = rng.permutation(len(numbers))
        d = basis.wigner_d_ao(mol, r)
        ao = np.concatenate([np.arange(off[i], off[i + 1]) for i in perm])
        moved_p = (d @ p @ d.T)[np.ix_(ao, ao)]
        moved = fock_of_density(numbers[perm], (pos @ r.T + [1.0, -0.5, 0.2])[perm], moved_p, "sto-3g", "b3lyp")
        assert np.abs(moved - (d @ f0 @ d.T)[np.ix_(ao, ao)]).max() < 1e-9


def test_model_applies_its_fock_step(run_cli, tmp_path, rng):
    m = eqchem.load_model("accurate")  # the Δ-on-minao model: a guess Fock build and a Fock step
    numbers, pos = np.array(WATER[0]), np.array(WATER[1])
    assert m.fock_mixing == 0.4 and m.fock_builds() == 2 and m.fock_builds(fock_step=False) == 1
    no_step = m.with_settings(fock_mixing=0.0)
    assert no_step.fock_builds() == 1 and m.fock_mixing == 0.4  # a copy: the loaded model is unchanged
    bare = no_step.predict_matrices([(numbers, pos)])[0]
    stepped = m.predict_matrices([(numbers, pos)])[0]
    s = guess_and_overlap(numbers, pos, m.basis, m.xc, "none")[1]
    assert np.allclose(stepped, fock_step(numbers, pos, bare, s, 10, m.basis, m.xc, 0.4), atol=1e-10)
    assert np.allclose(m.predict_matrices([(numbers, pos)], fock_step=False)[0], bare, atol=1e-12)
    # the electron count follows the charge: the hydronium cation (10 electrons) vs neutral OH3 (odd)
    h3o_z = np.array([8, 1, 1, 1])
    h3o_r = np.array([[0.0, 0.0, 0.1], [0.0, 0.94, -0.25], [0.81, -0.47, -0.25], [-0.81, -0.47, -0.25]])
    cation = m.predict_matrices([(h3o_z, h3o_r)], charges=[1])[0]
    assert np.allclose(cation, cation.T)
    with pytest.raises(InputError):
        m.predict_matrices([(h3o_z, h3o_r)])
    # still equivariant end to end
    res = eqchem.predict((numbers, pos), model=m)
    r = -basis.random_rotation(rng)
    perm = np.array([2, 0, 1])
    moved = eqchem.predict((numbers[perm], pos[perm] @ r.T - 0.7), model=m)
    assert np.allclose(moved.orbital_energies, res.orbital_energies, atol=1e-6)
    assert np.allclose(moved.dipole, r @ res.dipole, atol=1e-5)


def test_cli_can_skip_the_fock_step(run_cli, tmp_path):
    import json

    xyz = tmp_path / "water.xyz"
    xyz.write_text("3\nwater\n" + "".join(f"{s} {x:.4f} {y:.4f} {z:.4f}\n" for s, (x, y, z) in
                                           zip("OHH", WATER[1])))
    for mode in ("accurate", "fast"):
        outs = {}
        for flag in ("--fock-step", "--no-fock-step"):
            code, out = run_cli("predict", xyz, "--mode", mode, "--out", tmp_path / f"{mode}{flag}.json", flag)
            assert code == 0, out
            outs[flag] = json.loads((tmp_path / f"{mode}{flag}.json").read_text())[0]
        if eqchem.load_model(mode).fock_mixing > 0:
            assert outs["--fock-step"]["gap_ev"] != outs["--no-fock-step"]["gap_ev"]
        else:  # a model without a Fock step: the flag changes nothing
            assert outs["--fock-step"]["gap_ev"] == outs["--no-fock-step"]["gap_ev"]
    assert eqchem.load_model("accurate").fock_mixing > 0  # so the first branch ran
