"""The core-jx guess: T + V_nuc + the long-range Coulomb of the atoms' electrons + fitted spherical effective
atomic potentials (no grid, no Coulomb three-centre integral).

The fit recovers a potential it was given, the guess is exactly equivariant and, fitted on a few molecules,
far closer to other molecules' converged Kohn–Sham matrices than core-j; `eqchem guess --kind core-jx`
fits on a split's training keys and stores the fit with the guesses, training carries it into the model
file, and predictions add the same guess.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

import eqchem
from eqchem import basis
from eqchem.dft.atomic_potential import EXPONENTS, fit_atomic_potentials, potential_design, superposed_potential
from eqchem.dft.guess import guess_hamiltonian

from .conftest import ETHANOL, WATER, generate_water_set


def _mole(mol, basis_name="sto-3g", shift=(0.0, 0.0, 0.0)):
    from pyscf import gto

    return gto.M(atom=[[int(z), tuple(np.asarray(x) + shift)] for z, x in zip(*mol)], basis=basis_name,
                 unit="Angstrom", verbose=0)


def _distorted(mol, rng, sigma=0.05):
    return mol[0], (np.asarray(mol[1]) + rng.normal(scale=sigma, size=np.shape(mol[1]))).tolist()


def test_the_fit_recovers_a_potential_it_was_given(rng):
    """Residuals made of a known superposition of atomic potentials are fitted to within the fit's tiny
    ridge (µEh on elements of order 1 Eh): the design columns, the contracted one-function-per-atom
    integrals and their normalisation agree."""
    known = {str(z): [list(EXPONENTS), list(rng.normal(size=len(EXPONENTS)))] for z in (1, 6, 8)}
    mols = [_mole(_distorted(m, rng)) for m in (WATER, ETHANOL, WATER, ETHANOL)]
    fit, summary = fit_atomic_potentials((m, superposed_potential(m, known)) for m in mols)
    assert summary["structures"] == 4 and summary["elements"] == [1, 6, 8]
    for m in mols:
        v = superposed_potential(m, known)
        assert np.abs(superposed_potential(m, fit) - v).max() < 1e-5 * np.abs(v).max()
    # the contracted integral is the design's columns times the coefficients
    m = mols[1]
    coef = np.concatenate([known[str(z)][1] for z in (1, 6, 8)])
    assert np.abs(potential_design(m, (1, 6, 8)) @ coef - superposed_potential(m, known)).max() < 1e-10


def test_long_range_coulomb_is_that_of_one_gaussian_charge_per_atom():
    """J_lr from PySCF's Gaussian nuclear model equals the Coulomb matrix of charges Z_A spread as Gaussians
    of exponent ω² (three-centre Coulomb integrals with normalised s functions), and vanishes against V_nuc
    far away: an AO pair far from the molecule feels the atoms as neutral."""
    from pyscf import df

    from eqchem.dft.atomic_density import ghost_mole
    from eqchem.dft.atomic_potential import OMEGA, long_range_coulomb

    m = _mole(ETHANOL)
    a = OMEGA ** 2
    aux = ghost_mole([("H", r) for r in m.atom_coords()], {"H": [[0, [a, 1.0]]]})
    charge = (2 * a / np.pi) ** 0.75 * (np.pi / a) ** 1.5  # ∫ of PySCF's normalised s Gaussian
    expect = df.incore.aux_e2(m, aux, "int3c2e", aosym="s1") @ (m.atom_charges() / charge)
    assert np.abs(long_range_coulomb(m) - expect).max() < 1e-9
    from pyscf import gto

    far = gto.M(atom=[[int(z), tuple(r)] for z, r in zip(*ETHANOL)] + [["ghost-H", (30.0, 0.0, 0.0)]],
                basis={"default": "sto-3g", "ghost-H": "sto-3g"}, unit="Angstrom", verbose=0)
    total = (long_range_coulomb(far) + far.intor_symmetric("int1e_nuc"))[-1, -1]
    assert abs(total) < 1e-8


def test_core_jx_is_equivariant_and_far_closer_than_core_j(rng):
    """Fitted on four distorted waters' B3LYP matrices, the guess of a fifth water is several times closer
    to its converged Kohn–Sham matrix than core-j, and rotating, reflecting, translating or permuting the
    molecule transforms it exactly (s-type potentials)."""
    from pyscf import dft

    def fock(mol):
        mf = dft.RKS(mol)
        mf.xc = "b3lyp"
        mf.conv_tol = 1e-10
        mf.kernel()
        return mf.get_fock()

    from eqchem.dft.atomic_potential import OMEGA, unfitted_part

    train = [_mole(_distorted(WATER, rng, 0.08), "def2-svp") for _ in range(4)]
    fit, _ = fit_atomic_potentials((m, fock(m) - unfitted_part(m)) for m in train)
    params = {"atomic_potentials": fit, "omega": OMEGA}
    numbers, pos = np.array(WATER[0]), np.array(_distorted(WATER, rng, 0.08)[1])
    m = _mole((numbers, pos), "def2-svp")
    f = fock(m)
    jx = guess_hamiltonian(numbers, pos, "def2-svp", "b3lyp", "core-jx", params)
    cj = guess_hamiltonian(numbers, pos, "def2-svp", "b3lyp", "core-j")
    assert np.abs(jx - f).mean() < 0.25 * np.abs(cj - f).mean()
    for proper in (True, False):
        r = basis.random_rotation(rng) * (1 if proper else -1)
        perm = rng.permutation(len(numbers))
        moved = guess_hamiltonian(numbers[perm], (pos @ r.T + [0.3, -1.0, 2.0])[perm], "def2-svp", "b3lyp",
                                  "core-jx", params)
        d = basis.wigner_d_ao(m, r)
        off = basis.mole_ao_offsets(m)
        ao = np.concatenate([np.arange(off[i], off[i + 1]) for i in perm])
        assert np.abs(moved - (d @ jx @ d.T)[np.ix_(ao, ao)]).max() < 1e-10


def test_core_jx_without_a_fit_is_one_clear_error():
    from eqchem.errors import InputError

    with pytest.raises(InputError, match="fitted atomic potentials"):
        guess_hamiltonian(np.array(WATER[0]), np.array(WATER[1]), "sto-3g", "pbe", "core-jx")


@pytest.fixture(scope="module")
def jx_data(tmp_path_factory):
    d = tmp_path_factory.mktemp("corejx")
    generate_water_set(d, samples=12, seed=3)
    return d


def test_guess_fits_on_training_keys_and_training_carries_the_fit_into_the_model(jx_data, run_cli, monkeypatch):
    from eqchem.data.guess_file import GuessFile, guess_path, read_params
    from eqchem.data.reader import H5Dataset

    d = jx_data
    keys = sorted(H5Dataset(d / "water.h5").keys())
    split = {"train": keys[:9], "val": keys[9:11], "test": keys[11:]}
    (d / "split.json").write_text(json.dumps(split))
    code, out = run_cli("guess", d / "water.h5", "--kind", "core-j", "--split-file", d / "split.json")
    assert code != 0 and "core-jx" in out and "Traceback" not in out
    (d / "no_train.json").write_text(json.dumps({"val": keys[9:11]}))  # nothing to fit on: one clear line
    code, out = run_cli("guess", d / "water.h5", "--kind", "core-jx", "--split-file", d / "no_train.json")
    assert code != 0 and "no 'train' keys" in out and "Traceback" not in out
    code, out = run_cli("guess", d / "water.h5", "--kind", "core-jx", "--split-file", d / "split.json")
    assert code == 0, out
    assert "on 9 structures" in out and "13 computed" in out
    gf = GuessFile(d / "water.h5", "core-jx")
    assert gf.params["fit"]["structures"] == 9 and sorted(gf.params["atomic_potentials"]) == ["1", "8"]
    assert gf.params["fit"]["mae_after_uEh"] < 0.5 * gf.params["fit"]["mae_before_uEh"]
    r = H5Dataset(d / "water.h5")[keys[12]]
    assert np.allclose(gf[keys[12]], guess_hamiltonian(r.numbers, r.positions, "sto-3g", "pbe", "core-jx", gf.params),
                       atol=1e-12)
    # structures with an element the fit lacks get no guess (a fit on a subset of the elements)
    from eqchem.data.guess_file import uncovered_keys

    only_h = {"atomic_potentials": {"1": gf.params["atomic_potentials"]["1"]}, "omega": gf.params["omega"]}
    assert uncovered_keys(H5Dataset(d / "water.h5"), gf.params) == []
    assert uncovered_keys(H5Dataset(d / "water.h5"), only_h) == H5Dataset(d / "water.h5").keys()
    # a second run reuses the stored fit (resumable), not a new one
    code, out = run_cli("guess", d / "water.h5", "--kind", "core-jx")
    assert code == 0 and "using the atomic potentials" in out and "0 computed, 13 already present" in out

    code, out = run_cli("train", d / "water.h5", "--out", d / "jx.pt", "--max-epochs", "1", "--batch-size", "4",
                        "--split-file", d / "split.json", "--baseline", "core-jx")
    assert code == 0, out
    m = eqchem.load_model(d / "jx.pt")
    assert m.baseline_params == gf.params
    code, out = run_cli("info", d / "jx.pt")
    assert code == 0 and "effective atomic potentials of H O fitted on 9" in " ".join(out.replace("│", "").split())

    import eqchem.dft.frame as frame

    monkeypatch.setattr(frame, "cheap_ks", lambda *a: (_ for _ in ()).throw(AssertionError("a Fock build")))
    numbers, pos = np.array([8, 1, 1]), np.array([[0.0, 0.02, 0.1173], [0.0, 0.74, -0.46], [0.03, -0.77, -0.47]])
    res = eqchem.predict((numbers, pos), model=m)
    from eqchem.inference.pipeline import PredictionPipeline

    bare = PredictionPipeline(m, baseline_stage=False).matrices([(numbers, pos)])[0]
    expect = bare + guess_hamiltonian(numbers, pos, "sto-3g", "pbe", "core-jx", gf.params)
    assert np.allclose(res.hamiltonian, expect, atol=1e-10)

    # another data file takes the model's fit; guess files with different fits cannot train together
    other = d / "other"
    other.mkdir()
    generate_water_set(other, samples=5, seed=4)
    code, out = run_cli("guess", other / "water.h5", "--kind", "core-jx", "--potentials", d / "jx.pt")
    assert code == 0, out
    assert read_params(guess_path(other / "water.h5", "core-jx")) == gf.params
    third = d / "third"
    third.mkdir()
    generate_water_set(third, samples=5, seed=5)
    code, out = run_cli("guess", third / "water.h5", "--kind", "core-jx")  # fitted on its own structures
    assert code == 0 and "every structure given" in out
    code, out = run_cli("train", d / "water.h5", third / "water.h5", "--out", d / "mixed.pt", "--max-epochs", "1",
                        "--baseline", "core-jx")
    assert code != 0 and "different fitted parameters" in out and "Traceback" not in out
    code, out = run_cli("guess", third / "water.h5", "--kind", "core-jx", "--potentials", d / "jx.pt")
    assert code != 0 and "other fitted parameters" in out and "Traceback" not in out
