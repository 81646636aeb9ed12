"""``target: density_matrix``: a tiny model trained on density matrices predicts a physical density for a
structure it was not trained on, and its prediction becomes the Kohn–Sham matrix of that density."""
from __future__ import annotations

import numpy as np

import eqchem
from eqchem.data.reader import H5Dataset

from .conftest import WATER_LEVEL

# Bounds, about 2-2.5x what this model errs on its held-out water, and what it was measured against (the run is
# deterministic: the same numbers twice):
#                              this model   untrained*   a training           Hamiltonian
#                                                        structure's P (2)    as the target
#   |tr(P S) - N| (e, of 10)     0.042        1.05         0.026-0.083           35
#   mean |P - P_ref|             0.0111       0.189        0.030-0.038           1.08
#   max |P S P - 2 P|            0.084        0.94         0.083-0.119           451
#   mean |F[P] - H_ref| (Eh)     0.0067       0.139        0.0055-0.0104         8.8
#   gap error of F[P] (Eh)       0.0070       0.128        0.0088-0.0216         17
# * no readout refit, learning rate 1e-12: the output statistics alone. Only the P bound also rules out copying a
#   nearby structure's density; the others rule out an untrained or mis-trained model.
TRACE_TOL = 0.1          # electrons
P_MAE_TOL = 0.025        # mean |P - P_ref| over the (7, 7) elements
IDEMPOTENCY_TOL = 0.2    # max |P S P - 2 P|: a closed-shell density's occupations are 2 or 0
H_MAE_TOL = 0.015        # Eh, the Kohn–Sham matrix built from P against the SCF's
GAP_TOL = 0.015          # Eh


def test_a_density_matrix_model_predicts_a_physical_density(tmp_path, run_cli):
    from pyscf import dft

    (tmp_path / "water.xyz").write_text("3\nname=water\nO 0.0 0.0 0.1173\nH 0.0 0.7572 -0.4692\n"
                                        "H 0.0 -0.7572 -0.4692\n")
    data = tmp_path / "water.h5"
    code, out = run_cli("generate", tmp_path / "water.xyz", "--out", data, "--jitter", "0.05", "--samples", "5",
                        "--seed", "4", "--threads", "1", *WATER_LEVEL)  # PBE/STO-3G: 6 structures
    assert code == 0, out
    (tmp_path / "tiny.yaml").write_text("model: {hidden: '16,8,4', pair_channels: '4,2,2'}\n")
    code, out = run_cli("train", data, "--out", tmp_path / "dm.pt", "--target", "density_matrix", "--config",
                        tmp_path / "tiny.yaml", "--precision", "64", "--max-epochs", "2", "--batch-size", "5",
                        "--split-by", "structure", "--val-fraction", "0.2")
    assert code == 0, out
    m = eqchem.load_model(tmp_path / "dm.pt", quick=True)
    assert m.target == "density_matrix" and len(m.metadata["val_keys"]) == 1
    rec = H5Dataset(data)[m.metadata["val_keys"][0]]  # the structure the model was not trained on
    p_ref, s, h_ref = rec.ensure_orbitals().density_matrix, rec.overlap, rec.hamiltonian
    n_electrons = int(rec.numbers.sum())

    p = m.predict_matrices([(rec.numbers, rec.positions)])[0]  # the network's density matrix
    assert p.shape == p_ref.shape == (7, 7) and np.allclose(p, p.T)
    trace_error = abs(np.trace(p @ s) - n_electrons)
    p_mae = np.abs(p - p_ref).mean()
    idempotency = np.abs(p @ s @ p - 2 * p).max()

    res = eqchem.predict((rec.numbers, rec.positions), model=m)
    # the result's matrix is the Kohn–Sham matrix of the predicted density at the data's level of theory
    mf = dft.RKS(res.mole)
    mf.xc, mf.grids.level = "pbe", int(m.metadata["grids_level"])
    assert np.allclose(res.hamiltonian, mf.get_fock(dm=p), atol=1e-8)
    h_mae = np.abs(res.hamiltonian - h_ref).mean()
    e_ref = mf.eig(h_ref, s)[0]
    gap_error = abs(res.gap - (e_ref[5] - e_ref[4]))
    assert np.all(np.isfinite(res.orbital_energies)) and res.nocc == 5 and res.homo < res.lumo

    measured = dict(trace_error=trace_error, p_mae=p_mae, idempotency=idempotency, h_mae=h_mae, gap_error=gap_error)
    assert trace_error < TRACE_TOL and p_mae < P_MAE_TOL and idempotency < IDEMPOTENCY_TOL, measured
    assert h_mae < H_MAE_TOL and gap_error < GAP_TOL, measured
