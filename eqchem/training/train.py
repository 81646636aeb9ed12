"""``train()``: data files -> trained model file (the library function behind ``eqchem train``)."""
from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import re
import sys
import time
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from .. import __version__, keys
from ..cpu import available_cores
from ..basis import BasisLayout
from ..data import store
from ..data.reader import H5Dataset
from ..errors import DataError
from .config import TrainConfig
from .data import (BlockDataset, SpectralSettings, bounded_sample, change_of_basis_of, collate, molecule_label,
                   resolve_split_by, split_keys)
from .budget import run_budget
from .index import DataIndex
from .profile import step_timer
from .stats import OutputStatistics


@dataclass
class TrainReport:
    """What a run did. ``metrics`` is the model file's ``metadata["metrics"]``: the validation metrics of
    the shipped model (``shipped``) plus ``best_epoch``, ``best_<monitor>`` and ``last_<metric>``."""

    model_path: Path
    metrics: dict = field(default_factory=dict)
    n_train: int = 0
    n_val: int = 0
    epochs: int = 0
    seconds: float = 0.0
    checkpoint_dir: Path | None = None
    rank: int = 0                     # global rank (DDP): only rank 0 writes and reports
    stop_reason: str = ""             # e.g. "reached --max-epochs 200"
    monitor: str = "val_mae_uEh"      # the metric that picks the best epoch
    best_epoch: int | None = None     # 1-based epoch of the best checkpoint (None: no validation)
    best: dict = field(default_factory=dict)     # that epoch's validation metrics (as logged in training)
    last_epoch: int | None = None     # 1-based epoch of the last validation
    last: dict = field(default_factory=dict)     # the last validation's metrics (as logged in training)
    shipped: dict = field(default_factory=dict)  # the shipped model re-validated (val_mae_uEh, _diag, _offd)
    shipped_label: str = ""           # what was shipped, e.g. "best checkpoint + final readout refit"


def open_datasets(paths: Sequence[str | Path]) -> list[H5Dataset]:
    """Open data files and check they share one level of theory."""
    if not paths:
        raise DataError("no data files given")
    dss = [H5Dataset(p) for p in paths]
    for ds in dss[1:]:
        store.check_compatible(dss[0].attrs, ds.attrs, str(ds.path))
    return dss


def data_hash(index: DataIndex, keys_used: Sequence[str]) -> str:
    """SHA-256 over (key, atomic numbers) of the training set (from the data index: no pass over the data)."""
    h = hashlib.sha256()
    for key in sorted(keys_used):
        h.update(key.encode())
        h.update(index.numbers(key).tobytes())  # int64, as read from the data file
    return h.hexdigest()[:16]


def _resolve_split(cfg: TrainConfig, dss, index: DataIndex, log) -> TrainConfig:
    """``cfg`` with ``split_by`` resolved ('auto': by molecule when the data holds two or more, else by
    structure, said in one line); an explicit by-molecule split of one molecule is refused."""
    if cfg.split_file:  # the split file decides; split_by is unused
        return cfg
    ident = index.identity
    by = resolve_split_by(ident, cfg.split_by)
    molecules = set(ident.values())
    if len(molecules) == 1:
        key = next(iter(ident))
        names = {index.name(k) for k in ident}
        label = molecule_label(ident[key], names if "" not in names else set(), index.numbers(key))
        files = ", ".join(str(d.path) for d in dss)
        if by == "molecule":
            raise DataError(f"{files} holds one molecule ({label}), which --split-by molecule cannot split into "
                            f"train/validation; use --split-by structure (or auto, the default) to split its "
                            f"{len(ident)} structures")
        if cfg.split_by == "auto":
            log(f"data holds one molecule ({label}): splitting its {len(ident)} structures, not molecules, "
                f"into train/validation (--split-by structure)")
    return replace(cfg, split_by=by)


def _as_list(samples):
    """collate_fn that keeps a batch a list of samples (statistics pass in worker processes)."""
    return samples


def _statistics(train_ds: BlockDataset, layout: BasisLayout, cfg: TrainConfig) -> OutputStatistics:
    """Output statistics from one pass over at most ``cfg.stats_max_structures`` training structures
    (converted in DataLoader workers when ``num_workers > 0``)."""
    stats = OutputStatistics(layout, cfg.model.cutoff)
    idx = bounded_sample(len(train_ds), cfg.stats_max_structures, cfg.seed)
    if cfg.num_workers > 0:
        own_rng = torch.Generator().manual_seed(cfg.seed)  # leaves the global RNG (epoch shuffles) untouched
        samples = (s for b in torch.utils.data.DataLoader(torch.utils.data.Subset(train_ds, idx.tolist()),
                                                          batch_size=8, collate_fn=_as_list, generator=own_rng,
                                                          num_workers=cfg.num_workers) for s in b)
    else:
        samples = (train_ds[int(i)] for i in idx)
    for s in samples:
        stats.add(s)
    return stats


def train(data_paths: Sequence[str | Path], out: str | Path, cfg: TrainConfig, run_dir: str | Path | None = None,
          log=print, show_config: bool = False) -> TrainReport:
    """Train a Hamiltonian model and write the model file ``out``; returns metrics on the validation set.

    ``log`` takes the run's one-line messages (the split, the data, per-epoch lines when stdout is not a
    terminal, why it stopped); ``show_config`` also logs the resolved config (always written to
    ``run_dir/train_config.yaml``). In DDP only rank 0 logs.

    Memory and start-up time do not grow with the data: structures are read and converted per batch
    (:class:`~eqchem.training.data.BlockDataset`, in ``num_workers`` processes; DDP ranks read their own
    part), at most ``cache_mb`` of converted samples stay in memory, splits come from a cached per-file index
    (:mod:`eqchem.training.index`), and the output statistics and readout refits use a seeded sample of at
    most ``stats_max_structures`` / ``refit_max_structures`` training structures (all of a smaller set).
    What still scales with the data: each validation pass (the validation set), and the index's first build
    (~0.5 ms per structure, once per data file). ``--max-time`` is a budget for the whole run
    (:mod:`eqchem.training.budget`). The PySCF<->e3nn change of basis comes from the data files and is
    stored in the model file, so training needs no PySCF for data written by eqchem with it.
    """
    import lightning as L
    from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
    from lightning.pytorch.utilities.rank_zero import rank_zero_only

    from ..inference.model_file import save_model
    from .module import HamiltonianTask

    t0 = time.time()
    if getattr(rank_zero_only, "rank", 0) != 0:  # a DDP worker process (LOCAL_RANK/RANK set by the launcher)
        def log(message):  # noqa: ARG001
            return None
    out = Path(out)
    run_dir = Path(run_dir) if run_dir else out.with_name(out.stem + "_run")
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    dss = open_datasets(data_paths)
    basis = dss[0].basis
    shells = {}
    for ds in dss:
        shells.update(ds.basis_shells())
    cob = change_of_basis_of(dss, {l for ls in shells.values() for l in ls})  # from the data files: no PySCF
    index = DataIndex(dss, run_dir)  # identities, atomic numbers, charges, spins: cached next to the data
    ident, where = index.identity, index.where
    cfg = _resolve_split(cfg, dss, index, log)
    if cfg.split_file:
        split = json.loads(Path(cfg.split_file).read_text())
        split = {part: [k for k in split.get(part, []) if k in where] for part in ("train", "val")}
        if not split["train"] or not split["val"]:
            raise DataError(f"split file {cfg.split_file} leaves no training or no validation structure in the data")
    else:
        split = split_keys(ident, cfg.val_fraction, 0.0, cfg.split_by, cfg.seed)
    elements = sorted({int(z) for k in split["train"] for z in index.numbers(k)})
    layout = BasisLayout(basis=basis, elements=tuple(elements), shells={z: tuple(shells[z]) for z in elements})
    val_keys = [k for k in split["val"] if set(int(z) for z in index.numbers(k)) <= set(elements)]

    guesses = None
    if cfg.model.baseline != "none":  # Δ-model: targets minus precomputed guesses (no PySCF here)
        from ..data.guess_file import GuessFile

        guesses = {ds.path: GuessFile(ds.path, cfg.model.baseline) for ds in dss}
        missing = [k for k in split["train"] + val_keys if k not in guesses[dss[where[k][0]].path]]
        if missing:
            raise DataError(f"{len(missing)} structures have no '{cfg.model.baseline}' guess (e.g. {missing[0]}); "
                            f"run: eqchem guess {' '.join(str(ds.path) for ds in dss)}")
    baseline_params = _guess_params(guesses)

    spectral = (SpectralSettings(cfg.eig_virtuals, cfg.model.correction_overlap_cutoff)
                if cfg.eig_weight > 0 or cfg.gap_weight > 0 else None)

    n_total = len(split["train"]) + len(val_keys)

    def make(keys_):  # the in-memory cache shared out in proportion to the structures, per process
        mb = cfg.cache_mb * len(keys_) / max(1, n_total) / max(1, cfg.num_workers)
        return BlockDataset([(dss[where[k][0]], k) for k in keys_], layout, cfg.model.pair_cutoff, cfg.model.target,
                            cache_mb=mb, guesses=guesses, spectral=spectral, change_of_basis=cob)

    train_ds, val_ds = make(split["train"]), make(val_keys)
    n_mol = len({ident[k] for k in split["train"]})
    log(f"data: {len(train_ds)} training / {len(val_ds)} validation structures, "
        f"{n_mol} training molecule{'s' if n_mol != 1 else ''}, elements {elements}, basis {basis}")
    dtype = torch.float64 if cfg.dtype == "float64" else torch.float32
    stats = _statistics(train_ds, layout, cfg)
    task = HamiltonianTask(layout.to_dict(), cfg.to_dict(), stats.avg_neighbors)
    stats.apply(task.model)
    if cfg.init_model:
        _init_from_model(task, layout, cfg)
        log(f"weights initialized from {cfg.init_model}")
    if task.ema is not None:
        task.ema.reset(task.model)

    def loader(ds, shuffle, persistent=True, generator=None):
        return torch.utils.data.DataLoader(ds, batch_size=cfg.batch_size, shuffle=shuffle,
                                           collate_fn=functools.partial(collate, dtype=dtype),
                                           num_workers=cfg.num_workers, generator=generator,
                                           persistent_workers=persistent and cfg.num_workers > 0)

    refit_idx = bounded_sample(len(train_ds), cfg.refit_max_structures, cfg.seed).tolist()

    def refit_loader(rank: int = 0, world: int = 1):
        """This process's part of the (bounded) refit sample: the readout refits' normal equations are
        summed over batches and, in DDP, over processes."""
        if len(refit_idx) == len(train_ds) and world == 1:
            return loader(train_ds, False, persistent=False)
        return loader(torch.utils.data.Subset(train_ds, refit_idx[rank::world]), False, persistent=False,
                      generator=torch.Generator().manual_seed(cfg.seed))

    # refits during training: on the training loader when they solve on all training structures (as before
    # the sample bound existed), else on this process's part of the sample
    task.refit_data = refit_loader if len(refit_idx) < len(train_ds) else None

    ckpt = ModelCheckpoint(dirpath=run_dir / "checkpoints", filename="best-{epoch}", monitor=cfg.monitor,
                           mode="min", save_last=True, save_top_k=1)
    early = EarlyStopping(monitor=cfg.monitor, mode="min", patience=cfg.early_stopping_patience)
    terminal = sys.stdout.isatty()
    timer = step_timer(log, t0, cfg.profile)
    epochs = epoch_lines(log, cfg.monitor, cfg.max_epochs, ckpt, print_lines=not terminal, profile=timer)
    callbacks = [ckpt, early, epochs]
    budget = None
    if cfg.max_time_minutes:  # --max-time for the whole run: stop early enough for what follows training
        budget = run_budget(cfg.max_time_minutes, t0, len(val_ds), cfg.refit_every > 0)
        callbacks.append(budget)
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

    loggers = [CSVLogger(run_dir, name="logs"), TensorBoardLogger(run_dir, name="tensorboard")]
    if terminal:
        from lightning.pytorch.callbacks import RichProgressBar

        callbacks.append(RichProgressBar())
    callbacks.append(timer)  # last: its step end follows the other callbacks' per-step work
    ckpt_path = resume_checkpoint(run_dir, cfg) if cfg.resume else None
    if ckpt_path:
        log(f"resuming from {ckpt_path}")
    elif any((run_dir / "checkpoints").glob("*.ckpt")):
        log(f"note: {run_dir / 'checkpoints'} holds an earlier run's checkpoints; this run starts afresh and "
            f"replaces them (--resume continues that run instead)")
    if getattr(rank_zero_only, "rank", 0) == 0:
        _record_config(run_dir, cfg)
    if show_config:
        log(f"resolved config:\n{cfg.dump().rstrip()}")
    log(f"resolved config written to {run_dir / 'train_config.yaml'}; checkpoints and logs in {run_dir}/")
    with quiet_lightning():
        trainer = L.Trainer(
            max_epochs=cfg.max_epochs,
            max_time={"minutes": cfg.max_time_minutes} if cfg.max_time_minutes else None,
            accelerator=cfg.accelerator, devices=_devices(cfg.devices), num_nodes=cfg.num_nodes,
            precision="64-true" if cfg.dtype == "float64" else "32-true",
            gradient_clip_val=cfg.grad_clip or None, callbacks=callbacks, logger=loggers,
            default_root_dir=run_dir, enable_progress_bar=terminal, enable_model_summary=False,
            check_val_every_n_epoch=cfg.val_every, log_every_n_steps=1, deterministic=False,
        )
        trainer.fit(task, loader(train_ds, True), loader(val_ds, False), ckpt_path=ckpt_path)
        stop_reason = _stop_reason(trainer, early, cfg, budget)
        log(f"stopped: {stop_reason}")
        earlier_seconds = task.resumed_train_seconds if ckpt_path else 0.0
        if earlier_seconds:
            log(f"training time includes {earlier_seconds / 60:.1f} min of the run it resumed")
        for line in timer.table(float(getattr(task, "refit_seconds", 0.0))):
            log(line)
        last = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val_")}
        last_epoch = epochs.last_epoch if epochs.last_epoch is not None else (int(trainer.current_epoch) or None)
        best = ckpt.best_model_path
        best_epoch = _epoch_of(best)
        best_metrics = dict(epochs.history.get(best_epoch, {})) if best_epoch is not None else {}
        if ckpt.best_model_score is not None:
            best_metrics[cfg.monitor] = float(ckpt.best_model_score)
        if best:
            task = HamiltonianTask.load_from_checkpoint(best, weights_only=False)
        net = task.inference_model().cpu()
        shipped_label = "best checkpoint" if best else "last epoch"
        if cfg.refit_every > 0:  # final readouts solved for the shipped (EMA) body on the refit sample
            net.refit_readouts(refit_loader(), cfg.refit_ridge)
            shipped_label += " + final readout refit"
        shipped = _validate_net(net, loader(val_ds, False, persistent=False)) if len(val_ds) else {}
    # the model file's metrics: the shipped model's (same keys as before), then the best and last epochs'
    metrics = {**last, **shipped}
    if best_epoch is not None:
        metrics["best_epoch"] = best_epoch
    for k in dict.fromkeys([cfg.monitor, "val_mae_uEh"]):
        if k in best_metrics:
            metrics[f"best_{k}"] = best_metrics[k]
    if last_epoch is not None:
        metrics["last_epoch"] = last_epoch
    for k in dict.fromkeys([cfg.monitor, "val_mae_uEh"]):
        if k in last:
            metrics[f"last_{k}"] = last[k]
    train_charges = sorted({index.charge(k) for k in split["train"]})
    train_spins = sorted({index.spin(k) for k in split["train"]})
    train_seconds = time.time() - t0 + earlier_seconds  # s, this run and the runs it resumed
    if trainer.global_rank == 0:
        natoms = [index.n_atoms(k) for k in split["train"]]
        meta = {
            "xc": dss[0].xc, "basis": basis,
            "xc_description": next((d.attrs[keys.XC_DESCRIPTION] for d in dss if d.attrs.get(keys.XC_DESCRIPTION)), ""),
            "pyscf_version": dss[0].attrs.get(keys.PYSCF_VERSION, ""),
            "grids_level": dss[0].attrs.get(keys.GRIDS_LEVEL), "conv_tol": dss[0].attrs.get(keys.CONV_TOL),
            "data_files": [str(p) for p in data_paths],
            "data_hash": data_hash(index, split["train"]),
            "n_train_structures": len(train_ds), "n_val_structures": len(val_ds),
            "n_train_molecules": n_mol,
            "charges": train_charges, "spins": train_spins,  # total charges / 2S the training data covered
            "atoms_range": [int(min(natoms)), int(max(natoms))] if natoms else None,
            "train_keys": sorted(split["train"]), "val_keys": sorted(val_keys),
            **({"baseline_params": baseline_params} if baseline_params else {}),
            "train_config": cfg.to_dict(), "metrics": metrics, "shipped_model": shipped_label,
            "stop_reason": stop_reason, "eqchem_version": __version__,
            "epochs": int(trainer.current_epoch), "train_seconds": train_seconds,
            "train_hardware": {"accelerator": type(trainer.accelerator).__name__,
                               "processes": int(trainer.world_size), "torch_threads": torch.get_num_threads(),
                               "cpu_cores": available_cores()},
        }
        meta = _plain(meta)
        save_model(out, net, meta, change_of_basis=cob)
    return TrainReport(out, metrics, len(train_ds), len(val_ds), int(trainer.current_epoch),
                       train_seconds, run_dir / "checkpoints", int(trainer.global_rank),
                       stop_reason=stop_reason, monitor=cfg.monitor, best_epoch=best_epoch, best=best_metrics,
                       last_epoch=last_epoch, last=last, shipped=shipped, shipped_label=shipped_label)


def _guess_params(guesses: dict | None) -> dict | None:
    """The fitted parameters shared by all guess files (``core-jx``), None for guesses without any; guess
    files computed with different parameters cannot train one model."""
    if not guesses:
        return None
    found = {json.dumps(g.params, sort_keys=True) for g in guesses.values()}
    if len(found) > 1:
        raise DataError(f"the guess files {', '.join(str(g.path) for g in guesses.values())} were computed with "
                        f"different fitted parameters; recompute them together (eqchem guess FILES... --kind ...)")
    return json.loads(found.pop())


def epoch_lines(log, monitor: str, max_epochs: int, checkpoint=None, print_lines: bool = True, profile=None):
    """A Lightning callback that keeps every validation's metrics (``history``: 1-based epoch -> metrics)
    and, with ``print_lines`` (stdout not a terminal: batch logs, CI), logs one flushed line per epoch::

        epoch 3/200  train_loss 0.00123  val_mae_uEh 812.4  best 790.1 (epoch 2)  41 s

    ``profile`` (a :func:`~eqchem.training.profile.step_timer` callback) adds the epoch's step profile
    (``step 152 ms: data 8% forward 40% backward 50% optimizer 2%``) when it has one.
    """
    from lightning.pytorch.callbacks import Callback

    class EpochLines(Callback):
        def __init__(self):
            self.history: dict[int, dict] = {}
            self.last_epoch: int | None = None
            self.best: tuple[float, int] | None = None  # (monitored value, 1-based epoch)
            self._t0 = time.monotonic()
            self._loss = [0.0, 0]

        def on_train_start(self, trainer, pl_module):
            self._t0 = time.monotonic()
            if checkpoint is not None and checkpoint.best_model_score is not None:  # resumed: the run's best so far
                epoch = _epoch_of(checkpoint.best_model_path)
                if epoch is not None:
                    self.best = (float(checkpoint.best_model_score), epoch)

        def on_train_epoch_start(self, trainer, pl_module):
            self._loss = [0.0, 0]

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
            if torch.is_tensor(loss):
                n = int(batch["num_molecules"]) if "num_molecules" in batch else 1
                self._loss[0] += float(loss.detach()) * n
                self._loss[1] += n

        def on_validation_end(self, trainer, pl_module):
            if trainer.sanity_checking:
                return
            epoch = int(trainer.current_epoch) + 1
            vals = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val_")}
            self.history[epoch] = vals
            self.last_epoch = epoch
            v = vals.get(monitor)
            if v is not None and np.isfinite(v) and (self.best is None or v < self.best[0]):
                self.best = (v, epoch)

        def on_train_epoch_end(self, trainer, pl_module):
            if not print_lines or not trainer.is_global_zero:
                return
            epoch = int(trainer.current_epoch) + 1
            parts = [f"epoch {epoch}/{max_epochs}"]
            if self._loss[1]:
                parts.append(f"train_loss {self._loss[0] / self._loss[1]:.3g}")
            vals = self.history.get(epoch)
            if vals:
                for k in dict.fromkeys(["val_mae_uEh", monitor]):
                    if k in vals:
                        parts.append(f"{k} {_fmt_metric(k, vals[k])}")
            if self.best is not None:
                name = "" if monitor == "val_mae_uEh" else f"{monitor} "
                parts.append(f"best {name}{_fmt_metric(monitor, self.best[0])} (epoch {self.best[1]})")
            parts.append(f"{time.monotonic() - self._t0:.0f} s")
            summary = profile.epoch_summary() if profile is not None else ""
            if summary:
                parts.append(summary)
            log("  ".join(parts))
            sys.stdout.flush()

    return EpochLines()


def _fmt_metric(name: str, value: float) -> str:
    return f"{value:.1f}" if name.endswith("_uEh") else f"{value:.3g}"


# Lightning messages a user cannot act on (regular expressions matched at the start of the message)
_LIGHTNING_NOISE = (
    r".*does not have many workers",                      # num_workers advice (config num_workers; CPUs are few)
    r".*smaller than the logging interval",               # log_every_n_steps
    r".*isinstance\(treespec, LeafSpec\)",                # a deprecation inside Lightning itself
    r".*The `srun` command is available on your system",  # Slurm hint for single-process runs
    r".*Checkpoint directory .* exists and is not empty",  # said in one line before the run
)
_LIGHTNING_LOGGERS = ("lightning.pytorch", "lightning.fabric", "pytorch_lightning", "lightning_fabric")


@contextlib.contextmanager
def quiet_lightning():
    """Silence Lightning's informational lines (accelerator availability, tips, LOCAL_RANK, 'Trainer.fit
    stopped') and a few of its warnings a user cannot act on; other warnings and errors still show."""
    loggers = [logging.getLogger(n) for n in _LIGHTNING_LOGGERS]
    levels = [lg.level for lg in loggers]
    with warnings.catch_warnings():
        for pattern in _LIGHTNING_NOISE:
            warnings.filterwarnings("ignore", message=pattern)
        for lg in loggers:
            lg.setLevel(logging.WARNING)
        try:
            yield
        finally:
            for lg, level in zip(loggers, levels):
                lg.setLevel(level)


def _epoch_of(checkpoint_path: str | None) -> int | None:
    """1-based epoch of a 'best-epoch=N.ckpt' checkpoint (Lightning counts from 0)."""
    m = re.search(r"epoch=(\d+)", Path(checkpoint_path).name) if checkpoint_path else None
    return int(m.group(1)) + 1 if m else None


def _stop_reason(trainer, early, cfg: TrainConfig, budget=None) -> str:
    """Why fit() returned, in words naming the option that decided it."""
    from lightning.pytorch.callbacks import Timer

    if trainer.interrupted:
        return f"interrupted at epoch {int(trainer.current_epoch) + 1}"
    name = getattr(getattr(early, "stopping_reason", None), "name", "")
    if name not in ("", "NOT_STOPPED") or early.stopped_epoch > 0:
        at = f"early stopping at epoch {int(early.stopped_epoch) + 1}"
        name = name or "PATIENCE_EXHAUSTED"
        if name == "PATIENCE_EXHAUSTED":
            unit = ("epoch" if cfg.val_every == 1 else "validation") + ("s" if early.patience != 1 else "")
            return f"{at} ({cfg.monitor} did not improve for {early.patience} {unit})"
        if name == "NON_FINITE_METRIC":
            return f"{at} ({cfg.monitor} is not finite)"
        return f"{at} ({early.stopping_reason_message or name.lower()})"
    if budget is not None and budget.stopped:
        return (f"reached --max-time {cfg.max_time_minutes:g} min (after {int(trainer.current_epoch)} epochs; "
                f"{budget.reserve:.0f} s kept for the last validation and readout refit)")
    timer = next((cb for cb in trainer.callbacks if isinstance(cb, Timer)), None)
    if cfg.max_time_minutes and timer is not None and (timer.time_remaining() or 0.0) <= 0:
        return f"reached --max-time {cfg.max_time_minutes:g} min (after {int(trainer.current_epoch)} epochs)"
    if int(trainer.current_epoch) >= int(trainer.max_epochs or 0):
        return f"reached --max-epochs {trainer.max_epochs}"
    return f"after {int(trainer.current_epoch)} epochs"


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
                      "num_workers", "early_stopping_patience", "cache_mb", "profile"}


def resume_checkpoint(run_dir: Path, cfg: TrainConfig) -> str | None:
    """Newest checkpoint of a run (Lightning's Slurm 'hpc_ckpt_*' saved on the requeue signal, or
    'last.ckpt'); refuses to resume a run whose configuration changed (``cfg`` as train() resolves it)."""
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
        ignore = set(_RESUMABLE_CHANGES)
        # train() saves and compares split_by resolved ('auto' -> molecule or structure for this data);
        # an unresolved 'auto' on either side resolves alike on the same data, and a split file makes it unused
        if new.get("split_file") or "auto" in (old.get("split_by"), new.get("split_by")):
            ignore.add("split_by")
        changed = _changed_keys(old, new, ignore=ignore)
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
    sums, counts = {"diag": 0.0, "offd": 0.0}, {"diag": 0, "offd": 0}  # streamed: memory independent of the set
    for batch in loader:
        pred = net(batch["numbers"], batch["pos"], batch["batch"], batch["pair_index"])
        err = block_errors(pred, batch)
        for part in sums:
            sums[part] += float(err[part].abs().double().sum())
            counts[part] += err[part].numel()
    d, o = sums["diag"] / max(1, counts["diag"]), sums["offd"] / max(1, counts["offd"])
    return {"val_mae_uEh": (sums["diag"] + sums["offd"]) / max(1, counts["diag"] + counts["offd"]) * MICRO_HARTREE,
            "val_mae_diag_uEh": d * MICRO_HARTREE,
            "val_mae_offd_uEh": o * MICRO_HARTREE if counts["offd"] else float("nan")}


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
