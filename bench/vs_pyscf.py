"""What a user would pick instead of eqchem, side by side in one run: time against accuracy.

For every molecule (QM9 test molecules of the data files, by the recipe's split of the QM9 index, plus
``--examples``: ethanol, glycine, aspirin), in one process, sequentially, with the same threads for all:

* eqchem's fast mode (``--fast-model``, default the shipped ``fast`` model: network + its grid-free guess,
  core-jx or core-j, no Fock build), timed per molecule and, once, for all molecules in one batched call
  (molecules/s), with its per-stage wall times (``eqchem.inference.pipeline``), and its guess alone (no
  network: what the fitted atomic potentials of core-jx, or core-j, give by themselves);
* eqchem's accurate mode (``--model``, default the shipped ``accurate`` model): ``eqchem.predict`` as
  shipped (network + the model's damped Fock step), and ``fock_step=False`` (network + its guess only);
* the one-shot guess F[P_minao] alone (one cheap Fock build: grid 1, density fitting; ``eqchem/dft/guess.py``);
* PySCF SCFs a user could run instead: density fitting (def2-universal-jkfit) with grid level 1 and with
  grid level 0, conv_tol 1e-7, minao guess;
* PySCF's grid-0 density-fitted SCF started from eqchem's prediction (its cycles and the time of
  prediction + SCF);
* PySCF's reference at the data's settings (grid 3, conv_tol 1e-10, no density fitting), timed here.

Errors are against the reference: QM9 molecules take the data file's converged H, S and dipole; the
examples take the reference run of this bench. Per row: median wall time per molecule, its ratio to the
grid-0 SCF's median, mean H MAE (all elements), occupied-orbital-energy MAE, HOMO/LUMO/gap MAE, error of
the dipole magnitude |μ|. A log-log plot of time against gap error and H MAE, and, with ``--cli``, the
wall time of fresh ``eqchem predict ethanol.xyz`` processes (each mode) against a fresh ``python -c`` PySCF
SCF of the same ethanol (B3LYP/def2-SVP, PySCF's defaults), and with ``--screen N`` a fresh ``eqchem predict
--mode fast`` of N QM9 molecules from one xyz file (molecules/s); these and the batched throughput run with
``--batch-threads`` (default all cores, what a user's processes get). Writes vs_pyscf.{json,md,png} to ``--out``.

    python bench/vs_pyscf.py --data ../shared/data/qm9_b3lyp_def2svp/part-*.h5 --limit 8 --examples --cli 3 --screen 500
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "datasets" / "qm9"))
from learning_curve import ROOT, _json_plain, eqchem_command, machine  # noqa: E402

EXAMPLES = ROOT / "datasets" / "examples"
EXAMPLE_FILES = [EXAMPLES / "ethanol.xyz", EXAMPLES / "glycine.xyz", EXAMPLES / "aspirin.sdf"]
GRID0 = "PySCF SCF, density fitting, grid 0, conv_tol 1e-7"
FAST = "eqchem fast (network + grid-free guess, no Fock build)"
FAST_GUESS = "the fast mode's grid-free guess alone (no network)"
METHODS = (FAST, FAST_GUESS, "eqchem accurate (network + minao guess + Fock step)", "eqchem accurate, no Fock step (--no-fock-step)",
           "F[P_minao] alone (one cheap Fock build)", "PySCF SCF, density fitting, grid 1, conv_tol 1e-7", GRID0,
           "PySCF grid-0 DF SCF from eqchem's prediction", "PySCF reference (grid 3, conv_tol 1e-10)")
PYSCF_CLI = "python -c PySCF B3LYP/def2-SVP SCF (defaults)"
METRICS = ("h_mae_uEh", "eps_occ_mae_uEh", "homo_mae_ev", "lumo_mae_ev", "gap_mae_ev", "dipole_err_debye")


def test_molecules(paths: list[str], limit: int) -> list[tuple[str, object]]:
    """(label, Record) of the QM9 test molecules (recipe split of the QM9 index) in the data files."""
    from recipe import split_of

    from eqchem.data.reader import H5Dataset

    out = []
    for path in paths:
        ds = H5Dataset(path)
        for key in ds.keys():
            if key.startswith("qm9_") and split_of(int(key.split("_")[1])) == "test":
                out.append((key, ds[key]))
                if len(out) >= limit:
                    return out
    return out


def scf(mol, xc: str, grid: int, conv_tol: float, density_fit: bool, dm0=None):
    """(converged PySCF object, cycles, seconds) of one Kohn–Sham SCF."""
    from eqchem.dft.runner import DFTSettings, make_scf, run_scf

    t0 = time.perf_counter()
    mf = make_scf(mol, DFTSettings(xc=xc, basis=mol.basis, grid_level=grid, conv_tol=conv_tol,
                                   density_fit=density_fit))
    if density_fit:
        mf.with_df.auxbasis = "def2-universal-jkfit"
    cycles = run_scf(mf, dm0=dm0)
    return mf, cycles, time.perf_counter() - t0


def errors(h, h_ref, s_ref, mol, nocc: int, dipole_ref) -> dict:
    """The row's metrics of one matrix against the reference (µEh, eV, Debye)."""
    from eqchem import orbitals
    from eqchem.basis import mole_ao_offsets
    from eqchem.dft.runner import dipole_from_density
    from eqchem.metrics import molecule_metrics

    m = molecule_metrics(h, h_ref, s_ref, mole_ao_offsets(mol), nocc)
    _, c = orbitals.solve_generalized(h, s_ref)
    mu = dipole_from_density(mol, orbitals.density_matrix(c, nocc))
    m["dipole_err_debye"] = float(abs(np.linalg.norm(mu) - np.linalg.norm(dipole_ref)))
    return {k: float(m[k]) for k in METRICS}


def run_molecule(label: str, structure, model, reference, fast=None, timings=None) -> list[dict]:
    """Every method on one molecule: rows {method, molecule, seconds, metrics...}. ``fast``: the fast-mode
    model (its stage times go to ``timings``)."""
    import eqchem
    from eqchem.dft.guess import guess_hamiltonian
    from eqchem.dft.runner import build_mole

    mol = build_mole(structure, model.basis, spin=0)
    nocc = structure.n_electrons // 2
    rows = []

    def add(method, seconds, h=None, **extra):
        rows.append({"method": method, "molecule": label, "seconds": seconds, "n_atoms": structure.n_atoms,
                     "nao": mol.nao, **(errors(h, h_ref, s_ref, mol, nocc, mu_ref) if h is not None else {}),
                     **extra})

    if reference is None:  # an example: the reference SCF of this run
        mf, cycles, t_ref = scf(mol, model.xc, 3, 1e-10, False)
        h_ref, mu_ref = np.asarray(mf.get_fock()), np.asarray(mf.dip_moment(unit="Debye", verbose=0))
    else:
        h_ref, mu_ref = reference.hamiltonian, reference.dipole
        t_ref = None
    s_ref = mol.intor_symmetric("int1e_ovlp")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # size-extrapolation warnings: this is a benchmark
        if fast is not None:
            t0 = time.perf_counter()
            res = eqchem.predict(structure, model=fast, timings=timings)
            add(FAST, time.perf_counter() - t0, res.hamiltonian)
            t0 = time.perf_counter()
            g = guess_hamiltonian(structure.numbers, structure.positions, fast.basis, fast.xc,
                                  fast.net.config.baseline, fast.baseline_params)
            add(FAST_GUESS, time.perf_counter() - t0, g)
        for method, step in ((METHODS[2], True), (METHODS[3], False)):
            t0 = time.perf_counter()
            res = eqchem.predict(structure, model=model, fock_step=step)
            add(method, time.perf_counter() - t0, res.hamiltonian)
            if step:
                predicted, t_predicted = res, rows[-1]["seconds"]
    t0 = time.perf_counter()
    g = guess_hamiltonian(structure.numbers, structure.positions, model.basis, model.xc)
    add(METHODS[4], time.perf_counter() - t0, g)
    for method, grid in ((METHODS[5], 1), (METHODS[6], 0)):
        mf, cycles, seconds = scf(mol, model.xc, grid, 1e-7, True)
        add(method, seconds, np.asarray(mf.get_fock()), scf_cycles=cycles, converged=bool(mf.converged))
    mf, cycles, seconds = scf(mol, model.xc, 0, 1e-7, True, dm0=predicted.density_matrix)
    add(METHODS[7], seconds + t_predicted, np.asarray(mf.get_fock()), scf_cycles=cycles,
        converged=bool(mf.converged))
    if t_ref is None:
        _, cycles, t_ref = scf(mol, model.xc, 3, 1e-10, False)
    add(METHODS[8], t_ref, h_ref)
    return rows


def batched_throughput(structures: list, fast, threads: int, repeats: int = 4) -> dict:
    """``structures`` (repeated ``repeats`` times) through the fast model in one ``eqchem.predict`` call
    (batch 16) with ``threads`` torch/PySCF threads: molecules/s (screening throughput)."""
    import torch
    from pyscf import lib

    import eqchem

    before = torch.get_num_threads(), lib.num_threads()
    torch.set_num_threads(threads)
    lib.num_threads(threads)
    many = list(structures) * repeats
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t0 = time.perf_counter()
            eqchem.predict(many, model=fast, batch_size=16)
            seconds = time.perf_counter() - t0
    finally:
        torch.set_num_threads(before[0])
        lib.num_threads(before[1])
    return {"molecules": len(many), "seconds": seconds, "molecules_per_s": len(many) / seconds, "threads": threads}


def summarize(rows: list[dict]) -> list[dict]:
    """Per method: median seconds per molecule, ratio to the grid-0 SCF's median, mean metrics."""
    out = []
    t_grid0 = statistics.median(r["seconds"] for r in rows if r["method"] == GRID0)
    for method in METHODS:
        mine = [r for r in rows if r["method"] == method]
        if not mine:
            continue
        t = statistics.median(r["seconds"] for r in mine)
        row = {"method": method, "molecules": len(mine), "median_s": t, "ratio_to_grid0": t / t_grid0}
        for k in METRICS:
            row[k] = float(np.mean([r[k] for r in mine]))
        if "scf_cycles" in mine[0]:
            row["mean_scf_cycles"] = float(np.mean([r["scf_cycles"] for r in mine]))
        out.append(row)
    return out


def cli_race(threads: int, repeats: int) -> dict:
    """Fresh-process wall time: ``eqchem predict ethanol.xyz`` vs a ``python -c`` PySCF SCF of it."""
    from eqchem.io.readers import read_structures

    s = read_structures(str(EXAMPLE_FILES[0]))[0]
    atoms = "; ".join(f"{int(z)} {x:.6f} {y:.6f} {w:.6f}" for z, (x, y, w) in zip(s.numbers, s.positions))
    pyscf_code = (f"from pyscf import gto, dft; mol = gto.M(atom='{atoms}', basis='def2-svp', verbose=0); "
                  f"mf = dft.RKS(mol); mf.xc = 'b3lyp'; mf.kernel(); print(mf.e_tot)")
    commands = {"eqchem predict --mode fast ethanol.xyz": [eqchem_command(), "predict", "--mode", "fast",
                                                           str(EXAMPLE_FILES[0])],
                "eqchem predict --mode accurate ethanol.xyz": [eqchem_command(), "predict", "--mode", "accurate",
                                                               str(EXAMPLE_FILES[0])],
                PYSCF_CLI: [sys.executable, "-c", pyscf_code]}
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    out = {}
    for name, cmd in commands.items():
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            r = subprocess.run(cmd, capture_output=True, text=True, env=env)
            times.append(time.perf_counter() - t0)
            if r.returncode != 0:
                sys.exit(f"{name} failed:\n{r.stdout[-1500:]}\n{r.stderr[-1500:]}")
        out[name] = {"median_s": statistics.median(times), "runs_s": times}
    out["ratios"] = {name: out[name]["median_s"] / out[PYSCF_CLI]["median_s"] for name in commands if name != PYSCF_CLI}
    return out


def cli_screening(count: int, threads: int, workdir: Path) -> dict:
    """Fresh-process screening: ``eqchem predict --mode fast many.xyz -o many.json`` on the first ``count``
    QM9 molecules of ``datasets/qm9/selection.csv`` (geometries from qm9pack; no DFT needed), with
    ``threads`` threads: wall time of the whole process (start-up included) and molecules/s."""
    import recipe

    workdir.mkdir(parents=True, exist_ok=True)
    xyz, out = workdir / "screen.xyz", workdir / "screen.json"
    n = recipe.write_xyz(xyz, count, [], {"train", "val", "test"})
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    t0 = time.perf_counter()
    r = subprocess.run([eqchem_command(), "predict", "--mode", "fast", str(xyz), "-o", str(out)],
                       capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - t0
    if r.returncode != 0:
        sys.exit(f"screening failed:\n{r.stdout[-1500:]}\n{r.stderr[-1500:]}")
    written = len(json.loads(out.read_text()))
    if written != n:
        sys.exit(f"screening wrote {written} of {n} results to {out}")
    return {"molecules": n, "seconds": seconds, "molecules_per_s": n / seconds, "threads": threads,
            "command": f"eqchem predict --mode fast screen.xyz -o screen.json ({n} QM9 molecules)"}


FLOORS = (  # issue 15's floors for the fast mode: (what, value getter, bound, "max"/"min")
    ("time per molecule / grid-0 DF SCF's", lambda f, race, screen: f["ratio_to_grid0"], 1 / 20, "max"),
    ("H MAE (µEh)", lambda f, race, screen: f["h_mae_uEh"], 1000.0, "max"),
    ("HOMO–LUMO gap MAE (eV)", lambda f, race, screen: f["gap_mae_ev"], 0.2, "max"),
    ("fresh `eqchem predict --mode fast ethanol.xyz` / fresh PySCF SCF",
     lambda f, race, screen: race and race["ratios"].get("eqchem predict --mode fast ethanol.xyz"), 0.5, "max"),
    ("screening from the shell (molecules/s)", lambda f, race, screen: screen and screen["molecules_per_s"], 10.0, "min"),
)


def floor_lines(summary: list[dict], race: dict | None, screen: dict | None) -> list[str]:
    """One line per floor of the fast mode: measured value, bound, met or NOT met (or not measured)."""
    fast = next((r for r in summary if r["method"] == FAST), None)
    if fast is None:
        return []
    lines = []
    for what, get, bound, kind in FLOORS:
        value = get(fast, race, screen)
        if value is None:
            lines.append(f"- {what}: not measured in this run (bound {bound:g})")
            continue
        ok = value <= bound if kind == "max" else value >= bound
        lines.append(f"- {what}: {value:.4g} ({'≤' if kind == 'max' else '≥'} {bound:g}): {'met' if ok else 'NOT met'}")
    return lines


def plot(summary: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, key, label in ((axes[0], "gap_mae_ev", "HOMO–LUMO gap MAE (eV)"), (axes[1], "h_mae_uEh", "H MAE (µEh)")):
        for i, row in enumerate(r for r in summary if r[key] > 0):
            ax.scatter(row["median_s"], row[key], s=40, marker="os^vDP*"[i % 7], label=row["method"])
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
        ax.xaxis.set_minor_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
        ax.set_xlabel("median wall time per molecule (s)")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=7, loc="lower left")
    fig.suptitle("time against accuracy, one run (reference: PySCF grid 3, conv_tol 1e-10; not plotted)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def table(summary: list[dict]) -> str:
    lines = ["| method | median s / molecule | × grid-0 SCF | H MAE µEh | occ. ε MAE µEh | HOMO / LUMO / gap MAE eV "
             "| dipole magnitude error D | SCF cycles |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in summary:
        cycles = f"{r['mean_scf_cycles']:.1f}" if "mean_scf_cycles" in r else ""
        lines.append(f"| {r['method']} | {r['median_s']:.2f} | {r['ratio_to_grid0']:.2f} | {r['h_mae_uEh']:.1f} | "
                     f"{r['eps_occ_mae_uEh']:.0f} | {r['homo_mae_ev']:.3f} / {r['lumo_mae_ev']:.3f} / "
                     f"{r['gap_mae_ev']:.4f} | {r['dipole_err_debye']:.3f} | {cycles} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", nargs="*", default=[], help="eqchem HDF5 files with QM9 molecules (reference H, S)")
    p.add_argument("--limit", type=int, default=8, help="QM9 test molecules (default 8)")
    p.add_argument("--examples", action="store_true", help="also ethanol, glycine, aspirin (reference run here)")
    p.add_argument("--model", default="accurate", help="accurate-mode model file (default: the shipped one)")
    p.add_argument("--fast-model", default="fast", help="fast-mode model file (default: the shipped one; 'none': skip)")
    p.add_argument("--cli", type=int, default=0, metavar="N", help="fresh-process race, N runs each (0: skip)")
    p.add_argument("--screen", type=int, default=0, metavar="N",
                   help="fresh-process screening of N QM9 molecules in fast mode (needs qm9pack; 0: skip)")
    p.add_argument("--threads", type=int, default=None, help="threads (default: OMP_NUM_THREADS, else all cores)")
    p.add_argument("--batch-threads", type=int, default=None,
                   help="threads of the batched fast-mode throughput, the screening and the fresh-process race "
                        "(default: all usable cores, as a user's processes get)")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "vs_pyscf")
    a = p.parse_args()
    threads = a.threads or int(os.environ.get("OMP_NUM_THREADS") or 0) or len(os.sched_getaffinity(0))
    os.environ["OMP_NUM_THREADS"] = str(threads)

    import torch
    from pyscf import lib

    import eqchem
    from eqchem.io.readers import read_structures
    from eqchem.io.structure import Structure

    torch.set_num_threads(threads)
    lib.num_threads(threads)
    from eqchem.inference.pipeline import StageTimings

    model = eqchem.load_model(a.model)
    fast = None if a.fast_model == "none" else eqchem.load_model(a.fast_model)
    timings = StageTimings()
    molecules = [(key, Structure(r.numbers, r.positions, name=key), r) for key, r in test_molecules(a.data, a.limit)]
    if a.examples:
        molecules += [(s.name, s, None) for f in EXAMPLE_FILES for s in read_structures(str(f))]
    if not molecules:
        sys.exit("no molecules: give --data files with QM9 test molecules and/or --examples")
    eqchem.predict(molecules[0][1], model=model)  # warm-up: lazy imports, first-call costs
    if fast is not None:
        eqchem.predict(molecules[0][1], model=fast)
    rows = []
    for i, (label, s, ref) in enumerate(molecules):
        t0 = time.perf_counter()
        rows += run_molecule(label, s, model, ref, fast, timings)
        print(f"[{i + 1}/{len(molecules)}] {label} ({s.formula}, {s.n_atoms} atoms): {time.perf_counter() - t0:.0f} s",
              flush=True)
    summary = summarize(rows)
    batch_threads = a.batch_threads or len(os.sched_getaffinity(0))
    batched = batched_throughput([x[1] for x in molecules], fast, batch_threads) if fast is not None else None
    race = cli_race(batch_threads, a.cli) if a.cli else None
    if a.screen:
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            screen = cli_screening(a.screen, batch_threads, Path(tmp))
    else:
        screen = None
    m = machine()
    footer = (f"{len(molecules)} molecules ({sum(1 for x in molecules if x[2] is not None)} QM9 test molecules of "
              f"{', '.join(Path(d).name for d in a.data) or '-'}"
              f"{', ethanol, glycine, aspirin' if a.examples else ''}), B3LYP/def2-SVP ({model.xc}); models "
              f"{Path(str(model.path)).name} (accurate)"
              f"{f', {Path(str(fast.path)).name} (fast, {fast.net.config.baseline} guess)' if fast is not None else ''}; one process, sequential, {threads} thread(s), {m['cores']} cores "
              f"({m['cpu']}), CPU only. Times: wall per molecule, Mole construction included; eqchem with the "
              f"model loaded once. Errors vs the reference (PySCF RKS grid 3, conv_tol 1e-10: the data's H for "
              f"QM9 molecules).")
    if fast is not None:
        per = timings.per_molecule()
        footer += (" Fast mode per molecule by stage (s): "
                   + ", ".join(f"{k} {v:.3f}" for k, v in per.items() if v > 0)
                   + f"; screening, the molecules 4 times over ({batched['molecules']}) in one batched call "
                     f"with {batched['threads']} threads: {batched['seconds']:.1f} s, "
                     f"{batched['molecules_per_s']:.1f} molecules/s.")
    if screen:
        footer += (f" Screening from the shell, `{screen['command']}`, one fresh process with {screen['threads']} "
                   f"threads, start-up included: {screen['seconds']:.1f} s, {screen['molecules_per_s']:.1f} molecules/s.")
    if race:
        footer += (f" Fresh processes ({a.cli} runs each, {batch_threads} threads, medians): "
                   + ", ".join(f"`{k}` {v['median_s']:.2f} s" for k, v in race.items() if k != "ratios")
                   + "; ratios to the PySCF process: "
                   + ", ".join(f"{k.split(' ethanol')[0].replace('eqchem predict ', '')} {r:.2f}"
                               for k, r in race["ratios"].items()) + ".")
    floors = floor_lines(summary, race, screen)
    text = table(summary) + "\n\n" + footer
    if floors:
        text += "\n\nFast-mode floors (issue 15) in this run:\n" + "\n".join(floors)
    print("\n" + text)
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "vs_pyscf.md").write_text(text + "\n\n![time against accuracy](vs_pyscf.png)\n")
    (a.out / "vs_pyscf.json").write_text(json.dumps(_json_plain(
        {"benchmark": "vs_pyscf", "summary": summary, "rows": rows, "cli": race, "threads": threads,
         "model": str(model.path), "fast_model": str(fast.path) if fast is not None else None,
         "fast_stage_seconds_per_molecule": timings.per_molecule() if fast is not None else None,
         "fast_batched": batched, "screening": screen, "floors": floors, "machine": m}), indent=1))
    plot(summary, a.out / "vs_pyscf.png")
    print(f"wrote {a.out / 'vs_pyscf.md'}, vs_pyscf.json, vs_pyscf.png")


if __name__ == "__main__":
    main()
