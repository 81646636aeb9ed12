"""How close the grid-free guesses of Δ-models are to the converged Kohn–Sham matrix, with no network.

Guesses (``eqchem.dft.atomic_density`` and ``eqchem.dft.atomic_potential``):

* ``core``: T + V_nuc;
* ``core-j``: core + J of the superposed neutral atomic densities;
* ``core-jx``: T + V_nuc + J_lr (each atom's electrons as one Gaussian charge) + spherical atomic potentials
  fitted by least squares on training structures (the form eqchem ships);
* ``core-jx, first form``: core-j + atomic potentials fitted on the same training structures to H − core-j
  (the first form of core-jx, no longer in eqchem; computed here from the same building blocks).

Two sets, each: fit on training structures, MAE (mean |H_guess − H| over all AO pairs, then over structures,
µEh) on other structures:

1. water at PBE/def2-SVP (grid 3, conv_tol 1e-10, SCF run here): the random distortions of one water molecule
   of ``bench/md17_water.py`` (seed 0: its first training structures for the fit, its first ``--water-test``
   test structures), fits on ``--water-fit`` training structures (default 50 and 100);
2. QM9 at B3LYP/def2-SVP: the shared data's ``part-001.h5`` (if present; sorted keys: the first
   ``--qm9-fit`` to fit, the next ``--qm9-test`` to test). Without the shared data this part is skipped.

Writes ``guess_mae.json`` and ``guess_mae.md`` to ``--out``; water SCF matrices are cached in ``--out``/work/.

    python bench/guess_mae.py                       # water (~2 min of SCF) and QM9 (~1 min)
    python bench/guess_mae.py --skip-water
"""
from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from report import write_report

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data" / "qm9_b3lyp_def2svp" / "part-001.h5"
BASIS = "def2-svp"
KINDS = ("core", "core-j", "core-jx", "core-jx, first form")


def machine() -> dict:
    from eqchem.cpu import processor_name

    cpu = processor_name()
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                text=True).stdout.strip()
    except OSError:
        commit = None
    return {"cpu": cpu, "cores": len(os.sched_getaffinity(0)), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
            "python": platform.python_version(), "git_head": commit}


def mole(numbers, positions):
    from pyscf import gto

    return gto.M(atom=[[int(z), tuple(map(float, r))] for z, r in zip(numbers, positions)], basis=BASIS,
                 unit="Angstrom", verbose=0)


def core(mol) -> np.ndarray:
    return mol.intor_symmetric("int1e_kin") + mol.intor_symmetric("int1e_nuc")


def core_j(mol) -> np.ndarray:
    from eqchem.dft.atomic_density import superposed_density_coulomb

    return core(mol) + superposed_density_coulomb(mol, BASIS)


def guess_errors(fit_set, test_set) -> dict:
    """fit_set, test_set: lists of (Mole, H). MAE (µEh) of every guess on test_set after fitting on fit_set."""
    from eqchem.dft.atomic_potential import fit_atomic_potentials, superposed_potential, unfitted_part

    fit_jx, summary = fit_atomic_potentials((mol, h - unfitted_part(mol)) for mol, h in fit_set)
    fit_first, _ = fit_atomic_potentials((mol, h - core_j(mol)) for mol, h in fit_set)
    errors = {k: [] for k in KINDS}
    for mol, h in test_set:
        cj = core_j(mol)
        guesses = {"core": core(mol), "core-j": cj,
                   "core-jx": unfitted_part(mol) + superposed_potential(mol, fit_jx),
                   "core-jx, first form": cj + superposed_potential(mol, fit_first)}
        for k, g in guesses.items():
            errors[k].append(1e6 * float(np.abs(g - h).mean()))
    return {"fit_structures": len(fit_set), "test_structures": len(test_set),
            "mae_uEh": {k: float(np.mean(v)) for k, v in errors.items()},
            "mae_range_uEh": {k: [float(min(v)), float(max(v))] for k, v in errors.items()},
            "core_jx_fit_summary": summary}


def water_sets(n_fit: int, n_test: int, work: Path):
    """(Mole, H) of md17_water.py's first n_fit training and n_test test structures (seed 0), PBE/def2-SVP."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from md17_water import structures  # the bench's own geometries

    from pyscf import dft

    structs = structures({"train": n_fit, "val": 0, "test": n_test}, 0)
    cache = work / f"water_pbe_{BASIS}_grid3_tol1e-10_seed0.npz"
    stored = dict(np.load(cache)) if cache.exists() else {}
    out = {}
    t0 = time.perf_counter()
    for part in ("train", "test"):
        out[part] = []
        for s in structs[part]:
            mol = mole(s.numbers, s.positions)
            if s.name not in stored:
                mf = dft.RKS(mol)
                mf.xc, mf.grids.level, mf.conv_tol, mf.max_cycle = "pbe", 3, 1e-10, 100
                mf.kernel()
                if not mf.converged:
                    print(f"{s.name}: SCF did not converge, left out", flush=True)
                    continue
                stored[s.name] = np.asarray(mf.get_fock())
            out[part].append((mol, stored[s.name]))
    work.mkdir(parents=True, exist_ok=True)
    np.savez(cache, **stored)
    print(f"water: {len(out['train'])} training / {len(out['test'])} test structures, PBE/{BASIS} "
          f"({time.perf_counter() - t0:.0f} s)", flush=True)
    return out["train"], out["test"]


def qm9_sets(n_fit: int, n_test: int):
    import h5py

    with h5py.File(SHARED, "r") as f:
        keys = sorted(f["molecules"])
        if len(keys) < n_fit + n_test:
            raise SystemExit(f"{SHARED} holds {len(keys)} molecules, fewer than {n_fit} + {n_test}")
        sets = []
        for part in (keys[:n_fit], keys[n_fit:n_fit + n_test]):
            sets.append([(mole(f["molecules"][k]["atomic_numbers"][()], f["molecules"][k]["positions"][()]),
                          f["molecules"][k]["hamiltonian"][()]) for k in part])
    return sets


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--water-fit", default="50,100", help="training structures to fit on (comma list)")
    p.add_argument("--water-test", type=int, default=40)
    p.add_argument("--qm9-fit", type=int, default=40)
    p.add_argument("--qm9-test", type=int, default=20)
    p.add_argument("--skip-water", action="store_true")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "guess_mae")
    a = p.parse_args()
    t_all = time.perf_counter()
    columns = {}
    if not a.skip_water:
        fits = [int(n) for n in a.water_fit.split(",")]
        train, test = water_sets(max(fits), a.water_test, a.out / "work")
        for n in fits:
            columns[f"water, PBE: fit on {n}, {len(test)} test structures"] = {
                "set": "water", **guess_errors(train[:n], test)}
    if SHARED.exists():
        fit_set, test_set = qm9_sets(a.qm9_fit, a.qm9_test)
        columns[f"QM9, B3LYP: fit on {a.qm9_fit}, {a.qm9_test} test molecules"] = {
            "set": "qm9", **guess_errors(fit_set, test_set)}
    else:
        print(f"{SHARED} not found: QM9 part skipped", flush=True)
    if not columns:
        raise SystemExit("nothing to do")

    names = list(columns)
    lines = ["| guess (no network): H MAE µEh | " + " | ".join(names) + " |",
             "|---|" + "---:|" * len(names)]
    for k in KINDS:
        lines.append(f"| {k} | " + " | ".join(f"{columns[n]['mae_uEh'][k]:,.0f}" for n in names) + " |")
    m = machine()
    footer = (f"Water: bench/md17_water.py's random distortions of one water molecule (seed 0), PBE/{BASIS} grid 3, "
              f"conv_tol 1e-10 (SCF here). QM9: {SHARED.name} of the shared data (B3LYP/{BASIS}), sorted keys. "
              f"MAE: mean |guess − H| over all AO pairs, mean over the test structures. {m['cores']} cores "
              f"({m['cpu']}), OMP_NUM_THREADS={m['OMP_NUM_THREADS']}, CPU; {time.perf_counter() - t_all:.0f} s.")
    table = "\n".join(lines)
    info = {"benchmark": "guess_mae", "basis": BASIS, "columns": columns, "machine": m,
            "args": {k: str(v) for k, v in vars(a).items()}}
    write_report(a.out, "guess_mae", table, footer, info)


if __name__ == "__main__":
    main()
