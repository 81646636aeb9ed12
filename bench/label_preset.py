"""Label error and cost of ``eqchem generate --preset fast-labels`` against the reference settings, one core.

Both label settings of ``eqchem.dft.runner.LABEL_PRESETS`` at B3LYP/def2-SVP, computed by eqchem's own DFT
runner (``run_dft``, what ``eqchem generate`` calls) for each molecule, one after the other on one thread:

* reference: grid level 3, conv_tol 1e-10, exact J/K (``--preset reference``, eqchem's defaults; the shared
  data's QM9 parts);
* fast-labels: density-fitted J/K on def2-universal-jkfit, grid level 1, conv_tol 1e-8 (``--preset
  fast-labels``; the shared data's cheap part).

Per molecule: H MAE (mean |H_fast − H_ref| over all AO pairs, µEh) and max |ΔH| (µEh), the HOMO, LUMO and
gap differences (fast − reference, meV), the wall times of ``run_dft`` (SCF from the minao guess, Fock
matrix, dipole) and their ratio fast / reference. As a check of the runs themselves, the largest difference
to the shared data's stored H where it holds the molecule: the reference run against ``part-001.h5`` (QM9),
the fast run against ``part-003.h5`` (fragments) (Eh).

Molecules, from the shared data (``/work/shared/data``, next to this checkout; the script stops with one
line without it): the first ``--qm9`` keys (sorted) of ``qm9_b3lyp_def2svp/part-001.h5``; of
``fragments.xyz`` in rank order, the first fragment with ``--min-heavy``..``--max-heavy`` heavy atoms that
contains S, then the first (another) that contains Cl, then Br.

Writes ``label_preset.json`` and ``label_preset.md`` to ``--out``.

    OMP_NUM_THREADS=1 python bench/label_preset.py      # 3 + 3 molecules, ~5 min on one core
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before NumPy and PySCF start their thread pools

import argparse  # noqa: E402
import platform  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from report import write_report  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data"
QM9_PART = SHARED / "qm9_b3lyp_def2svp" / "part-001.h5"
CHEAP_PART = SHARED / "cheap_b3lyp_def2svp" / "part-003.h5"
FRAGMENTS = SHARED / "fragments.xyz"
XC, BASIS = "b3lyp", "def2-svp"
PRESETS = ("reference", "fast-labels")
HALOGENS_AND_S = (16, 17, 35)  # S, Cl, Br
UEH, MEV = 1e6, 27.211386245988e3


def machine() -> dict:
    from eqchem.cpu import processor_name

    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                text=True).stdout.strip()
    except OSError:
        commit = None
    return {"cpu": processor_name(), "cores": len(os.sched_getaffinity(0)),
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"), "python": platform.python_version(),
            "git_head": commit}


def qm9_structures(n: int) -> list:
    import h5py

    from eqchem.io.structure import Structure

    with h5py.File(QM9_PART, "r") as f:
        out = []
        for key in sorted(f["molecules"])[:n]:
            g = f["molecules"][key]
            out.append(Structure(g["atomic_numbers"][()].astype(np.int64), g["positions"][()], name=key,
                                 source=f"{QM9_PART.name}:{key}", info={"smiles": str(g.attrs.get("smiles", ""))}))
    return out


def fragment_structures(min_heavy: int, max_heavy: int) -> list:
    """The first fragment (rank order) of ``min_heavy``..``max_heavy`` heavy atoms with S, then Cl, then Br."""
    from eqchem.io.elements import atomic_number
    from eqchem.io.structure import Structure

    lines = FRAGMENTS.read_text().splitlines()
    chosen: dict[int, Structure] = {}
    i = 0
    while i < len(lines) and len(chosen) < len(HALOGENS_AND_S):
        n = int(lines[i])
        key, smiles = (lines[i + 1].split(maxsplit=1) + [""])[:2]
        atoms = [ln.split() for ln in lines[i + 2:i + 2 + n]]
        i += n + 2
        z = np.array([atomic_number(a[0]) for a in atoms], dtype=np.int64)
        heavy = int((z > 1).sum())
        if not min_heavy <= heavy <= max_heavy:
            continue
        for element in HALOGENS_AND_S:
            if element not in chosen and element in z and key not in {s.name for s in chosen.values()}:
                chosen[element] = Structure(z, np.array([[float(x) for x in a[1:4]] for a in atoms]), name=key,
                                            source=f"{FRAGMENTS.name}:{key}", info={"smiles": smiles})
                break
    return [chosen[e] for e in HALOGENS_AND_S if e in chosen]


def stored_hamiltonian(path: Path, key: str) -> np.ndarray | None:
    """H of ``key`` in a shared part (full, or the compact layout's upper triangle); None if absent."""
    import h5py

    with h5py.File(path, "r") as f:
        g = f["molecules"].get(key)
        if g is None:
            return None
        if "hamiltonian" in g:
            return g["hamiltonian"][()]
        upper = g["hamiltonian_upper"][()]
        n = int(round((np.sqrt(8 * len(upper) + 1) - 1) / 2))
        h = np.zeros((n, n))
        h[np.triu_indices(n)] = upper
        return h + np.triu(h, 1).T


def compare(structure, runs: dict) -> dict:
    from eqchem import keys
    from eqchem.orbitals import frontier

    ref, fast = runs["reference"], runs["fast-labels"]
    dh = np.abs(fast[keys.HAMILTONIAN] - ref[keys.HAMILTONIAN])
    nocc = int(np.count_nonzero(ref[keys.ORBITAL_OCCUPATIONS]))
    f_ref, f_fast = (np.array(frontier(r[keys.ORBITAL_ENERGIES], nocc)) for r in (ref, fast))
    d_homo, d_lumo, d_gap = (f_fast - f_ref) * MEV
    row = {"key": structure.name, "smiles": structure.info.get("smiles", ""), "atoms": len(structure.numbers),
           "heavy_atoms": int((structure.numbers > 1).sum()), "nao": int(dh.shape[0]),
           "h_mae_uEh": float(dh.mean() * UEH), "h_max_uEh": float(dh.max() * UEH),
           "homo_meV": float(d_homo), "lumo_meV": float(d_lumo), "gap_meV": float(d_gap),
           "energy_diff_uEh": float((fast[keys.ENERGY] - ref[keys.ENERGY]) * UEH)}
    for name, r in runs.items():
        row[f"seconds_{name}"] = float(r["attrs"][keys.SECONDS])
        row[f"scf_cycles_{name}"] = int(r["attrs"][keys.SCF_CYCLES])
    row["time_ratio"] = row["seconds_fast-labels"] / row["seconds_reference"]
    part, preset = (QM9_PART, "reference") if structure.name.startswith("qm9_") else (CHEAP_PART, "fast-labels")
    stored = stored_hamiltonian(part, structure.name) if part.exists() else None
    row["vs_shared"] = None if stored is None else {
        "part": part.name, "run": preset, "max_abs_Eh": float(np.abs(runs[preset][keys.HAMILTONIAN] - stored).max())}
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--qm9", type=int, default=3, help="QM9 molecules (the first keys of part-001.h5)")
    p.add_argument("--min-heavy", type=int, default=6)
    p.add_argument("--max-heavy", type=int, default=9)
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "label_preset")
    a = p.parse_args()
    missing = [str(x) for x in (QM9_PART, FRAGMENTS) if not x.exists()]
    if missing:
        raise SystemExit(f"shared data not found: {', '.join(missing)} (this bench needs /work/shared/data)")

    from pyscf import lib

    from eqchem import keys
    from eqchem.dft.runner import LABEL_PRESETS, DFTSettings, run_dft
    from eqchem.io.structure import Structure

    lib.num_threads(1)
    settings = {name: DFTSettings(xc=XC, basis=BASIS, **LABEL_PRESETS[name]) for name in PRESETS}
    assert all(s.label_preset() == name for name, s in settings.items())
    structures = qm9_structures(a.qm9) + fragment_structures(a.min_heavy, a.max_heavy)
    water = Structure(np.array([8, 1, 1]), np.array([[0, 0, 0.1173], [0, 0.7572, -0.4692], [0, -0.7572, -0.4692]]),
                      name="warm-up")
    for s in settings.values():  # PySCF's first run loads libxc, basis files and the DF machinery: not timed
        run_dft(water, s)
    t_all = time.perf_counter()
    rows = []
    for structure in structures:
        runs = {name: run_dft(structure, s) for name, s in settings.items()}
        bad = [name for name, r in runs.items() if not r["attrs"][keys.CONVERGED]]
        if bad:
            print(f"{structure.name}: SCF not converged at {', '.join(bad)}, left out", flush=True)
            continue
        rows.append(compare(structure, runs))
        r = rows[-1]
        print(f"{r['key']}: H MAE {r['h_mae_uEh']:.2f} µEh, max {r['h_max_uEh']:.0f} µEh, gap {r['gap_meV']:+.2f} meV, "
              f"{r['seconds_reference']:.1f} s -> {r['seconds_fast-labels']:.1f} s", flush=True)
    if not rows:
        raise SystemExit("no molecule converged at both settings")

    lines = ["| molecule | atoms (heavy) | AOs | H MAE µEh | max \\|ΔH\\| µEh | ΔHOMO meV | ΔLUMO meV | Δgap meV "
             "| reference s | fast-labels s | time ratio | vs shared data, Eh |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        shared = "–" if r["vs_shared"] is None else f"{r['vs_shared']['max_abs_Eh']:.0e} ({r['vs_shared']['run']})"
        lines.append(f"| {r['key']} `{r['smiles']}` | {r['atoms']} ({r['heavy_atoms']}) | {r['nao']} | {r['h_mae_uEh']:.2f} "
                     f"| {r['h_max_uEh']:.0f} | {r['homo_meV']:+.2f} | {r['lumo_meV']:+.2f} | {r['gap_meV']:+.2f} "
                     f"| {r['seconds_reference']:.1f} | {r['seconds_fast-labels']:.1f} | {r['time_ratio']:.2f} | {shared} |")
    total = {name: sum(r[f"seconds_{name}"] for r in rows) for name in PRESETS}
    summary = {"h_mae_uEh_mean": float(np.mean([r["h_mae_uEh"] for r in rows])),
               "h_max_uEh": float(max(r["h_max_uEh"] for r in rows)),
               "gap_meV_max_abs": float(max(abs(r["gap_meV"]) for r in rows)),
               "time_ratio_total": total["fast-labels"] / total["reference"]}
    lines.append(f"| **all {len(rows)}** | | | {summary['h_mae_uEh_mean']:.2f} (mean) | {summary['h_max_uEh']:.0f} | | | "
                 f"max \\|Δ\\| {summary['gap_meV_max_abs']:.2f} | {total['reference']:.1f} | {total['fast-labels']:.1f} "
                 f"| {summary['time_ratio_total']:.2f} | |")
    m = machine()
    footer = (f"B3LYP/{BASIS}, eqchem's DFT runner (run_dft) at --preset reference (grid 3, conv_tol 1e-10, exact J/K) "
              f"and --preset fast-labels (density-fitted J/K on def2-universal-jkfit, grid 1, conv_tol 1e-8), SCF from "
              f"the minao guess. Δ: fast-labels − reference; H over all AO pairs; time ratio: fast-labels / reference "
              f"wall time of run_dft. Molecules: the first {a.qm9} keys of the shared {QM9_PART.name} (QM9) and the "
              f"first fragments of {FRAGMENTS.name} (rank order) with {a.min_heavy}–{a.max_heavy} heavy atoms containing "
              f"S, Cl, Br. vs shared data: max |H − stored H| of the named run against {QM9_PART.name} / "
              f"{CHEAP_PART.name}. One thread ({m['cpu']}, {m['cores']} cores shared with other work), "
              f"OMP_NUM_THREADS={m['OMP_NUM_THREADS']}; {time.perf_counter() - t_all:.0f} s.")
    info = {"benchmark": "label_preset", "xc": XC, "basis": BASIS,
            "settings": {name: s.to_attrs() for name, s in settings.items()}, "molecules": rows, "summary": summary,
            "machine": m, "args": {k: str(v) for k, v in vars(a).items()}}
    write_report(a.out, "label_preset", "\n".join(lines), footer, info)


if __name__ == "__main__":
    main()
