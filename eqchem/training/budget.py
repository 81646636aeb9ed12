"""``--max-time`` as a budget for the whole run: preparation, training, and what follows the last step.

Lightning's ``max_time`` (its Timer) limits the time from the start of training to the last step and is
carried across ``--resume``; after it come one more validation (the end of the stopped epoch), the final
readout refit and the validation of the shipped model, and before it the data index, the statistics and the
model. :func:`run_budget` stops training early enough that the command as a whole ends near the limit: at
each step it adds this process's time since ``train()`` began to an estimate of the work that still follows
(validation seconds per structure, measured on the sanity check and every validation, times two passes
over the validation set, plus the last readout refit's seconds) and stops when the sum reaches the budget.
Lightning's Timer stays in place as a backstop; the learning-rate schedule anneals over the training time the
budget leaves (``HamiltonianTask.time_budget``).
"""
from __future__ import annotations

import time


def run_budget(minutes: float, t_start: float, n_val: int, refits: bool):
    """A Lightning callback for a budget of ``minutes`` counted from ``t_start`` (``time.time()``);
    ``n_val`` validation structures, ``refits``: a final readout refit follows training. After ``fit()``,
    ``stopped`` says whether it stopped the run and ``reserve`` what it kept (seconds)."""
    from lightning.pytorch.callbacks import Callback

    budget = 60.0 * minutes

    class RunBudget(Callback):
        def __init__(self):
            self.stopped = False
            self.reserve = 0.0
            self.val_seconds_per_structure: float | None = None
            self._val = [0.0, 0]
            self._offset = 0.0

        def on_validation_start(self, trainer, pl_module):
            self._val = [time.perf_counter(), 0]

        def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
            self._val[1] += int(batch["num_molecules"]) if "num_molecules" in batch else 1

        def on_validation_end(self, trainer, pl_module):
            if self._val[1]:
                self.val_seconds_per_structure = (time.perf_counter() - self._val[0]) / self._val[1]

        def on_train_start(self, trainer, pl_module):
            self._offset = time.time() - t_start  # preparation (and the sanity check) in this process

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            refit = float(getattr(pl_module, "last_refit_seconds", 0.0)) * trainer.world_size if refits else 0.0
            self.reserve = 2 * n_val * (self.val_seconds_per_structure or 0.0) + refit
            pl_module.time_budget = max(1.0, budget - self._offset - self.reserve)
            stop = trainer.strategy.broadcast(time.time() - t_start + self.reserve >= budget)
            if stop and not trainer.should_stop:
                self.stopped = True
                trainer.should_stop = True

    return RunBudget()
