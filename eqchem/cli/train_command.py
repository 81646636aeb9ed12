"""``eqchem train``: the Typer command over :func:`eqchem.training.train.train`."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from .common import console, user_errors
from .main import app


@app.command()
@user_errors
def train(
    data: List[Path] = typer.Argument(..., help="eqchem HDF5 data file(s) of one level of theory."),
    out: Path = typer.Option(..., "--out", "-o", help="Model file to write (.pt)."),
    config: Optional[Path] = typer.Option(None, "--config", help="YAML training config; flags override it."),
    val_fraction: Optional[float] = typer.Option(None, help="Fraction of molecules for validation."),
    split_by: Optional[str] = typer.Option(None, help="'molecule' (default) or 'structure' (MD17-style)."),
    split_file: Optional[Path] = typer.Option(None, help="JSON {train: [keys], val: [keys]} fixing the split."),
    max_epochs: Optional[int] = typer.Option(None, help="Maximum epochs."),
    max_time: Optional[float] = typer.Option(None, help="Wall-time limit in minutes."),
    batch_size: Optional[int] = typer.Option(None, help="Molecules per batch (per device)."),
    lr: Optional[float] = typer.Option(None, help="Peak learning rate (AdamW)."),
    target: Optional[str] = typer.Option(None, help="hamiltonian or density_matrix."),
    baseline: Optional[str] = typer.Option(None, help="none, or minao-fock: a Δ-model correcting a guess "
                                                       "Hamiltonian (precompute it with `eqchem guess DATA`)."),
    devices: Optional[str] = typer.Option(None, help="auto, or number of devices (several -> DDP)."),
    num_nodes: Optional[int] = typer.Option(None, help="Nodes (multi-node DDP, e.g. under Slurm)."),
    accelerator: Optional[str] = typer.Option(None, help="auto, cpu, gpu."),
    precision: Optional[str] = typer.Option(None, help="32 or 64 (float32 default, float64 for exactness)."),
    seed: Optional[int] = typer.Option(None, help="Random seed."),
    init_model: Optional[Path] = typer.Option(None, "--init", help="Model file whose weights start the run "
                                              "(fine-tuning; same network and elements)."),
    eig_weight: Optional[float] = typer.Option(None, help="Weight of the orbital-energy loss (occupied + LUMO)."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the run's last checkpoint if there is one."),
    run_dir: Optional[Path] = typer.Option(None, help="Checkpoints and logs (default: <out stem>_run/)."),
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
    })
    console.print("[bold]resolved config[/]\n" + cfg.dump(), highlight=False)
    report = run_train(data, out, cfg, run_dir=run_dir, log=lambda m: console.print(m, highlight=False))
    if report.rank != 0:
        return
    console.print(f"wrote {report.model_path}: {report.n_train} training / {report.n_val} validation structures, "
                  f"{report.epochs} epochs, {report.seconds:.0f} s", highlight=False)
    for k, v in report.metrics.items():
        console.print(f"  {k:22s} {v:12.2f}", highlight=False)
