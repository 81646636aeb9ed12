"""AO conventions: PySCF <-> e3nn change of basis and Wigner-D matrices of whole AO bases."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from e3nn import o3
from pyscf import gto

from eqchem import basis
from eqchem.dft.runner import DFTSettings, run_dft

from .conftest import ETHANOL, WATER, make_structure


@pytest.mark.parametrize("l", range(0, 5))
def test_change_of_basis_is_orthogonal_and_maps_harmonics(l, rng):
    m = basis.change_of_basis(l)
    assert np.allclose(m @ m.T, np.eye(2 * l + 1), atol=1e-12)
    # PySCF AO values on a sphere == M_l @ e3nn harmonics (up to one radial constant)
    pts = rng.normal(size=(50, 3))
    pts /= np.linalg.norm(pts, axis=1, keepdims=True)
    mol = gto.M(atom="He 0 0 0", basis={"He": [[l, [1.0, 1.0]]]}, unit="Bohr", verbose=0)
    ao = mol.eval_gto("GTOval_sph", pts)
    y = o3.spherical_harmonics(l, torch.from_numpy(pts), True, normalization="integral").numpy()
    pred = y @ m.T
    scale = np.sum(ao * pred) / np.sum(pred * pred)
    assert np.allclose(ao, scale * pred, atol=1e-10 * np.abs(ao).max())


def test_p_shell_needs_no_permutation_and_d_is_not_a_permutation():
    assert np.allclose(basis.change_of_basis(1), np.eye(3), atol=1e-12)
    d = basis.change_of_basis(2)
    assert np.sum(np.abs(d) > 1e-6) > 5  # mixes z² and x²−y²: not a signed permutation


@pytest.mark.parametrize("l", range(0, 5))
def test_wigner_d_pyscf_rotates_ao_values(l, rng):
    """φ(R r) = D_pyscf(R) φ(r) for every l, including improper rotations (parity (-1)^l)."""
    mol = gto.M(atom="He 0 0 0", basis={"He": [[l, [1.0, 1.0]]]}, unit="Bohr", verbose=0)
    pts = rng.normal(size=(30, 3))
    for improper in (False, True):
        r = basis.random_rotation(rng, improper=improper)
        d = basis.wigner_d_pyscf(l, r)
        lhs = mol.eval_gto("GTOval_sph", pts @ r.T)
        rhs = mol.eval_gto("GTOval_sph", pts) @ d.T
        assert np.allclose(lhs, rhs, atol=1e-10)


@pytest.mark.parametrize("l", range(0, 5))
def test_wigner_d_pyscf_is_e3nns_through_the_change_of_basis(l, rng):
    """D_pyscf(R) = M_l D_e3nn(R) M_lᵀ: PySCF's rotation (solved on PySCF's harmonics) and e3nn's agree."""
    m = basis.change_of_basis(l)
    for improper in (False, True):
        r = basis.random_rotation(rng, improper=improper)
        assert np.allclose(basis.wigner_d_pyscf(l, r), m @ basis.wigner_d_e3nn(l, r) @ m.T, atol=1e-10)


@pytest.mark.parametrize("name", ["def2-svp", "def2-tzvp", "cc-pvdz", "6-31g**", "sto-3g", "cc-pvtz"])
def test_wigner_d_ao_overlap_any_basis(name, rng):
    """S(R x) = D S(x) Dᵀ exactly (analytic integrals) for every basis, f and g shells included."""
    numbers, pos = ETHANOL if name != "cc-pvtz" else WATER
    atom = [[z, p] for z, p in zip(numbers, pos)]
    mol = gto.M(atom=atom, basis=name, verbose=0)
    for improper in (False, True):
        r = basis.random_rotation(rng, improper=improper)
        mol_r = gto.M(atom=[[z, np.asarray(p) @ r.T] for z, p in atom], basis=name, verbose=0)
        d = basis.wigner_d_ao(mol, r)
        for intor in ("int1e_ovlp", "int1e_kin", "int1e_nuc"):
            a, b = mol.intor(intor), mol_r.intor(intor)
            assert np.abs(b - d @ a @ d.T).max() < 1e-9, intor


def test_shell_layout_and_blocks():
    mol = gto.M(atom=[[z, p] for z, p in zip(*WATER)], basis="def2-svp", verbose=0)
    shells = basis.shell_layout(mol)
    assert [s.l for s in shells[0]] == [0, 0, 0, 1, 1, 2]
    assert [s.l for s in shells[1]] == [0, 0, 1]
    assert shells[-1][-1].stop == mol.nao == 24
    m = np.arange(mol.nao ** 2, dtype=float).reshape(mol.nao, mol.nao)
    assert basis.atom_pair_block(m, mol, 0, 1).shape == (14, 5)
    layout = basis.BasisLayout.from_basis("def2-svp", [1, 8])
    assert layout.slot_ls == (0, 0, 0, 1, 1, 2) and layout.padded_dim == 14
    assert list(layout.element_index(1)) == [0, 1, 3, 4, 5]
    assert basis.BasisLayout.from_dict(layout.to_dict()) == layout


@pytest.mark.parametrize("mol_def,basis_name", [(WATER, "def2-svp"), (ETHANOL, "def2-svp"), (WATER, "cc-pvtz")])
def test_pyscf_hamiltonian_rotates_with_wigner_d(mol_def, basis_name, rng):
    """The foundation: H(R·x) = D_ao(R) H(x) D_ao(R)ᵀ for B3LYP KS matrices (grid error ~1e-6 Eh)."""
    settings = DFTSettings(basis=basis_name, conv_tol=1e-11)
    s0 = make_structure(mol_def)
    h0 = run_dft(s0, settings)["hamiltonian"]
    mol = gto.M(atom=[[z, p] for z, p in zip(*mol_def)], basis=basis_name, verbose=0)
    for improper in (False, True):
        r = basis.random_rotation(rng, improper=improper)
        s1 = make_structure((mol_def[0], np.asarray(mol_def[1]) @ r.T))
        h1 = run_dft(s1, settings)["hamiltonian"]
        d = basis.wigner_d_ao(mol, r)
        assert np.abs(h1 - d @ h0 @ d.T).max() < 1e-5


def test_blocks_decompose_into_irreps_that_rotate_with_e3nn(rng):
    """Each (l1, l2) block in e3nn order = Σ_L CG·x_L, and x_L rotates with e3nn's D^L."""
    settings = DFTSettings(conv_tol=1e-11)
    s0 = make_structure(WATER)
    r = basis.random_rotation(rng)
    h0 = run_dft(s0, settings)["hamiltonian"]
    h1 = run_dft(make_structure((WATER[0], np.asarray(WATER[1]) @ r.T)), settings)["hamiltonian"]
    mol = gto.M(atom=[[z, p] for z, p in zip(*WATER)], basis="def2-svp", verbose=0)
    q = basis.pyscf_to_e3nn(mol)
    e0, e1 = q @ h0 @ q.T, q @ h1 @ q.T
    shells = basis.shell_layout(mol)
    a, b = shells[0][4], shells[1][2]  # O p shell x H p shell -> L = 0, 1, 2
    a2, b2 = shells[0][5], shells[0][3]  # O d x O p -> L = 1, 2, 3
    for sa, sb in ((a, b), (a2, b2)):
        l1, l2 = sa.l, sb.l
        for big_l in range(abs(l1 - l2), l1 + l2 + 1):
            cg = o3.wigner_3j(l1, l2, big_l).numpy()  # (2l1+1, 2l2+1, 2L+1)
            x0 = np.einsum("ijk,ij->k", cg, e0[sa.slice, sb.slice])
            x1 = np.einsum("ijk,ij->k", cg, e1[sa.slice, sb.slice])
            dl = o3.Irrep(big_l, (-1) ** (l1 + l2)).D_from_matrix(torch.from_numpy(r)).numpy()
            assert np.abs(x1 - dl @ x0).max() < 1e-5


def test_ao_shells_follow_pyscfs_ao_order():
    """Each AO's shell l and in-atom shell index match PySCF's own AO list (def2-SVP, S and Cl with d shells)."""
    from eqchem.data.reader import ao_shells

    mol = gto.M(atom="S 0 0 0; Cl 0 0 2.0; H 0 1.3 -0.3", basis="def2-svp")
    numbers = np.array([16, 17, 1])
    ls, index = ao_shells(numbers, {int(z): basis.element_shells("def2-svp", int(z)) for z in numbers})
    expected_l, expected_k = [], []
    for i in range(mol.natm):
        shells = [b for b in range(mol.nbas) if mol.bas_atom(b) == i]
        for k, b in enumerate(shells):
            l = mol.bas_angular(b)
            expected_l += [l] * ((2 * l + 1) * mol.bas_nctr(b))
            expected_k += [k] * ((2 * l + 1) * mol.bas_nctr(b))
    assert len(ls) == mol.nao == len(expected_l)
    assert ls.tolist() == expected_l and index.tolist() == expected_k
