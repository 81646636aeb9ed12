"""``train()``: data files -> trained model file (the library function behind ``eqchem train``)."""
from __future__ import annotations

import hashlib
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from .. import __version__, keys
from ..basis import BasisLayout
from ..data import store
from ..data.reader import H5Dataset
from ..errors import DataError
from .config import TrainConfig
from .data import BlockDataset, SpectralSettings, collate, molecule_identity, split_keys


@dataclass
class TrainReport:
    model_path: Path
    metrics: dict = field(default_factory=dict)
    n_train: int = 0
    n_val: int = 0
    epochs: int = 0
    seconds: float = 0.0
    checkpoint_dir: Path | None = None
    rank: int = 0                     # global rank (DDP): only rank 0 writes and reports


def open_datasets(paths: Sequence[str | Path]) -> list[H5Dataset]:
    """Open data files and check they share one level of theory."""
    if not paths:
        raise DataError("no data files given")
    dss = [H5Dataset(p) for p in paths]
    for ds in dss[1:]:
        store.check_compatible(dss[0].attrs, ds.attrs, str(ds.path))
    return dss


def data_hash(dss: Sequence[H5Dataset], keys_used: Sequence[tuple[int, str]]) -> str:
    """SHA-256 over (file level of theory, key, atomic numbers, rounded positions) of the training set."""
    h = hashlib.sha256()
    for di, key in sorted(keys_used, key=lambda t: t[1]):
        rec_numbers = dss[di].numbers(key)
        h.update(key.encode())
        h.update(rec_numbers.tobytes())
    return h.hexdigest()[:16]


def _identities(dss: Sequence[H5Dataset]) -> tuple[dict[str, str], dict[str, tuple[int, str]]]:
    ident, where = {}, {}
    for di, ds in enumerate(dss):
        f = ds._h5()
        for k in ds.keys():
            if k in where:
                continue  # the same key in two files: the first file's copy is used
            g = f[keys.MOLECULES][k]
            attrs = {a: (v.decode() if isinstance(v, bytes) else v) for a, v in g.attrs.items()}
            ident[k] = molecule_identity(attrs, np.asarray(g[keys.ATOMIC_NUMBERS]), k)
            where[k] = (di, k)
    return ident, where


def _avg_neighbors(samples, cutoff: float) -> float:
    counts = []
    for s in samples:
        d = np.linalg.norm(s.pos[:, None] - s.pos[None], axis=-1)
        counts.append(((d < cutoff).sum(1) - 1).mean())
    return float(max(1.0, np.mean(counts)))


def train(data_paths: Sequence[str | Path], out: str | Path, cfg: TrainConfig, run_dir: str | Path | None = None,
          log=print) -> TrainReport:
    """Train a Hamiltonian model and write the model file ``out``; returns metrics on the validation set."""
    import time

    import lightning as L
    from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint

    from ..inference.model_file import save_model
    from .module import HamiltonianTask

    t0 = time.time()
    out = Path(out)
    run_dir = Path(run_dir) if run_dir else out.with_name(out.stem + "_run")
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    dss = open_datasets(data_paths)
    basis = dss[0].basis
    shells = {}
    for ds in dss:
        shells.update(ds.basis_shells())
    ident, where = _identities(dss)
    if cfg.split_file:
        split = json.loads(Path(cfg.split_file).read_text())
        split = {part: [k for k in split.get(part, []) if k in where] for part in ("train", "val")}
        if not split["train"] or not split["val"]:
            raise DataError(f"split file {cfg.split_file} leaves no training or no validation structure in the data")
    else:
        split = split_keys(ident, cfg.val_fraction, 0.0, cfg.split_by, cfg.seed)
    elements = sorted({int(z) for k in split["train"] for z in dss[where[k][0]].numbers(k)})
    layout = BasisLayout(basis=basis, elements=tuple(elements), shells={z: tuple(shells[z]) for z in elements})
    val_keys = [k for k in split["val"]
                if set(int(z) for z in dss[where[k][0]].numbers(k)) <= set(elements)]

    guesses = None
    if cfg.model.baseline != "none":  # Δ-model: targets minus precomputed guesses (no PySCF here)
        from ..data.guess_file import GuessFile

        guesses = {ds.path: GuessFile(ds.path, cfg.model.baseline) for ds in dss}
        missing = [k for k in split["train"] + val_keys if k not in guesses[dss[where[k][0]].path]]
        if missing:
            raise DataError(f"{len(missing)} structures have no '{cfg.model.baseline}' guess (e.g. {missing[0]}); "
                            f"run: eqchem guess {' '.join(str(ds.path) for ds in dss)}")

    spectral = (SpectralSettings(cfg.eig_virtuals, cfg.model.correction_overlap_cutoff)
                if cfg.eig_weight > 0 or cfg.gap_weight > 0 else None)

    def make(keys_):
        return BlockDataset([(dss[where[k][0]], k) for k in keys_], layout, cfg.model.pair_cutoff, cfg.model.target,
                            guesses=guesses, spectral=spectral)

    train_ds, val_ds = make(split["train"]), make(val_keys)
    log(f"data: {len(train_ds)} training / {len(val_ds)} validation structures, "
        f"{len({ident[k] for k in split['train']})} training molecules, elements {elements}, basis {basis}")
    dtype = torch.float64 if cfg.dtype == "float64" else torch.float32
    stats_samples = [train_ds[i] for i in range(len(train_ds))]
    task = HamiltonianTask(layout.to_dict(), cfg.to_dict(), _avg_neighbors(stats_samples, cfg.model.cutoff))
    species = task.model.species_of_z
    task.model.set_output_statistics(
        torch.from_numpy(np.concatenate([s.diag for s in stats_samples])),
        species[torch.from_numpy(np.concatenate([s.numbers for s in stats_samples]))],
        torch.from_numpy(np.concatenate([s.offd for s in stats_samples])) if stats_samples else torch.zeros(0),
    )
    if cfg.init_model:
        _init_from_model(task, layout, cfg)
        log(f"weights initialized from {cfg.init_model}")
    if task.ema is not None:
        task.ema.reset(task.model)

    def loader(ds, shuffle):
        return torch.utils.data.DataLoader(ds, batch_size=cfg.batch_size, shuffle=shuffle,
                                           collate_fn=lambda s: collate(s, dtype), num_workers=cfg.num_workers,
                                           persistent_workers=cfg.num_workers > 0)

    ckpt = ModelCheckpoint(dirpath=run_dir / "checkpoints", filename="best-{epoch}", monitor=cfg.monitor,
                           mode="min", save_last=True, save_top_k=1)
    callbacks = [ckpt, EarlyStopping(monitor=cfg.monitor, mode="min", patience=cfg.early_stopping_patience)]
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

    loggers = [CSVLogger(run_dir, name="logs"), TensorBoardLogger(run_dir, name="tensorboard")]
    if sys.stdout.isatty():
        from lightning.pytorch.callbacks import RichProgressBar

        callbacks.append(RichProgressBar())
    trainer = L.Trainer(
        max_epochs=cfg.max_epochs,
        max_time={"minutes": cfg.max_time_minutes} if cfg.max_time_minutes else None,
        accelerator=cfg.accelerator, devices=_devices(cfg.devices), num_nodes=cfg.num_nodes,
        precision="64-true" if cfg.dtype == "float64" else "32-true",
        gradient_clip_val=cfg.grad_clip or None, callbacks=callbacks, logger=loggers,
        default_root_dir=run_dir, enable_progress_bar=sys.stdout.isatty(), enable_model_summary=False,
        check_val_every_n_epoch=cfg.val_every, log_every_n_steps=1, deterministic=False,
    )
    ckpt_path = resume_checkpoint(run_dir, cfg) if cfg.resume else None
    if ckpt_path:
        log(f"resuming from {ckpt_path}")
    _record_config(run_dir, cfg)
    trainer.fit(task, loader(train_ds, True), loader(val_ds, False), ckpt_path=ckpt_path)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val_")}
    best = ckpt.best_model_path
    if best:
        task = HamiltonianTask.load_from_checkpoint(best, weights_only=False)
    net = task.inference_model().cpu()
    if best:
        metrics = {**metrics, **_validate_net(net, loader(val_ds, False))}
    if cfg.refit_every > 0:  # final readouts solved for the shipped (EMA) body on all training data
        net.refit_readouts(loader(train_ds, False), cfg.refit_ridge)
        metrics = {**metrics, **_validate_net(net, loader(val_ds, False))}
    if trainer.global_rank == 0:
        natoms = [len(s.numbers) for s in stats_samples]
        meta = {
            "xc": dss[0].xc, "basis": basis,
            "xc_description": next((d.attrs[keys.XC_DESCRIPTION] for d in dss if d.attrs.get(keys.XC_DESCRIPTION)), ""),
            "pyscf_version": dss[0].attrs.get(keys.PYSCF_VERSION, ""),
            "grids_level": dss[0].attrs.get(keys.GRIDS_LEVEL), "conv_tol": dss[0].attrs.get(keys.CONV_TOL),
            "data_files": [str(p) for p in data_paths],
            "data_hash": data_hash(dss, [where[k] for k in split["train"]]),
            "n_train_structures": len(train_ds), "n_val_structures": len(val_ds),
            "n_train_molecules": len({ident[k] for k in split["train"]}),
            "atoms_range": [int(min(natoms)), int(max(natoms))] if natoms else None,
            "train_keys": sorted(split["train"]), "val_keys": sorted(val_keys),
            "train_config": cfg.to_dict(), "metrics": metrics, "eqchem_version": __version__,
            "epochs": int(trainer.current_epoch), "train_seconds": time.time() - t0,
            "train_hardware": {"accelerator": type(trainer.accelerator).__name__,
                               "processes": int(trainer.world_size), "torch_threads": torch.get_num_threads(),
                               "cpu_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                               else os.cpu_count()},
        }
        meta = _plain(meta)
        save_model(out, net, meta)
    return TrainReport(out, metrics, len(train_ds), len(val_ds), int(trainer.current_epoch),
                       time.time() - t0, run_dir / "checkpoints", int(trainer.global_rank))


def _init_from_model(task, layout: BasisLayout, cfg: TrainConfig) -> None:
    """Start from the weights of a trained model file (fine-tuning): same basis layout and network."""
    from ..inference.model_file import load_model
    from ..model.hamiltonian import load_portable_state_dict

    src = load_model(cfg.init_model)
    if src.net.layout.to_dict() != layout.to_dict():
        raise DataError(f"--init model {cfg.init_model} covers a different basis layout (elements "
                        f"{list(src.net.layout.elements)}) than this training data ({list(layout.elements)})")
    trained = TrainConfig.training_part({"model": src.net.config.to_dict()})["model"]
    wanted = TrainConfig.training_part({"model": cfg.model.to_dict()})["model"]
    changed = _changed_keys(trained, wanted)
    if changed:
        raise DataError(f"--init model {cfg.init_model} has a different network ({', '.join(changed)})")
    load_portable_state_dict(task.model, {k: v.to(next(task.model.parameters()).dtype) if v.is_floating_point() else v
                                          for k, v in src.net.state_dict().items()})


def _changed_keys(old: dict, new: dict, ignore=frozenset()) -> list[str]:
    """Sorted keys whose values differ between two config dicts (a key missing on one side differs)."""
    return sorted(k for k in set(old) | set(new) if k not in ignore and old.get(k) != new.get(k))


_RESUMABLE_CHANGES = {"resume", "max_epochs", "max_time_minutes", "devices", "num_nodes", "accelerator",
                      "num_workers", "early_stopping_patience"}


def resume_checkpoint(run_dir: Path, cfg: TrainConfig) -> str | None:
    """Newest checkpoint of a run (Lightning's Slurm 'hpc_ckpt_*' saved on the requeue signal, or
    'last.ckpt'); refuses to resume a run whose configuration changed."""
    import yaml

    saved = run_dir / "train_config.yaml"
    if saved.exists():
        old = yaml.safe_load(saved.read_text())
        try:  # keys added to the config since that run take their defaults
            old = TrainConfig.from_dict(old).to_dict()
        except Exception:  # noqa: BLE001 - an unknown or broken saved config: compare as stored
            pass
        # prediction-time settings may change between runs
        old, new = TrainConfig.training_part(old), TrainConfig.training_part(cfg.to_dict())
        changed = _changed_keys(old, new, ignore=_RESUMABLE_CHANGES)
        if changed:
            raise DataError(f"cannot resume {run_dir}: the training config changed ({', '.join(changed)}); "
                            f"use a new --run-dir or the original settings")
    candidates = list(run_dir.glob("hpc_ckpt_*.ckpt")) + list((run_dir / "checkpoints").glob("last*.ckpt"))
    return str(max(candidates, key=lambda p: p.stat().st_mtime)) if candidates else None


def _record_config(run_dir: Path, cfg: TrainConfig) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "train_config.yaml").write_text(cfg.dump())


@torch.no_grad()
def _validate_net(net, loader) -> dict:
    """Validation MAE (µEh) of a network, all / diagonal / off-diagonal elements."""
    from ..units import MICRO_HARTREE
    from .module import block_errors

    net = net.eval()
    d_all, o_all = [], []
    for batch in loader:
        pred = net(batch["numbers"], batch["pos"], batch["batch"], batch["pair_index"])
        err = block_errors(pred, batch)
        d_all.append(err["diag"].abs())
        o_all.append(err["offd"].abs())
    d, o = torch.cat(d_all), torch.cat(o_all)
    return {"val_mae_uEh": float(torch.cat([d, o]).mean() * MICRO_HARTREE),
            "val_mae_diag_uEh": float(d.mean() * MICRO_HARTREE),
            "val_mae_offd_uEh": float(o.mean() * MICRO_HARTREE) if o.numel() else float("nan")}


def _devices(devices: str):
    if devices in ("auto", None):
        return "auto"
    try:
        return int(devices)
    except ValueError:
        return devices


def _plain(x):
    """JSON-able copy (numpy scalars -> Python) so the model file loads with weights_only=True."""
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if isinstance(x, np.generic):
        return x.item()
    return x
