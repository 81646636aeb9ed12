"""The learning rate follows the optimizer step, not the clock (eqchem.training.schedule): the same config and
seed train the same on a slow machine as on a fast one; a time budget fixes the schedule's steps once, and
``--resume`` continues that schedule.

The slow machine is simulated: ``time.time``, ``time.monotonic`` and ``time.perf_counter`` (what Lightning's
Timer, the run budget and the module read) run faster than the real clock, or jump by a fixed amount per step.
"""
from __future__ import annotations

import time

import pytest
import torch

from .conftest import generate_water_set

TINY = {"model.hidden": "8,4,2", "model.pair_channels": "4,2,2", "model.diag_channels": 4, "batch_size": 2,
        "split_by": "structure", "val_fraction": 0.2, "warmup_epochs": 1, "seed": 0}


@pytest.fixture(scope="module")
def water(tmp_path_factory):
    """12 structures of water (PBE/STO-3G): 10 training, 2 validation, 5 steps an epoch at batch size 2."""
    d = tmp_path_factory.mktemp("schedule")
    return generate_water_set(d, samples=11, seed=5)


class SlowClock:
    """The clocks of a machine ``factor`` times slower than this one, plus ``per_step`` s per optimizer step."""

    NAMES = ("time", "monotonic", "perf_counter")

    def __init__(self, monkeypatch, factor: float = 1.0, per_step: float = 0.0):
        self.factor, self.per_step, self.steps = factor, per_step, 0
        self.real = {n: getattr(time, n) for n in self.NAMES}
        self.start = {n: f() for n, f in self.real.items()}
        for n in self.NAMES:
            monkeypatch.setattr(time, n, self._clock(n))

    def _clock(self, name):
        def now():
            start = self.start[name]
            return start + (self.real[name]() - start) * self.factor + self.per_step * self.steps
        return now


def record_steps(monkeypatch, clock: SlowClock | None = None) -> list:
    """[(global step, learning rate of that step)] of every optimizer step of the runs that follow."""
    from eqchem.training.module import HamiltonianTask

    seen = []
    step = HamiltonianTask.optimizer_step

    def recorded(self, *args, **kwargs):
        seen.append((int(self.trainer.global_step), float(self.trainer.optimizers[0].param_groups[0]["lr"])))
        step(self, *args, **kwargs)
        if clock is not None:
            clock.steps += 1

    monkeypatch.setattr(HamiltonianTask, "optimizer_step", recorded)
    return seen


def run(water, name: str, log: list | None = None, **overrides):
    from eqchem.training.config import TrainConfig
    from eqchem.training.train import train

    cfg = TrainConfig.load(None, {**TINY, **overrides})
    out = water.parent / f"{name}.pt"
    report = train([water], out, cfg, run_dir=water.parent / f"{name}_run",
                   log=(log.append if log is not None else lambda m: None))
    return cfg, out, report


def test_same_config_and_seed_train_the_same_on_a_slow_machine(water, monkeypatch):
    """A generous --max-time (the epochs run out first on both machines): identical learning rates at every
    step and identical weights, though the slow machine's clocks say 100x more time has passed. The old
    schedule annealed over max(step fraction, elapsed / budget) and fails here (right after the warm-up the
    step fraction is 0 and the elapsed fraction is not)."""
    from eqchem.model.file import read_model_file

    lrs = {}
    for machine, factor in (("fast", 1.0), ("slow", 100.0)):
        with monkeypatch.context() as mp:
            SlowClock(mp, factor=factor)
            lrs[machine] = record_steps(mp)
            _, out, report = run(water, machine, max_epochs=3, max_time_minutes=600.0)
        assert report.stop_reason == "reached --max-epochs 3", report.stop_reason
        assert report.metrics["lr_schedule_steps"] == 15  # 3 epochs of 5 steps: the epochs ran out first
    assert [s for s, _ in lrs["fast"]] == list(range(15))
    assert lrs["slow"] == lrs["fast"]
    fast, slow = read_model_file(water.parent / "fast.pt"), read_model_file(water.parent / "slow.pt")
    assert fast.state_dict.keys() == slow.state_dict.keys()
    for k, v in fast.state_dict.items():
        assert torch.equal(v, slow.state_dict[k]), k


def test_a_time_budget_fixes_the_schedule_once_and_resume_continues_it(water, monkeypatch):
    """Every step costs 10 s on the simulated machine: a 2-minute budget fixes the cosine schedule at the
    end of epoch 1 to the steps that fit (recorded in the card and the checkpoint), the learning rate is a
    function of the step alone, and a resumed run on a fast machine continues the same schedule."""
    from eqchem.training.schedule import CHECKPOINT_KEY, lr_factor

    log: list[str] = []
    with monkeypatch.context() as mp:
        clock = SlowClock(mp, per_step=10.0)
        first = record_steps(mp, clock)
        cfg, _, report = run(water, "budget", log, max_epochs=10, max_time_minutes=2.0)
    assert report.stop_reason.startswith("reached --max-time 2 min"), report.stop_reason
    steps = report.metrics["lr_schedule_steps"]
    assert 5 < steps < 50, steps  # more than the first epoch, fewer than the max-epochs count
    assert sum(line.startswith(f"learning-rate schedule: {steps} steps") for line in log) == 1, log
    last = torch.load(water.parent / "budget_run" / "checkpoints" / "last.ckpt", map_location="cpu",
                      weights_only=False)
    assert last[CHECKPOINT_KEY] == steps

    def expected(step):
        return cfg.lr * lr_factor(step, 5, steps, cfg.min_lr / cfg.lr)

    assert first == [(s, pytest.approx(expected(s), rel=1e-12)) for s in range(len(first))]

    log.clear()
    with monkeypatch.context() as mp:  # a fast machine: fixing the schedule again would give all 50 steps
        resumed = record_steps(mp)
        _, _, report = run(water, "budget", log, max_epochs=10, max_time_minutes=600.0, resume=True)
    assert any(line.startswith("resuming from") for line in log), log
    assert not any(line.startswith("learning-rate schedule:") for line in log), log
    assert report.metrics["lr_schedule_steps"] == steps
    assert resumed and resumed[0][0] >= 5 and resumed[-1][0] > steps  # on past the schedule's end: min_lr
    assert resumed == [(s, pytest.approx(expected(s), rel=1e-12)) for s, _ in resumed]


def test_old_configs_keep_prediction_settings_under_model():
    """Configs written before the prediction: section are read the same way; resume / reuse comparisons
    leave prediction settings aside."""
    from eqchem.training.config import TrainConfig

    old = TrainConfig.from_dict({"model": {"baseline": "core", "correction_overlap_cutoff": 0.05, "fock_mixing": 0.3}})
    new = TrainConfig.load(None, {"model.baseline": "core", "prediction.correction_overlap_cutoff": 0.05,
                                  "prediction.fock_mixing": 0.3})
    assert old == new and new.prediction.correction_overlap_cutoff == 0.05
    assert "correction_overlap_cutoff" not in new.to_dict()["model"]
    assert TrainConfig.from_dict(new.to_dict()) == new
    other = TrainConfig.load(None, {"model.baseline": "core", "prediction.fock_mixing": 0.5})
    assert TrainConfig.training_part(other.to_dict()) == TrainConfig.training_part(new.to_dict())
    legacy_dict = {"model": {"baseline": "core", "fock_mixing": 0.3}, "lr": 0.003}
    assert TrainConfig.training_part(legacy_dict) == {"model": {"baseline": "core"}, "lr": 0.003}
