"""The shipped models against PySCF: predictions of a few committed example molecules stay within error bounds
measured from the models themselves.

The references (datasets/examples/reference_values.json and .npz) come from datasets/examples/reference.py:
PySCF RKS B3LYP/def2-SVP, grid level 3, conv_tol 1e-10 (the shipped models' data settings, read from their
metadata), run by eqchem's own DFT runner. Rerun that script, and re-measure the bounds below, whenever a model
is re-shipped or the molecules change.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from eqchem.units import HARTREE_EV

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "datasets" / "examples"
REFERENCE = EXAMPLES / "reference_values.json"


# Per model and molecule, bounds on: the mean |H_pred - H_ref| over all (nao, nao) elements (µEh), the largest
# |H_pred - H_ref| element (mEh), the HOMO-LUMO gap error (mEh) and the length of the dipole error vector (Debye).
# H bounds are 2x what the shipped model errs, gap and dipole bounds about 2-2.5x (1 mEh at least for the gap);
# measured with PySCF 2.14 (after "#"; predictions are deterministic). A broken library exceeds them on at least
# one molecule (measured by breaking it on purpose, the fast column with the QM9-only fast model of commit 5cc3757;
# mean |dH| in µEh for water / ethanol / glycine):
#   pair blocks transposed in AOConverter.to_matrix    fast 4,388 / 3,341 / 2,698   accurate 8,812 / 5,269 / 2,767
#   PySCF<->e3nn change of basis transposed (AO order) fast 3,791 / 1,612 / 1,975   accurate 3,022 / 1,198 / 1,196
#     (max |dH| fast 58.6 / 34.8 / 47.3 mEh, accurate 32.0 / 23.0 / 37.3 mEh; orbital energies barely move)
#   the network's output zeroed (guess [+ Fock step])  fast 7,783 / 4,245 / 3,111   accurate 3,734 / 3,277 / 2,566
#   the Δ baseline (guess) dropped                     fast > 86,000                 accurate > 54,000
BOUNDS = {  # mean |dH| µEh, max |dH| mEh, gap mEh, dipole D     measured: mean |dH|, max |dH|, gap, dipole
    "fast": {  # the H C N O F S Cl Br model (issue 26's stage 7, shipped in session 21)
        "water": (3800, 54.0, 31.0, 0.10),    # 1,898 µEh, 26.8 mEh, 15.54 mEh, 0.009 D
        "ethanol": (1400, 19.0, 16.0, 0.75),  # 689 µEh, 9.6 mEh, 7.91 mEh, 0.374 D
        "glycine": (1750, 34.0, 1.4, 0.72),   # 877 µEh, 17.1 mEh, 0.69 mEh, 0.361 D
        "thiophene": (1010, 25.5, 4.0, 0.10),          # 506 µEh, 12.7 mEh, 1.97 mEh, 0.006 D
        "3-bromopyridine": (960, 27.0, 3.1, 0.60),     # 482 µEh, 13.5 mEh, 1.55 mEh, 0.299 D
    },
    "accurate": {
        "water": (2700, 20.0, 5.0, 0.20),     # 1,342 µEh, 10.0 mEh, 2.15 mEh, 0.072 D
        "ethanol": (800, 13.0, 9.0, 0.20),    # 388 µEh, 6.7 mEh, 3.89 mEh, 0.080 D
        "glycine": (1000, 26.0, 1.0, 0.30),   # 509 µEh, 13.0 mEh, 0.22 mEh, 0.129 D
    },
}


def load_reference() -> dict:
    return json.loads(REFERENCE.read_text())


def reference_hamiltonian(doc: dict, name: str) -> np.ndarray:
    """The full symmetric (nao, nao) reference Kohn–Sham matrix of ``name`` from the stored upper triangle."""
    nao = doc["molecules"][name]["nao"]
    tri = np.load(EXAMPLES / doc["hamiltonians"]["file"])[name]
    h = np.zeros((nao, nao))
    h[np.triu_indices(nao)] = tri
    return h + np.triu(h, 1).T


def structure_of(name: str):
    import eqchem

    (s,) = eqchem.read_structures(EXAMPLES / f"{name}.xyz")
    return s


def test_references_are_at_the_shipped_models_settings_and_self_consistent():
    """The references were computed at the settings the shipped models' data used, and the stored H, diagonalized
    by PySCF with PySCF's own overlap, gives back the stored HOMO, LUMO and dipole (the stored matrix is in PySCF's
    AO order and belongs to these molecules). No Fock build: a second or two."""
    import eqchem
    from pyscf import dft, gto

    doc = load_reference()
    assert set(doc["molecules"]) == set(BOUNDS["fast"]) >= set(BOUNDS["accurate"])  # accurate: H C N O F only
    for mode in ("fast", "accurate"):
        meta = eqchem.load_model(mode, quick=True).metadata
        assert {k: meta[k] for k in ("xc", "basis", "grids_level", "conv_tol")} == doc["settings"], mode
    for name, rec in doc["molecules"].items():
        s = structure_of(name)
        assert rec["numbers"] == [int(z) for z in s.numbers] and rec["converged"], name
        mol = gto.M(atom=[[int(z), tuple(r)] for z, r in zip(s.numbers, s.positions)], basis=doc["settings"]["basis"],
                    unit="Angstrom", verbose=0)
        h = reference_hamiltonian(doc, name)
        assert h.shape == (mol.nao, mol.nao) == (rec["nao"], rec["nao"]), name
        mf = dft.RKS(mol)
        e, c = mf.eig(h, mol.intor_symmetric("int1e_ovlp"))
        occ = mf.get_occ(e, c)
        nocc = int(np.count_nonzero(occ))
        assert nocc == rec["nocc"] == mol.nelectron // 2, name
        # the stored HOMO/LUMO are the SCF's last orbital energies, the stored H its Fock matrix of the final
        # density: they agree to the SCF's convergence (<= 4.2e-7 Eh measured), a wrong matrix errs by >= 1e-3
        assert abs(e[nocc - 1] - rec["homo"]) < 1e-5 and abs(e[nocc] - rec["lumo"]) < 1e-5, name
        assert abs(rec["gap"] - (rec["lumo"] - rec["homo"])) < 1e-12, name
        dip = mf.dip_moment(mol, mf.make_rdm1(c, occ), unit="Debye", verbose=0)
        assert np.abs(dip - rec["dipole_debye"]).max() < 5e-4, name  # measured <= 4.0e-5 D


@pytest.mark.parametrize("mode", ["fast", "accurate"])
def test_shipped_models_predict_the_reference_molecules_within_their_bounds(mode):
    import eqchem

    doc = load_reference()
    names = list(BOUNDS[mode])
    model = eqchem.load_model(mode, quick=True)
    results = eqchem.predict([structure_of(n) for n in names], model=model)
    assert len(results) == len(names)
    rows, failures = [], []
    for name, res in zip(names, results):
        rec = doc["molecules"][name]
        h_ref = reference_hamiltonian(doc, name)
        assert res.hamiltonian.shape == h_ref.shape and res.nocc == rec["nocc"], name
        dh = np.abs(res.hamiltonian - h_ref)
        h_mae, h_max = float(dh.mean()) * 1e6, float(dh.max()) * 1e3
        gap_err = abs(res.gap - rec["gap"]) * 1e3
        dip_err = float(np.linalg.norm(np.asarray(res.dipole) - rec["dipole_debye"]))
        mae_bound, max_bound, gap_bound, dip_bound = BOUNDS[mode][name]
        rows.append(f"{name}: mean |dH| {h_mae:.0f} µEh (<= {mae_bound}), max |dH| {h_max:.1f} mEh (<= {max_bound}), "
                    f"gap error {gap_err:.2f} mEh = {gap_err * HARTREE_EV:.0f} meV (<= {gap_bound}), "
                    f"dipole error {dip_err:.3f} D (<= {dip_bound})")
        if not (h_mae <= mae_bound and h_max <= max_bound and gap_err <= gap_bound and dip_err <= dip_bound):
            failures.append(name)
    assert not failures, f"{mode} model outside its bounds on {failures}:\n" + "\n".join(rows)
