"""What a training run shows while it runs: one line per epoch, Lightning's noise silenced, and why it stopped."""
from __future__ import annotations

import contextlib
import logging
import re
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from .config import TrainConfig


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
                epoch = epoch_of(checkpoint.best_model_path)
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


def epoch_of(checkpoint_path: str | None) -> int | None:
    """1-based epoch of a 'best-epoch=N.ckpt' checkpoint (Lightning counts from 0)."""
    m = re.search(r"epoch=(\d+)", Path(checkpoint_path).name) if checkpoint_path else None
    return int(m.group(1)) + 1 if m else None


def stop_reason(trainer, early, cfg: TrainConfig, budget=None) -> str:
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
