"""Overhead of `eqchem generate` over a bare PySCF loop, and its speed-up with two workers.

Runs, on the same geometries and settings (B3LYP/def2-SVP, grid level 3, conv_tol 1e-10 by default):

1. a bare PySCF loop (``dft.RKS`` + ``kernel()`` + the matrices eqchem stores), in a fresh Python process;
2. ``eqchem generate --workers 1`` into a fresh HDF5 file;
3. ``eqchem generate --workers 2`` into another fresh file;

and prints a markdown table of wall times (each including interpreter start-up and imports), the
overhead ratio eqchem/bare for one worker and the speed-up of two workers.  Both eqchem and the bare
loop use all cores available to the process as PySCF threads (eqchem gives each of N workers cores // N).

    python bench/generate_overhead.py            # 20 molecules, B3LYP/def2-SVP (a few minutes)
    python bench/generate_overhead.py --quick    # 6 molecules, STO-3G (smoke test, ~1 minute)
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# 20 closed-shell molecules with at most 4 heavy atoms: (name, SMILES)
MOLECULES = [
    ("water", "O"), ("methanol", "CO"), ("ethanol", "CCO"), ("formaldehyde", "C=O"),
    ("acetonitrile", "CC#N"), ("methane", "C"), ("ammonia", "N"), ("hydrogen_fluoride", "F"),
    ("acetaldehyde", "CC=O"), ("formic_acid", "OC=O"), ("methylamine", "CN"), ("ethane", "CC"),
    ("ethylene", "C=C"), ("acetylene", "C#C"), ("hydrogen_cyanide", "C#N"), ("dimethyl_ether", "COC"),
    ("formamide", "NC=O"), ("acetone", "CC(C)=O"), ("acetic_acid", "CC(=O)O"), ("propane", "CCC"),
]


# ----------------------------------------------------------------------------------------------------------------------
# the bare PySCF loop (runs in its own process; imports nothing from eqchem)
# ----------------------------------------------------------------------------------------------------------------------

def read_xyz_frames(path: Path) -> list[tuple[str, str]]:
    """(name, PySCF atom string) per frame of the multi-frame xyz written by eqchem.io.write_xyz."""
    lines = path.read_text().splitlines()
    frames, i = [], 0
    while i < len(lines) and lines[i].strip():
        n = int(lines[i])
        name = re.search(r"name=(\S+)", lines[i + 1]).group(1).strip("\"'")
        frames.append((name, "; ".join(lines[i + 2:i + 2 + n])))
        i += n + 2
    return frames


def bare_worker(xyz: Path, out: Path, xc: str, basis: str, grid_level: int, conv_tol: float) -> None:
    import numpy as np
    from pyscf import dft, gto, lib

    lib.num_threads(len(os.sched_getaffinity(0)))  # as eqchem generate --workers 1
    results, t_loop = {}, time.perf_counter()
    for name, atoms in read_xyz_frames(xyz):
        t0 = time.perf_counter()
        mol = gto.M(atom=atoms, basis=basis, unit="Angstrom", charge=0, spin=0, verbose=0)
        mf = dft.RKS(mol)
        mf.xc = xc
        mf.grids.level = grid_level
        mf.conv_tol = conv_tol
        mf.max_cycle = 100
        mf.kernel()
        # what eqchem computes besides the SCF, so that both do the same work
        _ = (np.asarray(mf.get_fock()), np.asarray(mf.make_rdm1()),
             mol.intor_symmetric("int1e_ovlp"), mf.dip_moment(unit="Debye", verbose=0))
        results[name] = {"energy": float(mf.e_tot), "converged": bool(mf.converged),
                         "seconds": time.perf_counter() - t0}
    out.write_text(json.dumps({"loop_seconds": time.perf_counter() - t_loop, "results": results}))


# ----------------------------------------------------------------------------------------------------------------------
# driver
# ----------------------------------------------------------------------------------------------------------------------

def timed(cmd: list[str]) -> float:
    """Wall time of a command; its output is shown only if it fails."""
    t0 = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if res.returncode != 0:
        sys.exit(f"command failed ({res.returncode}): {' '.join(cmd)}\n{res.stdout[-2000:]}\n{res.stderr[-2000:]}")
    return seconds


def eqchem_energies(path: Path) -> dict[str, float]:
    import h5py

    from eqchem import keys

    with h5py.File(path, "r") as f:
        if len(f.get(keys.FAILURES, {})):
            sys.exit(f"{path}: some structures failed: {list(f[keys.FAILURES])}")
        return {k: float(g[keys.ENERGY][()]) for k, g in f[keys.MOLECULES].items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=None, help="number of molecules (default 20, or 6 with --quick)")
    p.add_argument("--quick", action="store_true", help="6 molecules in STO-3G: a smoke test")
    p.add_argument("--xc", default="b3lyp")
    p.add_argument("--basis", default=None, help="default def2-svp (sto-3g with --quick)")
    p.add_argument("--grid-level", type=int, default=3)
    p.add_argument("--conv-tol", type=float, default=1e-10)
    p.add_argument("--workdir", type=Path, default=None, help="keep the files here (default: a temporary dir)")
    p.add_argument("--bare-worker", nargs=2, type=Path, metavar=("XYZ", "JSON"), help=argparse.SUPPRESS)
    a = p.parse_args()
    basis = a.basis or ("sto-3g" if a.quick else "def2-svp")
    if a.bare_worker:
        return bare_worker(*a.bare_worker, a.xc, basis, a.grid_level, a.conv_tol)

    from eqchem.data.store import sanitize_key
    from eqchem.io import read_smiles, write_xyz

    n = a.n or (6 if a.quick else len(MOLECULES))
    if not 1 <= n <= len(MOLECULES):
        sys.exit(f"--n must be between 1 and {len(MOLECULES)}")
    eqchem = shutil.which("eqchem", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    if eqchem is None:
        sys.exit("the eqchem command is not on PATH (pip install -e .)")

    work = a.workdir or Path(tempfile.mkdtemp(prefix="eqchem-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    for old in work.glob("workers_*.h5*"):  # fresh output files: nothing may be skipped as done
        shutil.rmtree(old) if old.is_dir() else old.unlink()
    xyz = work / "molecules.xyz"
    write_xyz(xyz, [read_smiles(smi, 1, 0, name)[0] for name, smi in MOLECULES[:n]])
    settings = ["--xc", a.xc, "--basis", basis, "--grid-level", str(a.grid_level), "--conv-tol", str(a.conv_tol)]
    cores = len(os.sched_getaffinity(0))
    print(f"{n} molecules, {a.xc}/{basis}, grid level {a.grid_level}, conv_tol {a.conv_tol:g}; "
          f"{cores} cores; files in {work}", flush=True)

    wall = {}
    print("bare PySCF loop ...", flush=True)
    wall["bare"] = timed([sys.executable, __file__, "--bare-worker", str(xyz), str(work / "bare.json"),
                          "--xc", a.xc, "--basis", basis, "--grid-level", str(a.grid_level),
                          "--conv-tol", str(a.conv_tol)])
    bare = json.loads((work / "bare.json").read_text())
    for w in (1, 2):
        print(f"eqchem generate --workers {w} ...", flush=True)
        wall[w] = timed([eqchem, "generate", str(xyz), "--out", str(work / f"workers_{w}.h5"), "--workers", str(w),
                         *settings])

    # same work: the energies must agree
    e_bare = {sanitize_key(k): v["energy"] for k, v in bare["results"].items()}
    dev = 0.0
    for w in (1, 2):
        e = eqchem_energies(work / f"workers_{w}.h5")
        if set(e) != set(e_bare):
            sys.exit(f"workers={w}: structures differ from the bare loop: {sorted(set(e) ^ set(e_bare))}")
        dev = max(dev, max(abs(e[k] - e_bare[k]) for k in e))

    rows = [("bare PySCF loop", wall["bare"], "1.00", "–"),
            ("`eqchem generate --workers 1`", wall[1], f"{wall[1] / wall['bare']:.2f}", "1.00"),
            ("`eqchem generate --workers 2`", wall[2], f"{wall[2] / wall['bare']:.2f}", f"{wall[1] / wall[2]:.2f}")]
    print()
    print("| run | wall time (s) | per structure (s) | time / bare | speed-up vs 1 worker |")
    print("|---|---:|---:|---:|---:|")
    for name, t, ratio, speedup in rows:
        print(f"| {name} | {t:.1f} | {t / n:.2f} | {ratio} | {speedup} |")
    print()
    print(f"{n} molecules, {a.xc}/{basis}, grid level {a.grid_level}, conv_tol {a.conv_tol:g}; {cores} cores, "
          f"{platform.processor() or platform.machine()}. Wall times include Python start-up and imports; the "
          f"bare SCF loop alone took {bare['loop_seconds']:.1f} s. Overhead of eqchem (1 worker): "
          f"{wall[1] - wall['bare']:+.1f} s ({100 * (wall[1] / wall['bare'] - 1):+.0f} %). "
          f"Max |ΔE| eqchem vs bare: {dev:.1e} Eh.")


if __name__ == "__main__":
    main()
