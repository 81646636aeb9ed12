"""``train()``: data files -> trained model file (the library function behind ``eqchem train``), in four
steps: :func:`prepare_data` (data files, split, basis layout, datasets) -> :func:`build_task` (the network
and its output statistics) -> :func:`fit` (Lightning) -> :func:`~eqchem.training.finish.finalize` (the
network to ship, its card, the model file)."""
from __future__ import annotations

import functools
import json
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Sequence

import torch

from ..basis import BasisLayout
from ..data.reader import H5Dataset
from ..data.split_file import read_split
from ..errors import DataError
from .budget import run_budget
from .callbacks import epoch_lines, quiet_lightning, stop_reason
from .config import TrainConfig
from .data import (BlockDataset, SpectralSettings, bounded_sample, change_of_basis_of, collate, molecule_label,
                   resolve_split_by, split_keys)
from .finish import TrainReport, finalize
from .index import DataIndex
from .profile import step_timer
from .runs import init_from_model, record_config, resume_checkpoint
from .stats import training_statistics


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
    (once per data file). ``--max-time`` is a budget for the whole run
    (:mod:`eqchem.training.budget`); the learning rate follows the optimizer step alone
    (:mod:`eqchem.training.schedule`). The PySCF<->e3nn change of basis comes from the data files and is
    stored in the model file, so training needs no PySCF for data written by eqchem with it.
    """
    import lightning as L
    from lightning.pytorch.utilities.rank_zero import rank_zero_only

    t0 = time.time()
    if getattr(rank_zero_only, "rank", 0) != 0:  # a DDP worker process (LOCAL_RANK/RANK set by the launcher)
        def log(message):  # noqa: ARG001
            return None
    out = Path(out)
    run_dir = Path(run_dir) if run_dir else out.with_name(out.stem + "_run")
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    data = prepare_data(data_paths, cfg, run_dir, log)
    task = build_task(data, log)
    fitted = fit(task, data, t0, log, show_config)
    return finalize(fitted, data, out, t0, log)


# -- 1. the data ------------------------------------------------------------------------------------------------
@dataclass
class PreparedData:
    """The data of a run: files, split, basis layout and the training / validation datasets. ``cfg`` is the
    run's config with ``split_by`` resolved."""

    cfg: TrainConfig
    paths: list
    run_dir: Path
    datasets: list
    index: DataIndex
    layout: BasisLayout
    change_of_basis: dict
    train_keys: list
    val_keys: list
    train_ds: BlockDataset
    val_ds: BlockDataset
    n_molecules: int = 0
    baseline_params: dict | None = None
    refit_idx: list = field(default_factory=list)

    @property
    def dtype(self) -> torch.dtype:
        return torch.float64 if self.cfg.dtype == "float64" else torch.float32

    def loader(self, ds, shuffle: bool, persistent: bool = True, generator=None):
        return torch.utils.data.DataLoader(ds, batch_size=self.cfg.batch_size, shuffle=shuffle,
                                           collate_fn=functools.partial(collate, dtype=self.dtype),
                                           num_workers=self.cfg.num_workers, generator=generator,
                                           persistent_workers=persistent and self.cfg.num_workers > 0)

    def refit_loader(self, rank: int = 0, world: int = 1):
        """This process's part of the (bounded) refit sample: the readout refits' normal equations are
        summed over batches and, in DDP, over processes."""
        if len(self.refit_idx) == len(self.train_ds) and world == 1:
            return self.loader(self.train_ds, False, persistent=False)
        return self.loader(torch.utils.data.Subset(self.train_ds, self.refit_idx[rank::world]), False,
                           persistent=False, generator=torch.Generator().manual_seed(self.cfg.seed))


def open_datasets(paths: Sequence[str | Path]) -> list[H5Dataset]:
    """Open data files and check they share one functional and basis (their numerical settings may differ:
    reference labels and cheap labels train together)."""
    from ..data.file_info import check_same_theory

    if not paths:
        raise DataError("no data files given")
    dss = [H5Dataset(p) for p in paths]
    for ds in dss[1:]:
        check_same_theory(dss[0].attrs, ds.attrs, str(ds.path))
    return dss


def prepare_data(data_paths: Sequence[str | Path], cfg: TrainConfig, run_dir: Path, log=print) -> PreparedData:
    """Open the data files, split their structures (by molecule or structure, or a split file), derive the
    basis layout of the training elements and build the datasets (Δ-models: targets minus the precomputed
    guesses of ``eqchem guess``, read here without PySCF). Logs the split and the data in a line each."""
    dss = open_datasets(data_paths)
    shells = {}
    for ds in dss:
        shells.update(ds.basis_shells())
    cob = change_of_basis_of(dss, {l for ls in shells.values() for l in ls})  # from the data files: no PySCF
    index = DataIndex(dss, run_dir)  # identities, atomic numbers, charges, spins: cached next to the data
    cfg = _resolve_split(cfg, dss, index, log)
    split = _split(cfg, index)
    elements = sorted({int(z) for k in split["train"] for z in index.numbers(k)})
    layout = BasisLayout(basis=dss[0].basis, elements=tuple(elements),
                         shells={z: tuple(shells[z]) for z in elements})
    val_keys = [k for k in split["val"] if set(int(z) for z in index.numbers(k)) <= set(elements)]
    guesses = _guesses(cfg, dss, index, split["train"] + val_keys)
    spectral = (SpectralSettings(cfg.eig_virtuals, cfg.prediction.correction_overlap_cutoff)
                if cfg.eig_weight > 0 or cfg.gap_weight > 0 else None)
    n_total = len(split["train"]) + len(val_keys)

    def make(keys_):  # the in-memory cache shared out in proportion to the structures, per process
        mb = cfg.cache_mb * len(keys_) / max(1, n_total) / max(1, cfg.num_workers)
        return BlockDataset([(dss[index.where[k][0]], k) for k in keys_], layout, cfg.model.pair_cutoff,
                            cfg.model.target, cache_mb=mb, guesses=guesses, spectral=spectral, change_of_basis=cob)

    train_ds, val_ds = make(split["train"]), make(val_keys)
    n_mol = len({index.identity[k] for k in split["train"]})
    log(f"data: {len(train_ds)} training / {len(val_ds)} validation structures, "
        f"{n_mol} training molecule{'s' if n_mol != 1 else ''}, elements {elements}, basis {layout.basis}")
    return PreparedData(cfg, list(data_paths), run_dir, dss, index, layout, cob, split["train"], val_keys,
                        train_ds, val_ds, n_mol, _guess_params(guesses),
                        bounded_sample(len(train_ds), cfg.refit_max_structures, cfg.seed).tolist())


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


def _split(cfg: TrainConfig, index: DataIndex) -> dict:
    """{"train": keys, "val": keys}: the split file's (keys in the data), else split by ``cfg.split_by``."""
    if not cfg.split_file:
        return split_keys(index.identity, cfg.val_fraction, 0.0, cfg.split_by, cfg.seed)
    split = read_split(cfg.split_file)
    split = {part: [k for k in split[part] if k in index.where] for part in ("train", "val")}
    if not split["train"] or not split["val"]:
        raise DataError(f"split file {cfg.split_file} leaves no training or no validation structure in the data")
    return split


def _guesses(cfg: TrainConfig, dss, index: DataIndex, keys_used: list) -> dict | None:
    """Δ-models: the guess file of each data file (``eqchem guess``); every structure used must have a guess."""
    from ..data.guess_file import GuessFile
    from ..dft.baselines import get_baseline  # the registry only: no PySCF

    if not get_baseline(cfg.model.baseline).is_delta:
        return None

    guesses = {ds.path: GuessFile(ds.path, cfg.model.baseline) for ds in dss}
    missing = [k for k in keys_used if k not in guesses[dss[index.where[k][0]].path]]
    if missing:
        raise DataError(f"{len(missing)} structures have no '{cfg.model.baseline}' guess (e.g. {missing[0]}); "
                        f"run: eqchem guess {' '.join(str(ds.path) for ds in dss)}")
    return guesses


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


# -- 2. the task ------------------------------------------------------------------------------------------------
def build_task(data: PreparedData, log=print):
    """The LightningModule: the network with output statistics from a bounded sample of the training set,
    weights from ``--init`` when given, and readout refits on the refit sample when it is smaller than the
    training set (on the training loader otherwise, as before the sample bound existed)."""
    from .module import HamiltonianTask

    cfg = data.cfg
    stats = training_statistics(data.train_ds, data.layout, cfg.model.cutoff, cfg.stats_max_structures, cfg.seed,
                                cfg.num_workers)
    task = HamiltonianTask(data.layout.to_dict(), cfg.to_dict(), stats.avg_neighbors)
    stats.apply(task.model)
    if cfg.init_model:
        log(init_from_model(task, data.layout, cfg))
    if task.ema is not None:
        task.ema.reset(task.model)
    task.refit_data = data.refit_loader if len(data.refit_idx) < len(data.train_ds) else None
    return task


# -- 3. the fit -------------------------------------------------------------------------------------------------
@dataclass
class Fitted:
    """What :func:`fit` leaves for :func:`~eqchem.training.finish.finalize`."""

    trainer: object
    task: object                      # the HamiltonianTask as training left it
    checkpoint: object                # the ModelCheckpoint callback (best and last checkpoints)
    epochs: object                    # the epoch_lines callback (validation history)
    stop_reason: str
    earlier_seconds: float = 0.0      # s, what the run it resumed had trained
    schedule_steps: int | None = None  # optimizer steps the cosine learning-rate schedule spanned


def fit(task, data: PreparedData, t0: float, log=print, show_config: bool = False) -> Fitted:
    """Train ``task`` with Lightning: best and last checkpoints in ``run_dir/checkpoints``, early stopping,
    the epoch lines, ``--max-time`` as a budget for the whole run counted from ``t0`` (``time.time()``),
    ``--resume`` from the run's newest checkpoint; logs why it stopped and the step-time table."""
    import lightning as L
    from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

    cfg, run_dir = data.cfg, data.run_dir
    ckpt = ModelCheckpoint(dirpath=run_dir / "checkpoints", filename="best-{epoch}", monitor=cfg.monitor,
                           mode="min", save_last=True, save_top_k=1)
    early = EarlyStopping(monitor=cfg.monitor, mode="min", patience=cfg.early_stopping_patience)
    terminal = sys.stdout.isatty()
    timer = step_timer(log, t0, cfg.profile)
    epochs = epoch_lines(log, cfg.monitor, cfg.max_epochs, ckpt, print_lines=not terminal, profile=timer)
    callbacks = [ckpt, early, epochs]
    budget = None
    if cfg.max_time_minutes:  # --max-time for the whole run: stop early enough for what follows training
        budget = run_budget(cfg.max_time_minutes, t0, len(data.val_ds), cfg.refit_every, cfg.val_every, log)
        callbacks.append(budget)
    if terminal:
        from lightning.pytorch.callbacks import RichProgressBar

        callbacks.append(RichProgressBar())
    callbacks.append(timer)  # last: its step end follows the other callbacks' per-step work
    ckpt_path = _start(data, log, show_config)
    with quiet_lightning():
        trainer = L.Trainer(
            max_epochs=cfg.max_epochs,
            max_time={"minutes": cfg.max_time_minutes} if cfg.max_time_minutes else None,
            accelerator=cfg.accelerator, devices=_devices(cfg.devices), num_nodes=cfg.num_nodes,
            precision="64-true" if cfg.dtype == "float64" else "32-true",
            gradient_clip_val=cfg.grad_clip or None, callbacks=callbacks,
            logger=[CSVLogger(run_dir, name="logs"), TensorBoardLogger(run_dir, name="tensorboard")],
            default_root_dir=run_dir, enable_progress_bar=terminal, enable_model_summary=False,
            check_val_every_n_epoch=cfg.val_every, log_every_n_steps=1, deterministic=False,
        )
        trainer.fit(task, data.loader(data.train_ds, True), data.loader(data.val_ds, False), ckpt_path=ckpt_path)
    reason = stop_reason(trainer, early, cfg, budget)
    log(f"stopped: {reason}")
    earlier_seconds = task.resumed_train_seconds if ckpt_path else 0.0
    if earlier_seconds:
        log(f"training time includes {earlier_seconds / 60:.1f} min of the run it resumed")
    for line in timer.table(float(getattr(task, "refit_seconds", 0.0))):
        log(line)
    steps = task.lr_schedule_steps if cfg.schedule == "cosine" else None
    return Fitted(trainer, task, ckpt, epochs, reason, earlier_seconds, steps)


def _start(data: PreparedData, log, show_config: bool) -> str | None:
    """Before fit(): the checkpoint to resume (``--resume``; None: a fresh start, said when it replaces an
    earlier run's checkpoints), the resolved config recorded (rank 0) and, on request, logged."""
    from lightning.pytorch.utilities.rank_zero import rank_zero_only

    cfg, run_dir = data.cfg, data.run_dir
    ckpt_path = resume_checkpoint(run_dir, cfg) if cfg.resume else None
    if ckpt_path:
        log(f"resuming from {ckpt_path}")
    elif any((run_dir / "checkpoints").glob("*.ckpt")):
        log(f"note: {run_dir / 'checkpoints'} holds an earlier run's checkpoints; this run starts afresh and "
            f"replaces them (--resume continues that run instead)")
    if getattr(rank_zero_only, "rank", 0) == 0:
        record_config(run_dir, cfg)
    if show_config:
        log(f"resolved config:\n{cfg.dump().rstrip()}")
    log(f"resolved config written to {run_dir / 'train_config.yaml'}; checkpoints and logs in {run_dir}/")
    return ckpt_path


def _devices(devices: str):
    if devices in ("auto", None):
        return "auto"
    try:
        return int(devices)
    except ValueError:
        return devices
