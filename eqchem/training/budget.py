"""``--max-time`` as a budget for the whole run: preparation, training, and what follows the last step.

Lightning's ``max_time`` (its Timer) limits the time from the start of training to the last step and is
carried across ``--resume``; after it come one more validation (the end of the stopped epoch), the final
readout refit and the validation of the shipped model, and before it the data index, the statistics and the
model. :func:`run_budget` stops training early enough that the command as a whole ends near the limit: at
each step it adds this process's time since ``train()`` began to an estimate of the work that still follows
(validation seconds per structure, measured on the sanity check and every validation, times two passes
over the validation set, plus the last readout refit's seconds) and stops when the sum reaches the budget.
Lightning's Timer stays in place as a backstop. At the end of the first epoch the budget also fixes, once, how
many optimizer steps the learning-rate schedule spans (:mod:`eqchem.training.schedule`): the epoch's measured
seconds (its steps, and its share of validations and readout refits) against the time the budget leaves.
"""
from __future__ import annotations

import time

from .schedule import steps_within_budget


def run_budget(minutes: float, t_start: float, n_val: int, refit_every: int, val_every: int = 1, log=None):
    """A Lightning callback for a budget of ``minutes`` counted from ``t_start`` (``time.time()``);
    ``n_val`` validation structures, readout refits every ``refit_every`` epochs (0: none; else a final one
    follows training), a validation every ``val_every`` epochs. After ``fit()``, ``stopped`` says whether it
    stopped the run and ``reserve`` what it kept (seconds). ``log`` takes the line that says the schedule's steps."""
    from lightning.pytorch.callbacks import Callback

    budget = 60.0 * minutes
    refits = refit_every > 0

    class RunBudget(Callback):
        def __init__(self):
            self.stopped = False
            self.reserve = 0.0
            self.val_seconds_per_structure: float | None = None
            self._val = [0.0, 0]
            self._epoch = [0.0, 0.0]  # this epoch's start (perf_counter) and its validation seconds

        def on_validation_start(self, trainer, pl_module):
            self._val = [time.perf_counter(), 0]

        def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
            self._val[1] += int(batch["num_molecules"]) if "num_molecules" in batch else 1

        def on_validation_end(self, trainer, pl_module):
            if self._val[1]:
                self.val_seconds_per_structure = (time.perf_counter() - self._val[0]) / self._val[1]
            if not trainer.sanity_checking:
                self._epoch[1] += time.perf_counter() - self._val[0]

        def on_train_epoch_start(self, trainer, pl_module):  # before the module's readout refit
            self._epoch = [time.perf_counter(), 0.0]

        def _update_reserve(self, trainer, pl_module) -> None:
            refit = float(getattr(pl_module, "last_refit_seconds", 0.0)) * trainer.world_size if refits else 0.0
            self.reserve = 2 * n_val * (self.val_seconds_per_structure or 0.0) + refit

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            self._update_reserve(trainer, pl_module)
            stop = trainer.strategy.broadcast(time.time() - t_start + self.reserve >= budget)
            if stop and not trainer.should_stop:
                self.stopped = True
                trainer.should_stop = True

        def on_train_epoch_end(self, trainer, pl_module):  # before the epoch's checkpoint is saved
            if pl_module.cfg.schedule != "cosine" or pl_module.schedule_steps is not None:
                return  # fixed by an earlier epoch, or by the run this one resumed
            refit = float(getattr(pl_module, "last_refit_seconds", 0.0)) if refits else 0.0
            refitted = refits and int(trainer.current_epoch) % refit_every == 0  # at this epoch's start
            val_pass = self._epoch[1] or n_val * (self.val_seconds_per_structure or 0.0)
            steps = time.perf_counter() - self._epoch[0] - self._epoch[1] - (refit if refitted else 0.0)
            epoch_seconds = steps + (refit / refit_every if refits else 0.0) + val_pass / max(1, val_every)
            self._update_reserve(trainer, pl_module)
            total = steps_within_budget(int(trainer.global_step), pl_module.steps_per_epoch, epoch_seconds,
                                        budget - (time.time() - t_start) - self.reserve, pl_module.epoch_schedule_steps)
            pl_module.schedule_steps = int(trainer.strategy.broadcast(total))  # rank 0's, on every rank
            if log is not None:
                bound = ("the --max-epochs count" if pl_module.schedule_steps >= pl_module.epoch_schedule_steps
                         else f"what --max-time {minutes:g} min leaves")
                log(f"learning-rate schedule: {pl_module.schedule_steps} steps ({bound}; epoch "
                    f"{int(trainer.current_epoch) + 1} took {epoch_seconds:.1f} s with its share of validation "
                    f"and refits), by step count from now on")

    return RunBudget()
