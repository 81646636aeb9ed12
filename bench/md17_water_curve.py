"""Learning curve of a water model on MD17-style water (PBE/def2-SVP): H MAE against training structures.

Runs ``bench/md17_water.py`` once per training-set size (default 50, 100, 200, 500, 1000; same 50
validation and 200 test structures at every size: the geometry seeds make a smaller training set a
subset of a larger one) with one config (default ``bench/md17_water_corej.yaml``, the fast mode: Δ on
the grid-free core-j guess, frozen random body, readouts solved exactly: each point is trained to its
optimum by one ridge solve, not for a fixed time). Every point has its own folder
``--out``/n<size>/ (its table, json, model); DFT labels already computed are reused by copying the
previous point's data folder first (for the first point, ``--reuse``, default
``bench/results/md17_water_corej/work``: the data
file and its guess files with their segment folders, except core-jx guesses, whose atomic potentials each
point fits on its own training structures), so only new structures are computed.

Writes ``md17_water_curve.{md,json,png}`` to ``--out``: our points, the peers' published MD17 water
figures (trained on the MD17 split; plotted at their training size where the papers give it), the floor.

    python bench/md17_water_curve.py                       # 5 points, ~30-60 min on 2 cores
    python bench/md17_water_curve.py --config bench/md17_water_corej_wide.yaml \
        --out bench/results/md17_water_curve_wide          # heads twice as wide: the fast-mode recipe
    python bench/md17_water_curve.py --sizes 50 100 200     # fewer
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from learning_curve import ROOT, machine  # noqa: E402
from md17_water import FLOOR_UEH, PEERS  # noqa: E402

PEER_TRAIN_SIZE = {"SchNOrb": 500, "PhiSNet": 500, "QHNet": 500}  # MD17 water training structures in the papers


def reuse_data(src: Path, work: Path) -> None:
    """Copy the data and guess files (with their segments folders) of ``src`` into ``work`` if absent."""
    work.mkdir(parents=True, exist_ok=True)
    if not src.is_dir():
        return
    for p in src.iterdir():
        if not p.name.startswith("water_") or (work / p.name).exists():
            continue
        if ".guess-core-jx." in p.name:  # fitted on that run's training structures: each point fits its own
            continue
        if p.is_dir() and p.name.endswith(".segments"):
            shutil.copytree(p, work / p.name)
        elif p.is_file() and p.suffix == ".h5":
            shutil.copy2(p, work / p.name)


def run_point(n: int, a, reuse: Path) -> dict:
    out = a.out / f"n{n}"
    reuse_data(reuse, out / "work")
    cmd = [sys.executable, str(ROOT / "bench" / "md17_water.py"), "--config", str(a.config), "--n-train", str(n),
           "--n-val", str(a.n_val), "--n-test", str(a.n_test), "--out", str(out)]
    print("$ " + " ".join(cmd[1:]), flush=True)
    if subprocess.run(cmd).returncode != 0:
        sys.exit(f"md17_water.py failed for {n} training structures")
    return json.loads((out / "md17_water.json").read_text())


def plot(points: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4))
    ax.loglog([p["n_train"] for p in points], [p["h_mae_uEh"] for p in points], "o-", label="eqchem (this run)")
    for i, (name, h, _) in enumerate(PEERS):
        ax.scatter([PEER_TRAIN_SIZE[name]], [h], marker="s^D"[i % 3], s=50, label=f"{name} (published)")
    ax.axhline(FLOOR_UEH, color="grey", ls="--", lw=1, label=f"floor {FLOOR_UEH:g} µEh")
    ax.set_xlabel("training structures")
    ax.set_ylabel("H MAE on 200 test structures (µEh)")
    ax.set_title("MD17-style water, PBE/def2-SVP")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[50, 100, 200, 500, 1000])
    p.add_argument("--config", type=Path, default=ROOT / "bench" / "md17_water_corej.yaml")
    p.add_argument("--n-val", type=int, default=50)
    p.add_argument("--n-test", type=int, default=200)
    p.add_argument("--reuse", type=Path, default=ROOT / "bench" / "results" / "md17_water_corej" / "work")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "md17_water_curve")
    a = p.parse_args()
    points = []
    reuse = a.reuse
    for n in sorted(a.sizes):
        info = run_point(n, a, reuse)
        reuse = a.out / f"n{n}" / "work"  # the next, larger point computes only its new structures
        t = info["test"]
        points.append({"n_train": info["counts_used"]["train"], "h_mae_uEh": t["h_mae_uEh"],
                       "h_mae_diag_uEh": t["h_mae_diag_uEh"], "h_mae_offd_uEh": t["h_mae_offd_uEh"],
                       "eps_occ_mae_uEh": t["eps_occ_mae_uEh"], "gap_mae_ev": t["gap_mae_ev"],
                       "train_seconds": info["train_seconds"], "epochs": info["epochs"]})
    lines = ["| training structures | H MAE (µEh) | diag / off-diag (µEh) | ε_occ MAE (µEh) | gap MAE (meV) | training min |",
             "|---:|---:|---:|---:|---:|---:|"]
    for q in points:
        lines.append(f"| {q['n_train']} | {q['h_mae_uEh']:.1f} | {q['h_mae_diag_uEh']:.1f} / {q['h_mae_offd_uEh']:.1f} | "
                     f"{q['eps_occ_mae_uEh']:.1f} | {1000 * q['gap_mae_ev']:.2f} | {q['train_seconds'] / 60:.1f} |")
    m = machine()
    peers = ", ".join(f"{name} {h:g}" for name, h, _ in PEERS)
    footer = (f"Config {a.config.name}; {a.n_val} validation and {a.n_test} test structures at every size; "
              f"{m['cores']} cores ({m['cpu']}), CPU only. Peers (published, MD17 water, {PEER_TRAIN_SIZE['QHNet']} "
              f"training structures): {peers} µEh; floor {FLOOR_UEH:g} µEh. Each point is one exact readout solve "
              f"on a frozen random body (trained to its optimum); training minutes include the statistics pass "
              f"and were measured on a machine shared with other jobs.")
    text = "\n".join(lines) + "\n\n" + footer + "\n\n![learning curve](md17_water_curve.png)\n"
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "md17_water_curve.md").write_text(text)
    (a.out / "md17_water_curve.json").write_text(json.dumps({"points": points, "config": str(a.config),
                                                               "machine": m}, indent=1))
    plot(points, a.out / "md17_water_curve.png")
    print(text)


if __name__ == "__main__":
    main()
