"""The learning-rate schedule: a function of the optimizer step alone, so that a config and a seed train the
same on any machine.

``schedule: cosine`` is a linear warm-up over ``warmup_epochs`` epochs of steps, then a cosine from ``lr``
down to ``min_lr`` over the rest of the schedule's steps, ``min_lr`` after them (:func:`lr_factor`). How many
steps the schedule spans:

- without ``--max-time``: ``max_epochs`` times the optimizer steps of an epoch, known before training
  (Lightning's ``estimated_stepping_batches``);
- with ``--max-time``: fixed once, at the end of the first epoch this run trains, from that epoch's measured
  seconds (:func:`steps_within_budget`): the steps that fit in what the run's budget leaves after the time
  spent so far and the reserve :mod:`eqchem.training.budget` keeps for what follows training, capped at the
  ``max_epochs`` count (whichever runs out first). Until then (the first epoch: warm-up with the default
  ``warmup_epochs: 2``) the schedule uses the epoch count. The number is broadcast from rank 0 in DDP, logged
  (``learning-rate schedule: N steps ...``), kept in every checkpoint (``--resume`` continues the same
  schedule, never fixes it again) and written to the model card (``metrics["lr_schedule_steps"]``). From then
  on the schedule follows the step count only: a machine that slows down, or a resumed run on another one,
  changes where training stops, never the learning rate of a given step.

``schedule: plateau`` (halve on a validation plateau) is Lightning's and unaffected.
"""
from __future__ import annotations

import math

CHECKPOINT_KEY = "lr_schedule_steps"
"""Where a checkpoint keeps the steps fixed by a time budget (absent or None: from the epoch count)."""


def lr_factor(step: int, warmup_steps: int, total_steps: int, floor: float) -> float:
    """Learning rate of optimizer step ``step`` (0-based) relative to the peak: (step + 1) / warmup_steps
    during the warm-up, then a cosine from 1 to ``floor`` (min_lr / lr) at ``total_steps``, ``floor`` after."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    t = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * t))


def steps_within_budget(steps_done: int, steps_per_epoch: int, epoch_seconds: float, seconds_left: float,
                        max_steps: int) -> int:
    """The schedule's steps under a time budget: ``steps_done`` plus the steps of the epochs that fit in
    ``seconds_left`` at ``epoch_seconds`` per epoch (steps, and the epoch's share of validations and readout
    refits), at least one more step, at most ``max_steps`` (the ``max_epochs`` count)."""
    epochs = max(0.0, seconds_left) / max(epoch_seconds, 1e-9)
    return int(max(steps_done + 1, min(max_steps, steps_done + math.floor(epochs * steps_per_epoch))))
