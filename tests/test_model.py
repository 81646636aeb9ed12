"""The Hamiltonian network as physics: exact O(3)/translation/permutation equivariance, symmetry, shapes."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from pyscf import gto

from eqchem import basis
from eqchem.basis import BasisLayout
from eqchem.model.blocks import AOConverter, BlockAssembler
from eqchem.model.config import ModelConfig
from eqchem.model.hamiltonian import HamiltonianModel, build_model, default_dtype

TINY = ModelConfig(hidden="8,4,2", pair_channels="4,2,2", num_basis=4, radial_hidden=8, num_layers=2)


def model_matrix(net: HamiltonianModel, numbers: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """Full (nao, nao) PySCF-order matrix predicted by ``net`` (float64)."""
    conv = AOConverter(net.layout)
    with torch.no_grad():
        out = net(torch.from_numpy(numbers), torch.from_numpy(pos))
    return conv.to_matrix(out["diag"].numpy(), out["offd"].numpy(), numbers, out["pair_index"].numpy())


def random_molecule(rng, elements, n):
    numbers = rng.choice(elements, size=n)
    while True:
        pos = rng.uniform(-2.0, 2.0, size=(n, 3))
        d = np.linalg.norm(pos[:, None] - pos[None], axis=-1) + 10 * np.eye(n)
        if d.min() > 0.8:
            return numbers.astype(np.int64), pos


def make_net(basis_name, elements, seed=0):
    torch.manual_seed(seed)
    net = build_model(BasisLayout.from_basis(basis_name, elements), TINY, dtype=torch.float64).eval()
    # random output scales, one per irrep copy (shared by its 2L+1 components, as training sets them)
    irreps = net.assembler.irreps_out
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for buf in (net.diag_scale, net.offd_scale):
            per_copy = torch.rand(irreps.num_irreps, generator=gen, dtype=buf.dtype) + 0.5
            buf.copy_(torch.repeat_interleave(per_copy, torch.tensor([ir.dim for mul, ir in irreps for _ in range(mul)])))
    return net


@pytest.mark.parametrize("basis_name,elements,n", [("def2-svp", [1, 6, 7, 8, 9], 7), ("cc-pvtz", [1, 6, 8], 4)])
def test_equivariance_rotation_reflection_translation(basis_name, elements, n, rng):
    """H(R·x + t) = D_ao(R) H(x) D_ao(R)ᵀ for proper and improper R, to 1e-10 relative, in float64."""
    net = make_net(basis_name, elements)
    numbers, pos = random_molecule(rng, elements, n)
    mol = gto.M(atom=[[int(z), p] for z, p in zip(numbers, pos)], basis=basis_name, unit="Angstrom",
                spin=int(numbers.sum()) % 2, verbose=0)
    h = model_matrix(net, numbers, pos)
    assert h.shape == (mol.nao, mol.nao)
    scale = np.abs(h).max()
    for improper in (False, True):
        r = basis.random_rotation(rng, improper=improper)
        t = rng.normal(size=3) * 3
        h_rot = model_matrix(net, numbers, pos @ r.T + t)
        d = basis.wigner_d_ao(mol, r)
        assert np.abs(h_rot - d @ h @ d.T).max() / scale < 1e-10


def test_permutation_equivariance(rng):
    net = make_net("def2-svp", [1, 6, 7, 8, 9])
    numbers, pos = random_molecule(rng, [1, 6, 7, 8, 9], 6)
    perm = rng.permutation(len(numbers))
    h = model_matrix(net, numbers, pos)
    h_p = model_matrix(net, numbers[perm], pos[perm])
    conv = AOConverter(net.layout)
    off = conv.offsets(numbers)
    ao_perm = np.concatenate([np.arange(off[i], off[i + 1]) for i in perm])
    assert np.abs(h_p - h[np.ix_(ao_perm, ao_perm)]).max() / np.abs(h).max() < 1e-10


def test_symmetric_and_shapes_for_a_mixed_batch(rng):
    elements = [1, 6, 7, 8, 9]
    net = make_net("def2-svp", elements)
    mols = [random_molecule(rng, elements, n) for n in (1, 3, 5)] + [(np.array([9, 9]), np.array([[0, 0, 0], [0, 0, 1.4]]))]
    numbers = np.concatenate([m[0] for m in mols])
    pos = np.concatenate([m[1] + 50.0 * k for k, m in enumerate(mols)])
    batch = np.concatenate([np.full(len(m[0]), k) for k, m in enumerate(mols)])
    with torch.no_grad():
        out = net(torch.from_numpy(numbers), torch.from_numpy(pos), torch.from_numpy(batch))
    p = net.layout.padded_dim
    assert p == 14 and out["diag"].shape == (len(numbers), p, p)
    i, j = out["pair_index"]
    assert (torch.from_numpy(batch)[i] == torch.from_numpy(batch)[j]).all()  # no pairs across molecules
    assert out["offd"].shape == (len(i), p, p)
    assert torch.allclose(out["diag"], out["diag"].transpose(1, 2))
    # batched prediction equals one molecule at a time
    conv = AOConverter(net.layout)
    a0 = 0
    for z, r in mols:
        h_single = model_matrix(net, z, r)
        nao = sum(conv.q[int(x)].shape[1] for x in z)
        assert h_single.shape == (nao, nao) and np.allclose(h_single, h_single.T, atol=1e-12)
        n = len(z)
        sel = (i >= a0) & (i < a0 + n)
        h_batch = conv.to_matrix(out["diag"][a0:a0 + n].numpy(), out["offd"][sel].numpy(), z,
                                 out["pair_index"][:, sel].numpy() - a0)
        assert np.allclose(h_batch, h_single, atol=1e-12)
        a0 += n


def test_block_assembler_is_orthogonal_and_round_trips():
    layout = BasisLayout.from_basis("def2-svp", [1, 8])
    with default_dtype(torch.float64):
        asm = BlockAssembler(layout)
    w = asm.w
    assert torch.allclose(w.T @ w, torch.eye(w.shape[1], dtype=w.dtype), atol=1e-12)
    blk = torch.randn(3, 14, 14, dtype=torch.float64)
    assert torch.allclose(asm(asm.decompose(blk)), blk, atol=1e-12)
    assert asm.irreps_out.dim == 14 * 14


def test_converter_round_trip_and_unknown_element():
    from eqchem.errors import ModelError

    layout = BasisLayout.from_basis("def2-svp", [1, 8])
    conv = AOConverter(layout)
    numbers = np.array([8, 1, 1])
    m = np.random.default_rng(1).normal(size=(24, 24))
    pairs = np.array([[0, 0, 1, 1, 2, 2], [1, 2, 0, 2, 0, 1]])
    diag, offd, dmask, omask = conv.to_blocks(m, numbers, pairs)
    assert np.allclose(conv.to_matrix(diag, offd, numbers, pairs), m)
    assert dmask[1].sum() == 25 and omask[0].sum() == 14 * 5
    assert conv.missing_elements([8, 1, 1]) == [] and conv.missing_elements([16, 6, 1, 6]) == [6, 16]
    with pytest.raises(ModelError, match="not covered"):
        conv.check_elements([6, 1])


def test_readout_ridge_fit_recovers_a_linear_map_with_masked_outputs():
    """The exact readout fit (normal equations summed per mask pattern): masked outputs carry garbage
    targets, yet the solved weights are the map that made the valid ones; the Gram sums equal the
    per-output definition Σ_s w_sv f_s f_sᵀ."""
    from e3nn import o3

    from eqchem.model.layers import TypedLinear

    torch.manual_seed(0)
    with default_dtype(torch.float64):
        truth = TypedLinear(o3.Irreps("6x0e + 4x1o + 3x2e"), o3.Irreps("3x0e + 2x1o + 2x2e"))
        fit = TypedLinear(truth.irreps_in, truth.irreps_out)
    x = torch.randn(300, truth.irreps_in.dim, dtype=torch.float64)
    with torch.no_grad():
        y = truth(x)
    mask = torch.ones_like(y, dtype=torch.bool)
    kinds = torch.randint(0, 3, (len(x),))           # three kinds of sample, each missing other outputs
    for kind, out in ((1, slice(0, 2)), (2, slice(3, 6)), (2, slice(14, 19))):  # some copies of a type
        mask[kinds == kind, out] = False
    y_seen = torch.where(mask, y, torch.full_like(y, 1e3))
    acc = fit.normal_equations()
    for part in torch.arange(len(x)).chunk(4):
        fit.accumulate(acc, x[part], y_seen[part], mask[part])
    for t, (ir, u, v, has_bias) in enumerate(fit.types):
        f = fit.type_features(x, t)
        f = torch.cat([f, torch.ones(len(x), 1, ir.dim, dtype=f.dtype) * has_bias], dim=1)
        w = mask[:, getattr(fit, f"out_{t}")].reshape(-1, v, ir.dim)[..., 0].double()
        torch.testing.assert_close(acc[t][0], torch.einsum("sv,sam,sbm->vab", w, f, f))
    fit.solve(acc, ridge=1e-12)
    for name, p in truth.named_parameters():
        torch.testing.assert_close(dict(fit.named_parameters())[name], p, atol=1e-8, rtol=1e-8)


def test_typed_linear_applies_a_matrix_to_its_design_features_with_the_bias_row():
    """apply_to_design (what the leverages use) equals the matrix times design_features, bias row included (1 for
    the scalar type with a bias, 0 for the others), for every irrep type."""
    from e3nn import o3

    from eqchem.model.layers import TypedLinear

    torch.manual_seed(0)
    lin = TypedLinear(o3.Irreps("3x0e + 2x1o + 0e + 2x0o"), o3.Irreps("2x0e + 1x1o + 0o"))
    x = torch.randn(5, lin.irreps_in.dim)
    assert {t[3] for t in lin.types} == {True, False}
    for t, (ir, u, v, has_bias) in enumerate(lin.types):
        m = torch.randn(4, u + 1, dtype=torch.float64)
        explicit = torch.einsum("ku,sum->smk", m, lin.design_features(x, t))
        assert torch.allclose(lin.apply_to_design(m, x, t), explicit, atol=1e-5)
