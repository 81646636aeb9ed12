"""The orbital-energy loss sees exactly the spectrum that prediction builds, and its gradient flows."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from eqchem.basis import BasisLayout
from eqchem.data.reader import Record
from eqchem.inference.correction import filter_correction
from eqchem.model.blocks import AOConverter
from eqchem.model.graph import local_pairs
from eqchem.orbitals import solve_generalized
from eqchem.training.data import SpectralSettings, collate, make_sample
from eqchem.training.spectral import orbital_energy_errors

from .conftest import ETHANOL, WATER


def _record(mol, basis: str, rng) -> tuple[Record, np.ndarray]:
    """A Record with a real overlap and a (symmetric, made-up) reference H, plus a made-up guess."""
    from pyscf import gto

    numbers, pos = np.asarray(mol[0]), np.asarray(mol[1], dtype=float)
    m = gto.M(atom=[[int(z), tuple(r)] for z, r in zip(numbers, pos)], basis=basis, unit="Angstrom", verbose=0)
    s = m.intor_symmetric("int1e_ovlp")
    h = m.intor_symmetric("int1e_kin") + m.intor_symmetric("int1e_nuc")
    g = h + 0.05 * _sym(rng.normal(size=h.shape))
    return Record("m", numbers, pos, h, s, attrs={}), g


def _sym(a):
    return 0.5 * (a + a.T)


@pytest.mark.parametrize("mol, basis, cutoff", [(WATER, "def2-svp", 0.05), (ETHANOL, "sto-3g", 0.0)])
def test_loss_spectrum_equals_the_predicted_matrix_spectrum(mol, basis, cutoff, rng):
    rec, guess = _record(mol, basis, rng)
    layout = BasisLayout.from_basis(basis, rec.numbers)
    conv = AOConverter(layout)
    spec = SpectralSettings(n_virtual=2, overlap_cutoff=cutoff)
    sample = make_sample(rec, conv, 20.0, "hamiltonian", guess, spec)
    batch = collate([sample], torch.float64)
    np.testing.assert_allclose(sample.spectral.eps, solve_generalized(rec.hamiltonian, rec.overlap)[0][:rec.nocc + 2],
                               atol=1e-10)  # the reference energies are the metrics' reference energies
    if cutoff == 0:  # reference blocks (the exact correction) reproduce them
        exact = {"diag": batch["diag"], "offd": batch["offd"], "pair_index": batch["pair_index"]}
        exact_err = orbital_energy_errors(exact, batch)
        assert exact_err["eps"].abs().max() < 1e-10 and exact_err["gap"].abs().max() < 1e-10
    # random blocks: the loss's energies are those of guess + filtered correction, as predict builds it
    pairs = local_pairs(rec.positions, 20.0)
    mask_d, mask_o = batch["diag_mask"], batch["offd_mask"]
    diag = torch.as_tensor(rng.normal(size=mask_d.shape) * 0.01) * mask_d
    offd = torch.as_tensor(rng.normal(size=mask_o.shape) * 0.01) * mask_o
    diag = 0.5 * (diag + diag.transpose(-1, -2))
    rev = [int(np.nonzero((pairs[0] == j) & (pairs[1] == i))[0][0]) for i, j in pairs.T]
    offd = 0.5 * (offd + offd[rev].transpose(-1, -2))
    corr = conv.to_matrix(diag.numpy(), offd.numpy(), rec.numbers, pairs)
    h_pred = guess + filter_correction(corr, rec.overlap, cutoff)
    want = solve_generalized(h_pred, rec.overlap)[0][:rec.nocc + 2]  # as the metrics solve it
    diag.requires_grad_(True)
    err = orbital_energy_errors({"diag": diag, "offd": offd, "pair_index": batch["pair_index"]}, batch)
    np.testing.assert_allclose(err["eps"].detach().numpy() + sample.spectral.eps, want, atol=1e-10)
    n = rec.nocc
    ref_gap = sample.spectral.eps[n] - sample.spectral.eps[n - 1]
    np.testing.assert_allclose(float(err["gap"][0]), (want[n] - want[n - 1]) - ref_gap, atol=1e-10)
    (err["eps"].abs().sum() + err["gap"].abs().sum()).backward()
    assert diag.grad is not None and diag.grad.abs().sum() > 0
