"""Where a training step's time goes (``eqchem train --profile``) and when the first step happened.

Every optimizer step is cut into four parts, measured with Lightning's hooks (after a CUDA
synchronization when the model is on a GPU, so that kernels are charged to the part that launched them):

- data: from the end of the previous step to the start of this one: waiting for the DataLoader to read and
  convert the batch (all of it with ``num_workers: 0``; what the workers could not hide otherwise) and the
  batch's transfer to the device; readout refits at the start of an epoch are counted apart;
- forward: the network and the loss (``training_step``);
- backward: ``loss.backward()``;
- optimizer: gradient clipping, the AdamW step, the EMA update and the per-step callbacks.

Time outside steps (validation, readout refits) is reported in totals.
"""
from __future__ import annotations

import time

import torch

PARTS = ("data", "forward", "backward", "optimizer")


def step_timer(log, t_start: float, profile: bool = False):
    """A Lightning callback that logs ``first optimizer step after X s`` (X since ``t_start``, a
    ``time.time()`` value; also since the process started where the system says) once, and, with
    ``profile``, times every step (:data:`PARTS`); :meth:`table` gives the summary lines and
    :meth:`epoch_summary` a short per-epoch text."""
    from lightning.pytorch.callbacks import Callback

    class StepTimer(Callback):
        def __init__(self):
            self.totals = dict.fromkeys(PARTS, 0.0)
            self.steps = 0
            self.epoch = dict.fromkeys(PARTS, 0.0)
            self.epoch_steps = 0
            self.validation = [0.0, 0]
            self.first_step: float | None = None
            self._sync = False
            self._marks: dict[str, float] = {}
            self._prev_end: float | None = None
            self._refit_seen = 0.0

        def _now(self) -> float:
            if self._sync:
                torch.cuda.synchronize()
            return time.perf_counter()

        def on_fit_start(self, trainer, pl_module):
            self._sync = profile and pl_module.device.type == "cuda"

        def on_train_epoch_start(self, trainer, pl_module):
            self.epoch = dict.fromkeys(PARTS, 0.0)
            self.epoch_steps = 0
            if profile:
                self._prev_end = self._now()
                self._refit_seen = float(getattr(pl_module, "refit_seconds", 0.0))

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if profile:
                self._marks = {"start": self._now()}

        def on_before_backward(self, trainer, pl_module, loss):
            if profile:
                self._marks["forward"] = self._now()

        def on_after_backward(self, trainer, pl_module):
            if profile:
                self._marks["backward"] = self._now()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if self.first_step is None:
                self.first_step = time.time() - t_start
                since = _process_seconds()
                extra = f" ({since:.1f} s since the process started)" if since is not None else ""
                log(f"first optimizer step after {self.first_step:.1f} s{extra}")
            if not profile or "backward" not in self._marks:
                return
            end = self._now()
            m = self._marks
            refit = float(getattr(pl_module, "refit_seconds", 0.0))
            wait = m["start"] - (self._prev_end if self._prev_end is not None else m["start"])
            parts = {"data": max(0.0, wait - (refit - self._refit_seen)), "forward": m["forward"] - m["start"],
                     "backward": m["backward"] - m["forward"], "optimizer": end - m["backward"]}
            self._refit_seen = refit
            for k, v in parts.items():
                self.totals[k] += v
                self.epoch[k] += v
            self.steps += 1
            self.epoch_steps += 1
            self._prev_end = end

        def on_validation_start(self, trainer, pl_module):
            if profile and not trainer.sanity_checking:
                self._val0 = self._now()

        def on_validation_end(self, trainer, pl_module):
            if profile and not trainer.sanity_checking and hasattr(self, "_val0"):
                self.validation[0] += self._now() - self._val0
                self.validation[1] += 1
                self._prev_end = self._now()  # validation inside an epoch is no data wait

        def epoch_summary(self) -> str:
            """e.g. 'step 152 ms: data 8% forward 40% backward 50% optimizer 2%' ('' without profile)."""
            if not profile or not self.epoch_steps:
                return ""
            return _shares(self.epoch, self.epoch_steps)

        def table(self, refit_seconds: float = 0.0) -> list[str]:
            """The profile as lines: mean ms per step and share of each part, then time outside steps."""
            if not profile or not self.steps:
                return []
            total = sum(self.totals.values())
            where = "CUDA-synchronized" if self._sync else "CPU clock"
            lines = [f"step profile ({self.steps} optimizer steps, {where}):",
                     f"  {'part':<10} {'ms/step':>9} {'share':>6}"]
            for k in PARTS:
                v = self.totals[k]
                lines.append(f"  {k:<10} {1e3 * v / self.steps:9.1f} {100 * v / total:5.0f}%")
            lines.append(f"  {'step':<10} {1e3 * total / self.steps:9.1f}")
            outside = [f"training steps {total:.1f} s"]
            if self.validation[1]:
                outside.append(f"validation {self.validation[0]:.1f} s ({self.validation[1]}x)")
            if refit_seconds:
                outside.append(f"readout refits {refit_seconds:.1f} s")
            if self.first_step is not None:
                outside.append(f"first step after {self.first_step:.1f} s")
            lines.append("  " + ", ".join(outside))
            return lines

    return StepTimer()


def _shares(parts: dict, steps: int) -> str:
    total = sum(parts.values())
    if total <= 0:
        return ""
    return f"step {1e3 * total / steps:.0f} ms: " + " ".join(f"{k} {100 * parts[k] / total:.0f}%" for k in PARTS)


def _process_seconds() -> float | None:
    """Seconds since this process started (Linux /proc), else None."""
    try:
        import os

        with open("/proc/self/stat") as fh:
            start_ticks = int(fh.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as fh:
            uptime = float(fh.read().split()[0])
        return uptime - start_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, AttributeError):
        return None
