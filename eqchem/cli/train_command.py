"""``eqchem train``: the Typer command over :func:`eqchem.training.train.train`."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from ..dft.baselines import baseline_help
from .common import console, user_errors
from .app import app


@app.command()
@user_errors
def train(
    data: List[Path] = typer.Argument(..., help="eqchem HDF5 data file(s) of one level of theory."),
    out: Path = typer.Option(..., "--out", "-o", help="Model file to write (.pt)."),
    config: Optional[Path] = typer.Option(None, "--config", help="YAML training config; flags override it."),
    val_fraction: Optional[float] = typer.Option(None, help="Fraction of molecules (structures when splitting "
                                                 "by structure) for validation (default 0.1)."),
    split_by: Optional[str] = typer.Option(None, help="auto (default): by molecule when the data holds two or "
                                           "more molecules, else by structure; molecule (no molecule on both "
                                           "sides); structure (frames of one molecule, MD17-style)."),
    split_file: Optional[Path] = typer.Option(None, help="JSON {train: \\[keys], val: \\[keys]} fixing the split."),
    max_epochs: Optional[int] = typer.Option(None, help="Maximum epochs."),
    max_time: Optional[float] = typer.Option(None, help="Wall-time budget in minutes for the whole run: training "
                                             "stops early enough for the last validation and readout refit to "
                                             "end within it (training time across --resume is capped at it too); "
                                             "the first epoch's time fixes how many steps the learning-rate "
                                             "schedule spans, once (kept across --resume)."),
    batch_size: Optional[int] = typer.Option(None, help="Molecules per batch (per device)."),
    lr: Optional[float] = typer.Option(None, help="Peak learning rate (AdamW)."),
    target: Optional[str] = typer.Option(None, help="hamiltonian or density_matrix."),
    baseline: Optional[str] = typer.Option(None, help="The guess Hamiltonian a Δ-model corrects (precompute it "
                                           "with `eqchem guess DATA --kind KIND`): " + baseline_help() + "."),
    devices: Optional[str] = typer.Option(None, help="auto, or number of devices (several -> DDP)."),
    num_nodes: Optional[int] = typer.Option(None, help="Nodes (multi-node DDP, e.g. under Slurm)."),
    accelerator: Optional[str] = typer.Option(None, help="auto, cpu, gpu."),
    precision: Optional[str] = typer.Option(None, help="32 or 64 (float32 default, float64 for exactness)."),
    seed: Optional[int] = typer.Option(None, help="Random seed."),
    init_model: Optional[Path] = typer.Option(None, "--init", help="Model file whose weights start the run "
                                              "(fine-tuning; same network and elements)."),
    eig_weight: Optional[float] = typer.Option(None, help="Weight of the orbital-energy loss (occupied + LUMO)."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the run's last checkpoint if there is one."),
    num_workers: Optional[int] = typer.Option(None, help="DataLoader worker processes that read and convert "
                                              "structures beside training (default 0: the training process "
                                              "itself; on a GPU node a few keep the GPU fed)."),
    profile: bool = typer.Option(False, "--profile", help="Time every training step (data wait, forward, backward, "
                                 "optimizer; CUDA-synchronized on a GPU) and print where the time goes: per "
                                 "epoch in the epoch lines, and a table at the end."),
    run_dir: Optional[Path] = typer.Option(None, help="Checkpoints, logs and the resolved config "
                                           "(train_config.yaml) (default: <out stem>_run/)."),
    show_config: bool = typer.Option(False, "--show-config", help="Print the resolved training config "
                                     "(config file + flags + defaults); it is always written to the run directory."),
):
    """Train the equivariant Hamiltonian model (PyTorch Lightning; CPU, GPU or DDP)."""
    from ..training.config import TrainConfig
    from ..training.train import train as run_train

    dtype = None if precision is None else ("float64" if precision.startswith("64") else "float32")
    cfg = TrainConfig.load(config, {
        "val_fraction": val_fraction, "split_by": split_by, "split_file": str(split_file) if split_file else None,
        "max_epochs": max_epochs, "max_time_minutes": max_time, "batch_size": batch_size, "lr": lr,
        "model.target": target, "model.baseline": baseline, "devices": devices, "num_nodes": num_nodes, "accelerator": accelerator,
        "dtype": dtype, "seed": seed, "resume": resume or None,
        "init_model": str(init_model.resolve()) if init_model else None, "eig_weight": eig_weight,
        "num_workers": num_workers, "profile": profile or None,
    })
    report = run_train(data, out, cfg, run_dir=run_dir, show_config=show_config,
                       log=lambda m: console.print(m, highlight=False, markup=False, soft_wrap=True))
    if report.rank != 0:
        return
    console.print(f"wrote {report.model_path}: {report.n_train} training / {report.n_val} validation structures, "
                  f"{report.epochs} epochs, {report.seconds:.0f} s", highlight=False, soft_wrap=True)
    for line in result_lines(report):
        console.print("  " + line, highlight=False, markup=False, soft_wrap=True)


def result_lines(report) -> list[str]:
    """The validation metrics of the best epoch, the last epoch and the shipped model, each named."""
    def fmt(d: dict, names) -> str:
        return "  ".join(f"{k} {d[k]:.4g}" if not k.endswith("_uEh") else f"{k} {d[k]:.1f}"
                         for k in dict.fromkeys(names) if k in d)

    extra = [k for k in report.last if k.startswith("val_") and k not in ("val_loss", "val_mae_uEh",
                                                                          "val_mae_diag_uEh", "val_mae_offd_uEh")]
    lines = []
    if report.best_epoch is not None:
        by = "" if report.monitor == "val_mae_uEh" else f" (by {report.monitor})"
        lines.append(f"best epoch {report.best_epoch}{by}: {fmt(report.best, ['val_mae_uEh', report.monitor])}")
    if report.last_epoch is not None and report.last:
        lines.append(f"last epoch {report.last_epoch}: {fmt(report.last, ['val_mae_uEh', report.monitor, *extra])}")
    if report.shipped:
        lines.append(f"shipped model ({report.shipped_label}): "
                     f"{fmt(report.shipped, ['val_mae_uEh', 'val_mae_diag_uEh', 'val_mae_offd_uEh'])}")
    return lines
