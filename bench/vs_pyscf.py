"""What a user would pick instead of eqchem, side by side in one run: time against accuracy.

For every molecule, in one process, sequentially, with the same threads for all, in four groups: "QM9" (the
QM9 test molecules of the ``--data`` files, by the QM9 recipe's split of the QM9 index, at most ``--limit``),
"fragments" (``--fragments N``: at most N fragment test molecules of the ``--data`` files, keys ``frag_*``, by
``fragment_split`` of ``datasets/fragments/recipe.py`` on the SMILES each record stores, taken in turn from
those with Br, with Cl, with S and with none of them), "drug-sized" (``--drug-sized``: sulfamethoxazole, 17
heavy atoms with S, and diclofenac, 19 with Cl, of ``datasets/drugs``; RDKit/MMFF geometry) and "examples"
(``--examples``: ethanol, glycine, aspirin):

* eqchem's fast mode (``--fast-model``, default the shipped ``fast`` model: network + its grid-free guess,
  core-jx or core-j, no Fock build), timed per molecule and, once, for all molecules in one batched call
  (molecules/s), with its per-stage wall times (``eqchem.inference.pipeline``), and its guess alone (no
  network: what the fitted atomic potentials of core-jx, or core-j, give by themselves);
* eqchem's accurate mode (``--model``, default the shipped ``accurate`` model): ``eqchem.predict`` as
  shipped (network + the model's damped Fock step), and ``fock_step=False`` (network + its guess only);
* the one-shot guess F[P_minao] alone (one cheap Fock build: grid 1, density fitting; ``eqchem/dft/guess.py``);
* PySCF SCFs a user could run instead: density fitting (def2-universal-jkfit) with grid level 1 and with
  grid level 0, conv_tol 1e-7, minao guess;
* PySCF's grid-0 density-fitted SCF started from eqchem's (accurate) prediction (its cycles and the time of
  prediction + SCF);
* PySCF's reference (grid 3, conv_tol 1e-10, no density fitting), timed here for every molecule.

A model lacking one of a molecule's elements (the shipped accurate model covers H C N O F, the fast one
also S Cl Br) skips its rows for that molecule (the accurate model also the SCF
from its prediction); the footer counts them. Errors are against the reference: QM9 molecules take the data
file's converged H, S and dipole (reference settings); fragments the data file's, computed at the cheap label
settings (density fitting, grid 1, conv_tol 1e-8; H within ~2 µEh of the reference settings,
``bench/label_preset.py``); drug-sized molecules and examples the reference run of this bench. Per row:
molecules, median wall time per molecule, its ratio to the grid-0 SCF's median over the same molecules, mean
H MAE (all elements), occupied-orbital-energy MAE, HOMO/LUMO/gap MAE, error of the dipole magnitude |μ|; a
second table gives them per method and group. A log-log plot of time against gap error and H MAE, and, with
``--cli``, the wall time of fresh ``eqchem predict ethanol.xyz`` processes (each mode) against a fresh
``python -c`` PySCF SCF of the same ethanol (B3LYP/def2-SVP, PySCF's defaults), and with ``--screen N`` a
fresh ``eqchem predict --mode fast`` of N QM9 molecules from one xyz file (molecules/s); these and the
batched throughput run with ``--batch-threads`` (default all cores, what a user's processes get). Writes
vs_pyscf.{json,md,png} to ``--out``.

    python bench/vs_pyscf.py --data ../shared/data/qm9_b3lyp_def2svp/part-*.h5 FRAG.h5 --limit 8 --fragments 8 \
        --drug-sized --examples --fast-model datasets/fragments/stage3.pt --cli 3 --screen 500
"""
from __future__ import annotations

import argparse
import importlib.util
import itertools
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
GROUPS = ("QM9", "fragments", "drug-sized", "examples")
FAST_ROWS = (FAST, FAST_GUESS)  # the rows of each model: skipped where it lacks one of the molecule's elements
ACCURATE_ROWS = (METHODS[2], METHODS[3], METHODS[7])
DRUGS = ROOT / "datasets" / "drugs" / "drugs.smi"
DRUG_SIZED = ("sulfamethoxazole", "diclofenac")
"""Two test molecules of ``datasets/drugs`` (17 heavy atoms with S, 19 with Cl)."""
FRAGMENT_CLASSES = ((35, "with Br"), (17, "with Cl"), (16, "with S"), (None, "none of S/Cl/Br"))


def test_molecules(paths: list[str], limit: int) -> list[tuple[str, object]]:
    """(label, Record) of the QM9 test molecules (recipe split of the QM9 index) in the data files."""
    from recipe import split_of_key

    from eqchem.data.reader import H5Dataset

    out = []
    for path in paths:
        ds = H5Dataset(path)
        for key in ds.keys():
            if key.startswith("qm9_") and split_of_key(key) == "test":
                out.append((key, ds[key]))
                if len(out) >= limit:
                    return out
    return out


def fragment_class(numbers) -> str:
    """'with Br', 'with Cl', 'with S' (the heaviest of them present) or 'none of S/Cl/Br'."""
    present = {int(z) for z in numbers}
    return next(name for z, name in FRAGMENT_CLASSES if z is None or z in present)


def fragment_molecules(paths: list[str], limit: int) -> list[tuple[str, object]]:
    """(label, Record) of at most ``limit`` fragment test molecules (``frag_*`` keys split by the fragments
    recipe on their stored SMILES) in the data files, taken in turn from each of ``FRAGMENT_CLASSES``."""
    import h5py

    from eqchem import keys
    from eqchem.data.reader import H5Dataset

    spec = importlib.util.spec_from_file_location("fragments_recipe", ROOT / "datasets" / "fragments" / "recipe.py")
    recipe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(recipe)
    classes: dict[str, list[tuple[str, str]]] = {name: [] for _, name in FRAGMENT_CLASSES}
    for path in paths:
        with h5py.File(path, "r") as f:
            groups = f.get(keys.MOLECULES, {})
            for key in sorted(k for k in groups if k.startswith("frag_")):
                smiles = groups[key].attrs.get("smiles")
                if smiles is None:
                    sys.exit(f"{path}: {key} stores no SMILES (attribute 'smiles'), so its split is unknown")
                smiles = smiles.decode() if isinstance(smiles, bytes) else str(smiles)
                if recipe.fragment_split(smiles) == "test":
                    classes[fragment_class(groups[key][keys.ATOMIC_NUMBERS][()])].append((path, key))
    chosen = [x for turn in itertools.zip_longest(*classes.values()) for x in turn if x is not None][:limit]
    datasets = {path: H5Dataset(path) for path in {path for path, _ in chosen}}
    return [(key, datasets[path][key]) for path, key in chosen]


def drug_sized() -> list:
    """The :data:`DRUG_SIZED` molecules of ``datasets/drugs/drugs.smi`` as Structures named by the drug (RDKit
    ETKDG + MMFF geometry, eqchem's SMILES reader, as ``eqchem generate`` gives them)."""
    from eqchem.io.readers import read_structures

    out = []
    for s in read_structures(DRUGS):
        name = s.name.removeprefix("drug_").removesuffix("_c0")
        if name in DRUG_SIZED:
            s.name = name
            out.append(s)
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


def run_molecule(label: str, group: str, structure, model, reference, fast=None, timings=None,
                 accurate: bool = True) -> list[dict]:
    """Every method on one molecule: rows {method, molecule, group, seconds, metrics...}. ``reference``: the
    data's Record (None: the reference SCF of this run); ``fast``: the fast-mode model (None: no fast rows; its
    stage times go to ``timings``); ``accurate``: whether to run the rows of the accurate ``model`` (whose
    basis and functional all methods use)."""
    import eqchem
    from eqchem.dft.guess import guess_hamiltonian
    from eqchem.dft.runner import build_mole

    mol = build_mole(structure, model.basis, spin=0)
    nocc = structure.n_electrons // 2
    rows = []

    def add(method, seconds, h=None, **extra):
        rows.append({"method": method, "molecule": label, "group": group, "seconds": seconds,
                     "n_atoms": structure.n_atoms,
                     "nao": mol.nao, **(errors(h, h_ref, s_ref, mol, nocc, mu_ref) if h is not None else {}),
                     **extra})

    if reference is None:  # a drug-sized molecule or an example: the reference SCF of this run
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
        for method, step in ((METHODS[2], True), (METHODS[3], False)) if accurate else ():
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
    if accurate:
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
    """Per method: molecules, median seconds per molecule, its ratio to the grid-0 SCF's median over the same
    molecules, mean metrics."""
    out = []
    t_grid0 = {r["molecule"]: r["seconds"] for r in rows if r["method"] == GRID0}
    for method in METHODS:
        mine = [r for r in rows if r["method"] == method]
        if not mine:
            continue
        t = statistics.median(r["seconds"] for r in mine)
        row = {"method": method, "molecules": len(mine), "median_s": t,
               "ratio_to_grid0": t / statistics.median(t_grid0[r["molecule"]] for r in mine)}
        for k in METRICS:
            row[k] = float(np.mean([r[k] for r in mine]))
        if "scf_cycles" in mine[0]:
            row["mean_scf_cycles"] = float(np.mean([r["scf_cycles"] for r in mine]))
        out.append(row)
    return out


def summarize_groups(rows: list[dict]) -> list[dict]:
    """:func:`summarize` within each group, method by method: rows {group, method, molecules, ...}."""
    out = [{"group": g, **r} for g in GROUPS for r in summarize([r for r in rows if r["group"] == g])]
    return sorted(out, key=lambda r: METHODS.index(r["method"]))


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


def floor_lines(summary: list[dict], groups: list[dict], race: dict | None, screen: dict | None) -> list[str]:
    """One line per floor of the fast mode (over all molecules): measured value, bound, met or NOT met (or not
    measured); then its time ratio to the grid-0 SCF within each group (``groups``: :func:`summarize_groups`)."""
    fast = next((r for r in summary if r["method"] == FAST), None)
    if fast is None:
        return []
    lines = []

    def line(what: str, value: float, bound: float, kind: str) -> str:
        ok = value <= bound if kind == "max" else value >= bound
        return f"- {what}: {value:.4g} ({'≤' if kind == 'max' else '≥'} {bound:g}): {'met' if ok else 'NOT met'}"

    for what, get, bound, kind in FLOORS:
        value = get(fast, race, screen)
        lines.append(f"- {what}: not measured in this run (bound {bound:g})" if value is None
                     else line(what, value, bound, kind))
    _, _, bound, kind = FLOORS[0]
    lines += [line(f"fast time / grid-0 SCF, {r['group']}", r["ratio_to_grid0"], bound, kind)
              for r in groups if r["method"] == FAST]
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
    lines = ["| method | molecules | median s / molecule | × grid-0 SCF | H MAE µEh | occ. ε MAE µEh "
             "| HOMO / LUMO / gap MAE eV | dipole magnitude error D | SCF cycles |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in summary:
        cycles = f"{r['mean_scf_cycles']:.1f}" if "mean_scf_cycles" in r else ""
        lines.append(f"| {r['method']} | {r['molecules']} | {r['median_s']:.2f} | {r['ratio_to_grid0']:.2f} | "
                     f"{r['h_mae_uEh']:.1f} | {r['eps_occ_mae_uEh']:.0f} | {r['homo_mae_ev']:.3f} / "
                     f"{r['lumo_mae_ev']:.3f} / {r['gap_mae_ev']:.4f} | {r['dipole_err_debye']:.3f} | {cycles} |")
    return "\n".join(lines)


def group_table(groups: list[dict]) -> str:
    """Method × group (:func:`summarize_groups`): molecules, median time, its ratio to the group's grid-0 SCF,
    H, gap and dipole errors."""
    lines = ["| method | group | molecules | median s / molecule | × grid-0 SCF | H MAE µEh | gap MAE eV "
             "| dipole magnitude error D |", "|---|---|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['method']} | {r['group']} | {r['molecules']} | {r['median_s']:.2f} | {r['ratio_to_grid0']:.3f} | "
              f"{r['h_mae_uEh']:.1f} | {r['gap_mae_ev']:.4f} | {r['dipole_err_debye']:.3f} |" for r in groups]
    return "\n".join(lines)


def skip_lines(skipped: dict[str, list], models: dict) -> list[str]:
    """Per model role ('fast', 'accurate') with skipped molecules: how many, which elements, what it covers.
    ``skipped``: role -> [(label, atomic numbers)]; ``models``: role -> its EqchemModel."""
    from eqchem.io.elements import symbol

    what = {"fast": "its rows and its guess alone", "accurate": "its rows and the SCF from its prediction"}
    lines = []
    for role, molecules in skipped.items():
        if not molecules:
            continue
        model = models[role]
        missing = sorted({int(z) for _, numbers in molecules for z in numbers} - set(model.elements))
        names = [symbol(z) for z in missing]
        lines.append(f"- {role} ({what[role]}): {len(molecules)} molecule(s) with "
                     f"{', '.join(names[:-1]) + ' or ' + names[-1] if len(names) > 1 else names[0]} skipped: its "
                     f"model {Path(str(model.path)).name} covers {' '.join(symbol(z) for z in model.elements)}")
    return lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", nargs="*", default=[],
                   help="eqchem HDF5 files with QM9 molecules and/or fragments (reference H, S, dipole)")
    p.add_argument("--limit", type=int, default=8, help="QM9 test molecules (default 8)")
    p.add_argument("--fragments", type=int, default=0, metavar="N",
                   help="fragment test molecules of the --data files, in turn with Br, Cl, S, none (default 0)")
    p.add_argument("--drug-sized", action="store_true",
                   help="also sulfamethoxazole and diclofenac from SMILES (reference run here)")
    p.add_argument("--examples", action="store_true", help="also ethanol, glycine, aspirin (reference run here)")
    p.add_argument("--model", default="accurate", help="accurate-mode model file (default: the shipped one)")
    p.add_argument("--fast-model", default="fast",
                   help="fast-mode model file (default: the shipped one, H C N O F S Cl Br; 'none': skip)")
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
    from_data = [(key, r, "QM9") for key, r in test_molecules(a.data, a.limit)]
    from_data += [(key, r, "fragments") for key, r in fragment_molecules(a.data, a.fragments)] if a.fragments else []
    molecules = [(key, Structure(r.numbers, r.positions, name=key), r, group) for key, r, group in from_data]
    if a.drug_sized:
        molecules += [(s.name, s, None, "drug-sized") for s in drug_sized()]
    if a.examples:
        molecules += [(s.name, s, None, "examples") for f in EXAMPLE_FILES for s in read_structures(str(f))]
    if not molecules:
        sys.exit("no molecules: give --data files with QM9 test molecules or fragments, --drug-sized and/or --examples")
    models = {"accurate": model} if fast is None else {"fast": fast, "accurate": model}
    covered = {role: [x[1] for x in molecules if m.covers_elements(x[1].numbers)] for role, m in models.items()}
    for role, m in models.items():  # warm-up: lazy imports, first-call costs
        if covered[role]:
            eqchem.predict(covered[role][0], model=m)
    rows = []
    skipped: dict[str, list] = {role: [] for role in models}
    for i, (label, s, ref, group) in enumerate(molecules):
        runs = {role: m.covers_elements(s.numbers) for role, m in models.items()}
        for role in models:
            if not runs[role]:
                skipped[role].append((label, s.numbers))
        t0 = time.perf_counter()
        rows += run_molecule(label, group, s, model, ref, fast if runs.get("fast") else None, timings,
                             accurate=runs["accurate"])
        print(f"[{i + 1}/{len(molecules)}] {group} {label} ({s.formula}, {s.n_atoms} atoms): "
              f"{time.perf_counter() - t0:.0f} s", flush=True)
    summary, groups = summarize(rows), summarize_groups(rows)
    batch_threads = a.batch_threads or len(os.sched_getaffinity(0))
    batched = batched_throughput(covered["fast"], fast, batch_threads) if covered.get("fast") else None
    race = cli_race(batch_threads, a.cli) if a.cli else None
    if a.screen:
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            screen = cli_screening(a.screen, batch_threads, Path(tmp))
    else:
        screen = None
    m = machine()
    by_group = {g: [x for x in molecules if x[3] == g] for g in GROUPS}
    classes = [fragment_class(x[1].numbers) for x in by_group["fragments"]]
    described = {"QM9": f"{len(by_group['QM9'])} QM9 test molecules",
                 "fragments": f"{len(classes)} fragment test molecules ("
                              + ", ".join(f"{classes.count(c)} {c}" for _, c in FRAGMENT_CLASSES if c in classes) + ")",
                 "drug-sized": ", ".join(x[0] for x in by_group["drug-sized"]) + " (drug-sized)",
                 "examples": ", ".join(x[0] for x in by_group["examples"]) + " (examples)"}
    data = f" (data: {', '.join(Path(d).name for d in a.data)})" if a.data else ""
    fast_text = f", {Path(str(fast.path)).name} (fast, {fast.net.config.baseline} guess)" if fast is not None else ""
    footer = (f"{len(molecules)} molecules: {'; '.join(described[g] for g in GROUPS if by_group[g])}{data}. "
              f"B3LYP/def2-SVP ({model.xc}); models {Path(str(model.path)).name} (accurate){fast_text}; one "
              f"process, sequential, {threads} thread(s), {m['cores']} cores ({m['cpu']}), CPU only. Times: wall "
              f"per molecule, Mole construction included; eqchem with the model loaded once. Errors vs the reference "
              f"(PySCF RKS grid 3, conv_tol 1e-10): for QM9 molecules the data's H; for fragments the data's H at the "
              f"cheap label settings (density fitting, grid 1, conv_tol 1e-8; within ~2 µEh H MAE of the reference "
              f"settings, bench/label_preset.py), the reference row timing an SCF at the reference settings all the "
              f"same; for drug-sized molecules and examples the reference run here. Each row averages over the "
              f"molecules it ran on; × grid-0 SCF: its median time over the grid-0 SCF's median on the same "
              f"molecules.")
    if batched is not None:
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
    floors = floor_lines(summary, groups, race, screen)
    skips = skip_lines(skipped, models)
    text = table(summary) + "\n\nPer group:\n\n" + group_table(groups) + "\n\n" + footer
    if skips:
        text += "\n\nSkipped where a model lacks one of the molecule's elements:\n" + "\n".join(skips)
    if floors:
        text += "\n\nFast-mode floors (issue 15) in this run:\n" + "\n".join(floors)
    print("\n" + text)
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "vs_pyscf.md").write_text(text + "\n\n![time against accuracy](vs_pyscf.png)\n")
    (a.out / "vs_pyscf.json").write_text(json.dumps(_json_plain(
        {"benchmark": "vs_pyscf", "summary": summary, "groups": groups, "rows": rows, "cli": race, "threads": threads,
         "skipped": {role: [label for label, _ in x] for role, x in skipped.items()},
         "model": str(model.path), "fast_model": str(fast.path) if fast is not None else None,
         "fast_stage_seconds_per_molecule": timings.per_molecule() if batched is not None else None,
         "fast_batched": batched, "screening": screen, "floors": floors, "machine": m}), indent=1))
    plot(summary, a.out / "vs_pyscf.png")
    print(f"wrote {a.out / 'vs_pyscf.md'}, vs_pyscf.json, vs_pyscf.png")


if __name__ == "__main__":
    main()
