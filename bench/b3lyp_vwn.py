"""B3LYP with VWN-RPA (PySCF >= 2.3 'b3lyp', QH9-era VWN5 = 'b3lyp5') at one fixed density, and the cheap
Fock build of eqchem's guess and Fock step at the same density.

For each molecule, at one density P (the converged B3LYP density: from the stored Hamiltonian of the shared
QM9 data when it is there, else from a B3LYP SCF run here on ``datasets/examples`` molecules):

1. F_b3lyp[P] and F_b3lyp5[P], both def2-SVP, grid level 3, no density fitting (the data's settings);
   printed: MAE and largest |element| of F_b3lyp5 - F_b3lyp (µEh). J and the 20 % exact exchange are the same
   in both: the difference is the VWN correlation inside the functional only.
2. F_cheap[P]: ``eqchem.dft.fock_step.fock_of_density`` (grid level 1, def2-universal-jkfit density
   fitting: the settings of eqchem's minao guess and Fock step), against the reference matrix (µEh).
3. A check: F_b3lyp[P] against the reference matrix (the stored H, or this run's converged SCF matrix):
   should be ~0 (P is that matrix's own density).

MAE per molecule is the mean |difference| over all nao x nao elements (QH9's definition); the table gives
the mean over the molecules and the range. Writes ``b3lyp_vwn.json`` and ``b3lyp_vwn.md`` to ``--out``.

    python bench/b3lyp_vwn.py                       # 5 QM9 molecules of the shared data (else the examples)
    python bench/b3lyp_vwn.py --n 10
    python bench/b3lyp_vwn.py --source examples     # ethanol and glycine (runs their SCF first, ~20 s)
"""
from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np
from report import write_report

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data" / "qm9_b3lyp_def2svp" / "part-001.h5"
EXAMPLES = ("ethanol.xyz", "glycine.xyz")
BASIS = "def2-svp"


def machine() -> dict:
    from eqchem.cpu import processor_name

    cpu = processor_name()
    return {"cpu": cpu, "cores": len(os.sched_getaffinity(0)), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
            "python": platform.python_version()}


def read_xyz(path: Path) -> tuple[list[str], np.ndarray]:
    lines = path.read_text().splitlines()
    n = int(lines[0])
    rows = [ln.split() for ln in lines[2:2 + n]]
    return [r[0] for r in rows], np.array([[float(x) for x in r[1:4]] for r in rows])


def mole(symbols_or_z, positions):
    from pyscf import gto

    return gto.M(atom=[[s if isinstance(s, str) else int(s), tuple(map(float, r))]
                       for s, r in zip(symbols_or_z, positions)], basis=BASIS, unit="Angstrom", verbose=0)


def ks(mol, xc: str):
    from pyscf import dft

    mf = dft.RKS(mol)
    mf.xc = xc
    mf.grids.level = 3
    mf.conv_tol = 1e-10
    mf.max_cycle = 100
    return mf


def density_of(h: np.ndarray, s: np.ndarray, nocc: int) -> np.ndarray:
    from scipy.linalg import eigh

    _, c = eigh(h, s)
    return 2.0 * c[:, :nocc] @ c[:, :nocc].T


def molecules(source: str, n: int):
    """(name, Mole, reference H, density P) per molecule."""
    if source == "shared":
        import h5py

        with h5py.File(SHARED, "r") as f:
            keys = sorted(f["molecules"])[:n]
            for key in keys:
                g = f["molecules"][key]
                mol = mole(g["atomic_numbers"][()], g["positions"][()])
                h = g["hamiltonian"][()]
                yield key, mol, h, density_of(h, g["overlap"][()], mol.nelectron // 2)
        return
    for name in EXAMPLES[:n]:
        sym, pos = read_xyz(ROOT / "datasets" / "examples" / name)
        mol = mole(sym, pos)
        mf = ks(mol, "b3lyp")
        mf.kernel()
        if not mf.converged:
            raise SystemExit(f"{name}: B3LYP SCF did not converge")
        yield name.removesuffix(".xyz"), mol, np.asarray(mf.get_fock()), np.asarray(mf.make_rdm1())


def cheap_fock(mol, density: np.ndarray) -> np.ndarray:
    from eqchem.dft.fock_step import fock_of_density

    return fock_of_density(mol.atom_charges(), mol.atom_coords(unit="Angstrom"), density, BASIS, "b3lyp")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=5, help="molecules (default 5)")
    p.add_argument("--source", choices=("auto", "shared", "examples"), default="auto",
                   help="auto: the shared QM9 data if present, else datasets/examples")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "b3lyp_vwn")
    a = p.parse_args()
    source = a.source if a.source != "auto" else ("shared" if SHARED.exists() else "examples")
    if source == "shared" and not SHARED.exists():
        raise SystemExit(f"{SHARED} not found (use --source examples)")

    import pyscf
    from pyscf import dft

    rows = []
    t_all = time.perf_counter()
    for name, mol, h_ref, dm in molecules(source, a.n):
        t0 = time.perf_counter()
        f_rpa = np.asarray(ks(mol, "b3lyp").get_fock(dm=dm))
        f_vwn5 = np.asarray(ks(mol, "b3lyp5").get_fock(dm=dm))
        f_cheap = cheap_fock(mol, dm)
        diff = f_vwn5 - f_rpa
        row = {"molecule": name, "atoms": mol.natm, "nao": mol.nao,
               "b3lyp5_vs_b3lyp_mae_uEh": 1e6 * float(np.abs(diff).mean()),
               "b3lyp5_vs_b3lyp_max_uEh": 1e6 * float(np.abs(diff).max()),
               "cheap_vs_reference_mae_uEh": 1e6 * float(np.abs(f_cheap - h_ref).mean()),
               "cheap_vs_reference_max_uEh": 1e6 * float(np.abs(f_cheap - h_ref).max()),
               "check_b3lyp_vs_reference_mae_uEh": 1e6 * float(np.abs(f_rpa - h_ref).mean()),
               "seconds": time.perf_counter() - t0}
        rows.append(row)
        print(f"{name}: {mol.natm} atoms, {mol.nao} AOs: b3lyp5 - b3lyp MAE {row['b3lyp5_vs_b3lyp_mae_uEh']:.1f} µEh "
              f"(max {row['b3lyp5_vs_b3lyp_max_uEh']:.0f}); cheap build - reference MAE "
              f"{row['cheap_vs_reference_mae_uEh']:.2f} µEh; check {row['check_b3lyp_vs_reference_mae_uEh']:.2g} µEh "
              f"({row['seconds']:.1f} s)", flush=True)

    def stat(k):
        v = np.array([r[k] for r in rows])
        return {"mean": float(v.mean()), "min": float(v.min()), "max": float(v.max())}

    summary = {k: stat(k) for k in rows[0] if k.endswith("_uEh")}
    m = machine()
    what = ("QM9 molecules of the shared data (part-001.h5, the first keys in sorted order), density from the "
            "stored B3LYP/def2-SVP Hamiltonian" if source == "shared" else
            "datasets/examples molecules, density of a B3LYP/def2-SVP SCF run here (grid 3, conv_tol 1e-10)")
    s = summary
    table = "\n".join([
        "| at the converged B3LYP density | MAE µEh (mean; range) | largest element µEh |",
        "|---|---:|---:|",
        f"| F_b3lyp5 − F_b3lyp (VWN5 vs VWN-RPA; grid 3) | {s['b3lyp5_vs_b3lyp_mae_uEh']['mean']:.1f} "
        f"({s['b3lyp5_vs_b3lyp_mae_uEh']['min']:.1f}–{s['b3lyp5_vs_b3lyp_mae_uEh']['max']:.1f}) | "
        f"{s['b3lyp5_vs_b3lyp_max_uEh']['max']:.0f} |",
        f"| cheap F_b3lyp (grid 1, density fitting) − reference | {s['cheap_vs_reference_mae_uEh']['mean']:.2f} "
        f"({s['cheap_vs_reference_mae_uEh']['min']:.2f}–{s['cheap_vs_reference_mae_uEh']['max']:.2f}) | "
        f"{s['cheap_vs_reference_max_uEh']['max']:.0f} |",
        f"| check: F_b3lyp (grid 3) − reference | {s['check_b3lyp_vs_reference_mae_uEh']['mean']:.2g} | – |",
    ])
    def terms(xc):
        return " + ".join(f"{float(w):g}×{int(i)}" for i, w in dft.libxc.parse_xc(xc)[1])

    footer = (f"{len(rows)} {what}; def2-SVP; PySCF {pyscf.__version__}: 'b3lyp' = {terms('b3lyp')}, "
              f"'b3lyp5' = {terms('b3lyp5')} (weight × libxc id; both with 20 % exact exchange); "
              f"{m['cores']} cores ({m['cpu']}), OMP_NUM_THREADS={m['OMP_NUM_THREADS']}, CPU; "
              f"{time.perf_counter() - t_all:.0f} s.")
    info = {"benchmark": "b3lyp_vwn", "source": source, "basis": BASIS, "pyscf": pyscf.__version__,
            "molecules": rows, "summary": summary, "machine": m}
    write_report(a.out, "b3lyp_vwn", table, footer, info)


if __name__ == "__main__":
    main()
