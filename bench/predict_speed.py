"""Prediction speed: eqchem.predict (network + diagonalization) against a PySCF SCF on the same molecule.

For every molecule, in one process and with the same number of threads for PyTorch and PySCF:

1. ``eqchem.predict`` with the model loaded once: one warm-up call, then the median of ``--repeats``
   calls; and, timed on their own (medians of as many calls), its two parts: the network
   (``model.predict_matrices``: neighbour list, network, AO blocks -> matrix, and for a Δ-model the
   guess Hamiltonian it corrects, and the model's damped Fock step if it has one; ``predict`` is also
   timed without that step) and the post-processing
   after it (PySCF ``Mole`` and overlap, H C = S C ε, density, dipole, Mulliken charges);
2. one PySCF Kohn–Sham SCF at the model's level of theory (default model: B3LYP/def2-SVP) with grid
   level 3 and conv_tol 1e-10 (or the model's data settings / ``--grid-level`` / ``--conv-tol``),
   from PySCF's default minao guess, ``Mole`` construction included; run once (it is slow);

and, for the first input file, the wall time of the command line ``eqchem predict FILE`` (a fresh
process: Python start-up, imports, model loading, prediction, printing; median of ``--cli-repeats``).
Prints a markdown table, writes ``predict_speed.json`` and ``predict_speed.md`` to ``--out``.

    python bench/predict_speed.py                                 # the shipped default model, examples
    python bench/predict_speed.py mol1.xyz mol2.xyz --model model.pt
    python bench/predict_speed.py --quick                         # tiny water model trained on the fly
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from learning_curve import ROOT, _json_plain, eqchem_command, machine, quiet_lightning  # noqa: E402

EXAMPLES = ROOT / "datasets" / "examples"
DEFAULT_INPUTS = [EXAMPLES / "ethanol.xyz", EXAMPLES / "glycine.xyz", EXAMPLES / "aspirin.sdf"]
QUICK_WATER = "3\nname=water\nO 0.0 0.0 0.1173\nH 0.0 0.7572 -0.4692\nH 0.0 -0.7572 -0.4692\n"


def quick_model(work: Path) -> Path:
    """A tiny water model (PBE/STO-3G, 16 jittered geometries, 4 epochs), as tests/test_pipeline.py trains."""
    model_path = work / "quick_water_model.pt"
    if model_path.exists():
        print(f"reusing {model_path}", flush=True)
        return model_path
    work.mkdir(parents=True, exist_ok=True)
    (work / "water.xyz").write_text(QUICK_WATER)
    h5 = work / "quick_water.h5"
    cmd = [eqchem_command(), "generate", str(work / "water.xyz"), "--out", str(h5), "--jitter", "0.05",
           "--samples", "15", "--seed", "1", "--xc", "pbe", "--basis", "sto-3g", "--grid-level", "2",
           "--conv-tol", "1e-9"]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        sys.exit(f"eqchem generate failed ({res.returncode}):\n{res.stdout[-2000:]}\n{res.stderr[-2000:]}")
    quiet_lightning()
    from eqchem.training.config import TrainConfig
    from eqchem.training.train import train

    cfg = TrainConfig.load(None, {"max_epochs": 4, "batch_size": 4, "split_by": "structure", "val_fraction": 0.2})
    print("training a tiny water model (PBE/STO-3G, 4 epochs) ...", flush=True)
    train([h5], model_path, cfg, run_dir=work / "quick_model_run", log=lambda m: None)
    return model_path


def post_process(model, s, matrix):
    """What ``eqchem.predict`` does after the network (as in ``predict_structures``)."""
    from eqchem.dft.runner import DFTSettings, build_mole, make_scf
    from eqchem.inference.result import from_matrix

    mol = build_mole(s, model.basis, spin=0)
    s_ao = mol.intor_symmetric("int1e_ovlp")
    if model.target == "density_matrix":
        mf = make_scf(mol, DFTSettings(xc=model.xc, basis=model.basis,
                                       grid_level=int(model.metadata.get("grids_level") or 3)))
        matrix = mf.get_fock(dm=matrix)
    return from_matrix(s.name, s.numbers, s.positions, matrix, s_ao, model.basis, model.xc, s.charge, mole=mol)


def timed(fn, repeats: int) -> float:
    """Median wall time (s) of ``fn()`` over ``repeats`` calls."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("inputs", nargs="*", type=Path,
                   help="structure files (default: datasets/examples/ethanol.xyz, glycine.xyz, aspirin.sdf; "
                        "water.xyz with --quick)")
    p.add_argument("--model", default=None, help="model file (default: the shipped default model)")
    p.add_argument("--repeats", type=int, default=None, help="timed predict calls per molecule (default 20; 10 with --quick)")
    p.add_argument("--cli-repeats", type=int, default=3, help="timed `eqchem predict FILE` runs (0: skip)")
    p.add_argument("--grid-level", type=int, default=None, help="PySCF grid level (default: the model's data, else 3)")
    p.add_argument("--conv-tol", type=float, default=None, help="PySCF conv_tol (default: the model's data, else 1e-10)")
    p.add_argument("--threads", type=int, default=None,
                   help="threads for PyTorch and PySCF (default: OMP_NUM_THREADS, else all usable cores)")
    p.add_argument("--out", type=Path, default=None,
                   help="output directory (default bench/results/predict_speed/, or predict_speed_quick/)")
    p.add_argument("--quick", action="store_true", help="smoke test: a tiny water model trained on the fly "
                                                        "(unless --model), water.xyz, 10 repeats")
    a = p.parse_args()

    out = a.out or ROOT / "bench" / "results" / ("predict_speed_quick" if a.quick else "predict_speed")
    threads = a.threads or int(os.environ.get("OMP_NUM_THREADS") or 0) or len(os.sched_getaffinity(0))
    os.environ["OMP_NUM_THREADS"] = str(threads)  # for PySCF's OpenMP (read when its library loads) and the CLI

    from eqchem.model.file import default_model_path

    if a.model:
        model_arg = a.model
    elif a.quick:
        model_arg = str(quick_model(out / "work"))
    else:
        if not default_model_path().exists():
            print(f"error: no default model file yet ({default_model_path()} does not exist); train and ship one "
                  f"(datasets/ship_model.py), or pass --model MODEL.pt, or use --quick", file=sys.stderr)
            sys.exit(2)
        model_arg = None
    out.mkdir(parents=True, exist_ok=True)
    inputs = a.inputs or ([EXAMPLES / "water.xyz"] if a.quick else DEFAULT_INPUTS)
    repeats = a.repeats or (10 if a.quick else 20)

    import torch
    from pyscf import lib

    import eqchem
    from eqchem.dft.runner import DFTSettings, build_mole, make_scf, run_scf
    from eqchem.io.readers import read_structures

    torch.set_num_threads(threads)
    lib.num_threads(threads)
    t0 = time.perf_counter()
    model = eqchem.load_model(model_arg)
    load_seconds = time.perf_counter() - t0
    grid = a.grid_level if a.grid_level is not None else int(model.metadata.get("grids_level") or 3)
    conv_tol = a.conv_tol if a.conv_tol is not None else float(model.metadata.get("conv_tol") or 1e-10)
    settings = DFTSettings(xc=model.xc, basis=model.basis, grid_level=grid, conv_tol=conv_tol)
    print(f"model {model.path} ({model.xc}/{model.basis}, loaded in {load_seconds:.2f} s); PySCF "
          f"{model.xc}/{model.basis} grid {grid} conv_tol {conv_tol:g}; {threads} thread(s)", flush=True)

    rows = []
    for path in inputs:
        for s in read_structures(str(path)):
            label = f"{s.name or path.stem} ({s.formula})"
            try:
                model.check_covers(s.numbers)
            except Exception as exc:  # noqa: BLE001 - element outside the model: skip it, say why
                print(f"skipping {label}: {exc}", flush=True)
                continue
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # size-extrapolation warnings: timing only here
                res = eqchem.predict(s, model=model)  # warm-up
                total = timed(lambda: eqchem.predict(s, model=model), repeats)
                no_step = (timed(lambda: eqchem.predict(s, model=model, fock_step=False), repeats)
                           if model.fock_mixing > 0 else total)
                net = timed(lambda: model.predict_matrices([(s.numbers, s.positions)]), repeats)
                h = model.predict_matrices([(s.numbers, s.positions)])[0]
                post = timed(lambda: post_process(model, s, h), repeats)
            mol = build_mole(s, model.basis, spin=0)
            print(f"{label}: {s.n_atoms} atoms, {mol.nao} AOs: predict {total * 1e3:.1f} ms "
                  f"(network {net * 1e3:.1f} ms); PySCF ...", end="", flush=True)
            t0 = time.perf_counter()
            mf = make_scf(build_mole(s, model.basis, spin=0), settings)
            cycles = run_scf(mf)
            scf = time.perf_counter() - t0
            print(f" {scf:.1f} s ({cycles} cycles{'' if mf.converged else ', NOT converged'})", flush=True)
            rows.append({"molecule": s.name or path.stem, "formula": s.formula, "file": str(path),
                         "atoms": int(s.n_atoms), "aos": int(mol.nao), "predict_ms": total * 1e3,
                         "no_fock_step_ms": no_step * 1e3, "network_ms": net * 1e3, "post_ms": post * 1e3,
                         "pyscf_s": scf,
                         "scf_cycles": int(cycles), "scf_converged": bool(mf.converged),
                         "speedup": scf / total, "predicted_gap_ev": float(res.gap * 27.211386245988)})
    if not rows:
        sys.exit("no molecule the model covers")

    cli = None
    if a.cli_repeats > 0:
        first = Path(rows[0]["file"])
        cmd = [eqchem_command(), "predict", str(first)] + (["--model", str(model_arg)] if model_arg else [])
        times = []
        for _ in range(a.cli_repeats):
            t0 = time.perf_counter()
            r = subprocess.run(cmd, capture_output=True, text=True)
            times.append(time.perf_counter() - t0)
            if r.returncode != 0:
                sys.exit(f"`{' '.join(cmd)}` failed ({r.returncode}):\n{r.stdout[-1500:]}\n{r.stderr[-1500:]}")
        cli = {"command": "eqchem " + " ".join(cmd[1:]), "median_s": statistics.median(times), "runs_s": times}

    lines = ["| molecule | atoms | AOs | predict ms | without Fock step ms | network ms | post-processing ms "
             "| PySCF s | SCF cycles | speed-up |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['molecule']} ({r['formula']}) | {r['atoms']} | {r['aos']} | {r['predict_ms']:.1f} | "
                     f"{r['no_fock_step_ms']:.1f} | {r['network_ms']:.1f} | {r['post_ms']:.1f} | {r['pyscf_s']:.2f} | {r['scf_cycles']} | "
                     f"{r['speedup']:.0f}× |")
    m = machine()
    footer = (f"Model {Path(str(model.path)).name} ({model.xc}/{model.basis}); PySCF {model.xc}/{model.basis}, grid "
              f"{grid}, conv_tol {conv_tol:g}, minao guess, run once. predict: median of {repeats} calls after a "
              f"warm-up (model loaded once, {load_seconds:.2f} s); its parts timed separately (medians): network = "
              f"neighbour list + network + AO matrix (for a Δ-model also its guess: one PySCF Fock build, which "
              f"dominates; with the model's Fock step, fock_mixing {model.fock_mixing:g}, a second build); "
              f"'without Fock step': predict(fock_step=False); post-processing = Mole + overlap + diagonalization + "
              f"density/dipole/charges. "
              f"{threads} thread(s) for both, {m['cores']} cores ({m['cpu']}), CPU only.")
    if cli:
        footer += (f" CLI `{cli['command'].replace(str(ROOT) + '/', '')}` (fresh process: start-up, imports, "
                   f"model loading, prediction, printing): {cli['median_s']:.2f} s, median of {len(cli['runs_s'])}.")
    table = "\n".join(lines)
    print("\n" + table + "\n\n" + footer)
    info = {"benchmark": "predict_speed", "quick": a.quick, "model": str(model.path), "xc": model.xc,
            "basis": model.basis, "grid_level": grid, "conv_tol": conv_tol, "threads": threads,
            "repeats": repeats, "model_load_s": load_seconds, "rows": rows, "cli": cli, "machine": m}
    (out / "predict_speed.json").write_text(json.dumps(_json_plain(info), indent=1))
    (out / "predict_speed.md").write_text(table + "\n\n" + footer + "\n")
    print(f"\nwrote {out / 'predict_speed.json'}, {out / 'predict_speed.md'}")


if __name__ == "__main__":
    main()
