"""Learning curve: test Hamiltonian MAE against the number of training structures.

For every training-set size N (nested subsets: the first N keys of a seeded shuffle of the split's
training keys) the script writes a split file {train: first N, val: the split's validation keys},
trains a model with ``eqchem.training.train.train`` (the library function behind ``eqchem train``)
from a YAML config with the given epoch / time budget, and evaluates it on the split's test keys with
``eqchem.inference.evaluate.evaluate`` (per data file; the means are over test molecules of all files).
The test set is the same for every N: test molecules with an element absent from the smallest training
subset are left out (and counted). It prints a markdown table, writes ``learning_curve.json``,
``learning_curve.md`` and ``learning_curve.png`` to ``--out`` and keeps data, split files, models and
training runs under ``--out``/work/. A model whose training keys and config match is reused, so an
interrupted curve continues where it stopped (``--retrain`` trains everything again; ``--resume`` also
continues an interrupted point from its last checkpoint).

    # the real benchmark: QM9 B3LYP/def2-SVP data and its split (datasets/qm9/recipe.py split)
    python bench/learning_curve.py DATA.h5 [DATA2.h5 ...] --split split.json \
        [--config datasets/qm9/train_default.yaml] [--sizes 25,50,100,200] [--max-epochs 60] [--max-time 20]
    python bench/learning_curve.py --quick    # smoke test: ~24 water geometries PBE/STO-3G, sizes 4,8,16, 3 epochs
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shutil
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = ROOT / "datasets" / "qm9" / "train_default.yaml"
QUICK_WATER = "3\nname=water\nO 0.0 0.0 0.1173\nH 0.0 0.7572 -0.4692\nH 0.0 -0.7572 -0.4692\n"
TRAIN_KEYS_FILE = "train_keys.json"  # in a point's run folder: the training keys of that run (for --resume)
QUICK_LEVEL = ["--xc", "pbe", "--basis", "sto-3g", "--grid-level", "1", "--conv-tol", "1e-9"]


# ----------------------------------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------------------------------

def machine() -> dict:
    """Where the numbers were measured."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": len(os.sched_getaffinity(0)), "torch_threads": torch.get_num_threads(),
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "python": platform.python_version(), "torch": torch.__version__, "platform": platform.platform()}


def eqchem_command() -> str:
    exe = shutil.which("eqchem", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    if exe is None:
        sys.exit("the eqchem command is not on PATH (pip install -e .)")
    return exe


def quiet_lightning() -> None:
    """Keep Lightning's banner lines and data-loader hints out of the benchmark's output."""
    import lightning.pytorch  # noqa: F401  (sets its loggers' levels on import: import first, then override)

    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "pytorch_lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*number of training batches.*")
    warnings.filterwarnings("ignore", message=".*Checkpoint directory.*exists and is not empty.*")
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")


def _json_plain(d):
    return json.loads(json.dumps(d, default=str))


def ensure_guesses(data: list, cfg) -> None:
    """Δ-models (``model.baseline`` set): compute the missing guess Hamiltonians (``eqchem guess``)."""
    from eqchem.dft.baselines import get_baseline

    kind = get_baseline(cfg.model.baseline)
    if not kind.is_delta:
        return
    cmd = [eqchem_command(), "guess", *map(str, data), "--kind", kind.name]
    if cfg.split_file and kind.fitted:  # a fitted guess (core-jx) fits on the training keys only
        cmd += ["--split-file", str(cfg.split_file)]
    print("$ eqchem " + " ".join(cmd[1:]), flush=True)
    if subprocess.run(cmd).returncode != 0:
        sys.exit("eqchem guess failed")


def train_or_reuse(data: list, model_path: Path, run_dir: Path, train_keys: list[str], cfg, retrain: bool,
                   resume: bool = False):
    """Train (or reuse an identical earlier model); returns (model, train seconds, epochs, val metrics).

    With ``resume``, a point whose training was interrupted (a ``last.ckpt`` in ``run_dir`` from a run on the
    same training keys) continues from that checkpoint, its time budget and schedule included, instead of
    starting again: a point that needs more hours than one session has can be trained across sessions."""
    from eqchem.inference.model_file import load_model
    from eqchem.training.train import train

    ensure_guesses(data, cfg)
    if not retrain and same_training(model_path, train_keys, cfg.to_dict()):
        print(f"   reusing {model_path} (same training structures and config)", flush=True)
        # prediction settings, not training ones: the config's
        model = load_model(model_path).with_settings(**cfg.prediction.to_dict())
        card = model.card
        return (model, float(card.train_seconds if card.train_seconds is not None else float("nan")),
                int(card.epochs or 0), card.metrics)
    if resume and resumable(run_dir, train_keys, cfg):
        print(f"   resuming the interrupted run in {run_dir}", flush=True)
        cfg.resume = True
    else:
        if resume and run_dir.exists():
            print(f"   {run_dir} holds no run to resume on these training keys and this config: training afresh",
                  flush=True)
        print(f"   training ({cfg.max_epochs} epochs max"
              f"{f', {cfg.max_time_minutes} min max' if cfg.max_time_minutes else ''})", flush=True)
        if run_dir.exists():
            shutil.rmtree(run_dir)
        run_dir.mkdir(parents=True)
        (run_dir / TRAIN_KEYS_FILE).write_text(json.dumps(sorted(train_keys)))
    report = train(data, model_path, cfg, run_dir=run_dir, log=lambda m: print("   " + m, flush=True))
    return load_model(model_path), report.seconds, report.epochs, report.metrics


def resumable(run_dir: Path, train_keys: list[str], cfg) -> bool:
    """True if ``run_dir`` holds a run on exactly ``train_keys`` that ``eqchem train --resume`` would continue
    (``resume_checkpoint``: a checkpoint, and the same config up to the settings a resume may change)."""
    from eqchem.errors import DataError
    from eqchem.training.runs import resume_checkpoint

    try:
        same_keys = sorted(json.loads((run_dir / TRAIN_KEYS_FILE).read_text())) == sorted(train_keys)
        return same_keys and resume_checkpoint(run_dir, cfg) is not None
    except (OSError, ValueError, DataError):  # no keys file, an unreadable one, or a changed config
        return False


def same_training(model_path: Path, train_keys: list[str], cfg_dict: dict) -> bool:
    """True if ``model_path`` was trained on exactly these keys with this config (so it can be reused)."""
    from eqchem.model.file import read_header
    from eqchem.training.config import TrainConfig

    header = read_header(model_path) if model_path.exists() else None  # the card, without the weights
    if header is None:  # absent or unreadable: retrain
        return False
    old = TrainConfig.training_part(header.card.train_config)  # prediction settings aside
    new = TrainConfig.training_part(_json_plain(cfg_dict))
    for d in (old, new):
        d.pop("resume", None)
    return sorted(header.card.train_keys) == sorted(train_keys) and _json_plain(old) == new


def key_locations(paths: list[Path]) -> dict[str, int]:
    """key -> index of the first data file holding it (the copy training uses too)."""
    from eqchem.data.reader import H5Dataset

    where: dict[str, int] = {}
    for i, p in enumerate(paths):
        for k in H5Dataset(p).keys():
            where.setdefault(k, i)
    return where


def point_data(data: list, folder: Path, cfg) -> list:
    """The data files one point trains on: ``data`` itself, or, for a guess fitted on training structures
    (core-jx), links to them in the point's own ``folder``, where its guess files go, so that every point
    fits its atomic potentials on its own training keys only."""
    from eqchem.dft.baselines import get_baseline

    if not get_baseline(cfg.model.baseline).fitted:
        return data
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for p in map(Path, data):
        for src in (p, p.with_name(p.name + ".segments")):  # a store's index links its segments relatively
            link = folder / src.name
            if src.exists() and not link.exists():
                link.symlink_to(src.resolve())
        out.append(folder / p.name)
    return out


def evaluate_keys(model, paths: list[Path], where: dict[str, int], test_keys: list[str], batch_size: int) -> dict:
    """Metrics of ``model`` on ``test_keys`` spread over several files: per-molecule means over all of them."""
    from eqchem.data.reader import H5Dataset
    from eqchem.inference.evaluate import evaluate
    from eqchem.metrics import aggregate

    rows = []
    for i, p in enumerate(paths):
        ks = [k for k in test_keys if where[k] == i]
        if ks:
            rows.extend(evaluate(H5Dataset(p).subset(ks), model, batch_size=batch_size)["molecules"])
    summary = aggregate([{k: v for k, v in r.items() if k != "key"} for r in rows])
    summary["n_molecules"] = len(rows)
    return summary


# ----------------------------------------------------------------------------------------------------------------------
# --quick: tiny water data
# ----------------------------------------------------------------------------------------------------------------------

def quick_data(work: Path, n_structures: int = 24, seed: int = 0) -> tuple[list[Path], Path]:
    """~24 jittered water geometries at PBE/STO-3G (eqchem generate) and a by-structure split (4 val, 4 test)."""
    from eqchem.data.reader import H5Dataset

    work.mkdir(parents=True, exist_ok=True)
    xyz, h5 = work / "water.xyz", work / "quick_water.h5"
    xyz.write_text(QUICK_WATER)
    cmd = [eqchem_command(), "generate", str(xyz), "--out", str(h5), "--jitter", "0.05",
           "--samples", str(n_structures - 1), "--seed", "1", "--workers", "1", *QUICK_LEVEL]
    print("$ " + " ".join(cmd[1:]), flush=True)
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        sys.exit(f"eqchem generate failed ({res.returncode}):\n{res.stdout[-2000:]}\n{res.stderr[-2000:]}")
    keys = sorted(H5Dataset(h5).keys())
    order = [keys[i] for i in np.random.default_rng(seed).permutation(len(keys))]
    split = {"val": sorted(order[:4]), "test": sorted(order[4:8]), "train": sorted(order[8:])}
    split_path = work / "quick_split.json"
    split_path.write_text(json.dumps(split, indent=0))
    return [h5], split_path


# ----------------------------------------------------------------------------------------------------------------------
# the benchmark
# ----------------------------------------------------------------------------------------------------------------------

def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                epilog="Numbers: µEh = 1e-6 Hartree; MAEs are means over test molecules.")
    p.add_argument("data", nargs="*", type=Path, help="eqchem HDF5 data files (one level of theory)")
    p.add_argument("--split", type=Path, help='JSON {"train": [...], "val": [...], "test": [...]} of keys')
    p.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help=f"training YAML (default {DEFAULT_CONFIG.relative_to(ROOT)})")
    p.add_argument("--sizes", default=None, help="comma list of training-set sizes (default 25,50,100,200; "
                                                 "4,8,16 with --quick); capped at the number of training keys")
    p.add_argument("--max-epochs", type=int, default=None, help="epochs per point (default: the config's; 3 with --quick)")
    p.add_argument("--max-time", type=float, default=None, help="minutes per point (default: the config's)")
    p.add_argument("--patience", type=int, default=None,
                   help="early stopping: epochs without a better validation loss before a point stops (default: "
                        "the config's); with a generous --max-time as a cap, every point trains to convergence")
    p.add_argument("--batch-size", type=int, default=None, help="override the config's batch size")
    p.add_argument("--init", type=Path, default=None,
                   help="model file whose weights start every point (the config's init_model; e.g. the QM9-only "
                        "fast model for a curve on fragments: new elements' parts start afresh)")
    p.add_argument("--seed", type=int, default=0, help="seed of the shuffle that orders the training keys")
    p.add_argument("--eval-batch-size", type=int, default=16)
    p.add_argument("--out", type=Path, default=None,
                   help="output directory (default bench/results/learning_curve/, or learning_curve_quick/)")
    p.add_argument("--retrain", action="store_true", help="train every point again even if a matching model exists")
    p.add_argument("--resume", action="store_true",
                   help="continue a point whose training was interrupted (its last checkpoint, same training keys "
                        "and config) instead of starting it again")
    p.add_argument("--reference", action="append", default=[], metavar="NAME=N:MAE",
                   help="a published point for the plot and table footer: name, training structures, test H MAE µEh "
                        "(e.g. 'QHNet, QH9-stable-id=104664:76.3'); repeatable")
    p.add_argument("--floor", type=float, default=None, help="a floor (µEh) drawn on the plot")
    p.add_argument("--quick", action="store_true", help="smoke test on tiny generated water data")
    a = p.parse_args()

    references = []
    for text in a.reference:
        try:
            name, rest = text.rsplit("=", 1)
            n, mae = rest.split(":")
            references.append((name, int(n), float(mae)))
        except ValueError:
            p.error(f"--reference takes NAME=N:MAE, got {text!r}")
    out = a.out or ROOT / "bench" / "results" / ("learning_curve_quick" if a.quick else "learning_curve")
    work = out / "work"
    work.mkdir(parents=True, exist_ok=True)
    if a.quick:
        if a.data or a.split:
            sys.exit("--quick makes its own data; do not give data files or --split")
        data, split_path = quick_data(work / "data")
        sizes_arg = a.sizes or "4,8,16"
        max_epochs = a.max_epochs or 3
    else:
        if not a.data or not a.split:
            p.error("give data files and --split (or --quick)")
        data, split_path = a.data, a.split
        sizes_arg = a.sizes or "25,50,100,200"
        max_epochs = a.max_epochs
    for d in data:
        if not Path(d).exists():
            sys.exit(f"data file not found: {d}")
    if not a.config.exists():
        sys.exit(f"config file not found: {a.config}")
    quiet_lightning()

    from eqchem.data.reader import H5Dataset
    from eqchem.plots import learning_curve_plot
    from eqchem.training.config import TrainConfig
    from eqchem.training.train import open_datasets

    open_datasets(data)  # one level of theory, or a clear error
    split = json.loads(Path(split_path).read_text())
    where = key_locations(list(data))
    parts = {part: sorted(k for k in split.get(part, []) if k in where) for part in ("train", "val", "test")}
    missing = {part: len(split.get(part, [])) - len(parts[part]) for part in parts}
    for part in ("train", "val", "test"):
        if not parts[part]:
            sys.exit(f"the split leaves no {part} keys that are in the data files")
    order = [parts["train"][i] for i in np.random.default_rng(a.seed).permutation(len(parts["train"]))]
    try:
        wanted = sorted({int(s) for s in sizes_arg.split(",") if s.strip()})
    except ValueError:
        sys.exit(f"--sizes must be a comma list of integers, got {sizes_arg!r}")
    sizes = sorted({min(n, len(order)) for n in wanted if n > 0})
    if not sizes:
        sys.exit("no positive training-set size given")
    if wanted[-1] > len(order):
        print(f"note: only {len(order)} training keys in the data; sizes capped at {len(order)}", flush=True)

    # one test set for every point: molecules whose elements the smallest subset covers
    dss = [H5Dataset(d) for d in data]
    numbers = {k: dss[where[k]].numbers(k) for k in order[:sizes[0]] + parts["test"]}
    covered = {int(z) for k in order[:sizes[0]] for z in numbers[k]}
    test_keys = [k for k in parts["test"] if {int(z) for z in numbers[k]} <= covered]
    n_uncovered = len(parts["test"]) - len(test_keys)
    if not test_keys:
        sys.exit("no test molecule has only elements of the smallest training subset; use larger --sizes")

    level = f"{dss[0].xc}/{dss[0].basis}"
    overrides = {"max_epochs": max_epochs, "max_time_minutes": a.max_time, "batch_size": a.batch_size,
                 "early_stopping_patience": a.patience, "init_model": str(a.init) if a.init else None}
    base = TrainConfig.load(a.config, overrides)
    budget = f"max_epochs {base.max_epochs}, max_time {base.max_time_minutes or 'none'} min"
    print(f"{len(data)} data file(s), {level}; split {split_path}: {len(parts['train'])} train / "
          f"{len(parts['val'])} val / {len(parts['test'])} test keys in the data "
          f"({sum(missing.values())} split keys not in the data); test set {len(test_keys)} molecules"
          f"{f' ({n_uncovered} left out: elements outside the smallest subset)' if n_uncovered else ''}; "
          f"sizes {sizes}; config {a.config}; {budget} per point", flush=True)

    info = {"benchmark": "learning_curve", "quick": a.quick, "data": [str(d) for d in data],
            "split": str(split_path), "level_of_theory": level, "config": str(a.config), "seed": a.seed,
            "n_train_available": len(order), "n_val": len(parts["val"]), "n_test": len(test_keys),
            "n_test_left_out": n_uncovered, "train_config": base.to_dict(), "machine": machine(), "points": []}
    rows = []
    for n in sizes:
        subset = order[:n]
        split_n = work / "splits" / f"n{n}.json"
        split_n.parent.mkdir(parents=True, exist_ok=True)
        split_n.write_text(json.dumps({"train": sorted(subset), "val": parts["val"]}, indent=0))
        cfg = TrainConfig.load(a.config, {**overrides, "split_file": str(split_n)})
        model_path, run_dir = work / "models" / f"n{n}.pt", work / "runs" / f"n{n}"
        print(f"\n== n_train = {n}", flush=True)
        model, seconds, epochs, val = train_or_reuse(point_data(data, work / "points" / f"n{n}", cfg), model_path,
                                                     run_dir, subset, cfg, a.retrain, a.resume)
        t0 = time.perf_counter()
        s = evaluate_keys(model, list(data), where, test_keys, a.eval_batch_size)
        print(f"   test: H MAE {s['h_mae_uEh']:.1f} µEh over {s['n_molecules']} molecules "
              f"(evaluated in {time.perf_counter() - t0:.1f} s)", flush=True)
        point = {"n_train": n, "epochs": epochs, "train_minutes": seconds / 60, "model": str(model_path),
                 "stop_reason": model.card.stop_reason, "val_metrics": val, "test": s}
        info["points"].append(point)
        rows.append(point)
        (out / "learning_curve.json").write_text(json.dumps(_json_plain(info), indent=1))  # after every point

    header = ("| n_train | H MAE (µEh) | diag (µEh) | off-diag (µEh) | ε_occ MAE (µEh) | ψ_occ cos (%) | gap MAE (eV) "
              "| epochs | train min | stopped by |\n|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    lines = [header]
    for r in rows:
        t = r["test"]
        stop = r.get("stop_reason", "").split(" (")[0].split(" at epoch")[0] or "-"
        lines.append(f"| {r['n_train']} | {t['h_mae_uEh']:.1f} | {t['h_mae_diag_uEh']:.1f} | "
                     f"{t['h_mae_offd_uEh']:.1f} | {t['eps_occ_mae_uEh']:.1f} | {t['psi_cos_pct']:.1f} | "
                     f"{t['gap_mae_ev']:.3f} | {r['epochs']} | {r['train_minutes']:.1f} | {stop} |")
    m = info["machine"]
    footer = (f"{level}; test set: {len(test_keys)} molecules (same for every row); validation: "
              f"{len(parts['val'])} structures; config {Path(a.config).name}, {budget} per point; "
              f"{m['cores']} cores ({m['cpu']}){', GPU ' + m['gpu'] if m['gpu'] else ''}.")
    if references:
        footer += " Published, for scale: " + "; ".join(f"{name} {mae:g} µEh with {n:,} training structures"
                                                        for name, n, mae in references) + "."
    table = "\n".join(lines)
    print("\n" + table + "\n\n" + footer)
    (out / "learning_curve.md").write_text(table + "\n\n" + footer + "\n")
    learning_curve_plot(out / "learning_curve.png", [r["n_train"] for r in rows],
                        [r["test"]["h_mae_uEh"] for r in rows], label=f"eqchem, {level}", references=references,
                        floor=a.floor)
    print(f"\nwrote {out / 'learning_curve.json'}, {out / 'learning_curve.md'}, {out / 'learning_curve.png'}")


if __name__ == "__main__":
    main()
