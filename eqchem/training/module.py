"""The LightningModule: loss on orbital blocks, AdamW with warm-up + cosine (by step count,
:mod:`eqchem.training.schedule`) or plateau, EMA weights."""
from __future__ import annotations

import contextlib
import time

import lightning as L
import torch

from ..basis import BasisLayout
from ..model.config import ModelConfig
from ..model.hamiltonian import build_model
from ..units import MICRO_HARTREE
from .config import TrainConfig
from .schedule import CHECKPOINT_KEY as SCHEDULE_KEY, lr_factor
from .spectral import orbital_energy_errors


def block_errors(pred: dict, batch: dict) -> dict[str, torch.Tensor]:
    """Masked errors of diagonal and off-diagonal blocks (flattened), plus orbital-energy and gap errors
    ``eps``, ``gap`` (Eh, float64) when the batch carries the constants of the orbital-energy loss."""
    dd = (pred["diag"] - batch["diag"])[batch["diag_mask"]]
    od = (pred["offd"] - batch["offd"])[batch["offd_mask"]]
    out = {"diag": dd, "offd": od}
    if batch.get("spectral"):
        out.update(orbital_energy_errors(pred, batch))
    return out


class HamiltonianTask(L.LightningModule):
    """Thin wrapper: the network, its loss and metrics, optimizer and EMA."""

    def __init__(self, layout: dict, train_config: dict, avg_neighbors: float = 8.0):
        super().__init__()
        self.save_hyperparameters()
        self.cfg = TrainConfig.from_dict(train_config)
        self.layout = BasisLayout.from_dict(layout)
        self.model = build_model(self.layout, self.cfg.model, avg_neighbors, self.dtype_)
        self.ema = ExponentialMovingAverage(self.model, self.cfg.ema_decay) if self.cfg.ema_decay > 0 else None
        if self.cfg.body_lr_scale == 0:  # frozen body (random features), before any DDP wrapping
            for n, p in self.model.named_parameters():
                if not n.startswith(self.model.READOUT_PREFIXES):
                    p.requires_grad_(False)

    @property
    def dtype_(self) -> torch.dtype:
        return torch.float64 if self.cfg.dtype == "float64" else torch.float32

    @property
    def model_config(self) -> ModelConfig:
        return self.cfg.model

    def forward(self, batch: dict) -> dict:
        return self.model(batch["numbers"], batch["pos"], batch["batch"], batch["pair_index"])

    def ema_weights(self):
        """Context in which the model holds its EMA weights (a no-op without EMA)."""
        return self.ema.swapped(self.model) if self.ema is not None else contextlib.nullcontext()

    def _loss(self, err: dict) -> torch.Tensor:
        c = self.cfg
        loss = 0.0
        for part, w in (("diag", c.diag_weight), ("offd", c.offd_weight), ("eps", c.eig_weight),
                         ("gap", c.gap_weight)):
            e = err.get(part)
            if e is not None and e.numel() and w > 0:
                term = w * (c.mse_weight * e.pow(2).mean() + c.mae_weight * e.abs().mean())
                loss = loss + term.to(err["diag"].dtype)
        return loss

    def training_step(self, batch, batch_idx):
        err = block_errors(self(batch), batch)
        loss = self._loss(err)
        n = int(batch["num_molecules"])
        self.log("train_loss", loss, batch_size=n, prog_bar=False, sync_dist=True)
        all_abs = torch.cat([err["diag"].abs(), err["offd"].abs()])
        self.log("train_mae_uEh", all_abs.mean() * MICRO_HARTREE, batch_size=n, prog_bar=True, sync_dist=True)
        if "eps" in err:
            self.log("train_eps_mae_uEh", err["eps"].abs().mean() * MICRO_HARTREE, batch_size=n, sync_dist=True)
        return loss

    refit_data = None
    """Set by :func:`eqchem.training.train.train`: ``(rank, world_size) -> batches`` of this process's part of
    the structures the readout refits solve on (a bounded sample of the training set); None: the training
    loader."""

    def on_train_epoch_start(self):
        c = self.cfg
        if c.refit_every > 0 and self.current_epoch % c.refit_every == 0:
            if self.refit_data is not None:
                self.refit(self.refit_data(self.global_rank, self.trainer.world_size))
            else:
                self.refit(self.trainer.train_dataloader)

    @torch.no_grad()
    def refit(self, loader) -> None:
        """Exact ridge refit of the readouts on the training data, for the body that is validated and
        shipped (the EMA weights); the raw weights take the same readouts and training goes on.
        Its wall time is ``last_refit_seconds``, added to ``refit_seconds`` (step profile, run budget)."""
        t0 = time.perf_counter()
        prefixes = self.model.READOUT_PREFIXES
        was_training = self.model.training
        self.model.eval()
        batches = ({k: (v.to(self.device) if torch.is_tensor(v) else v) for k, v in b.items()} for b in loader)
        with self.ema_weights():
            self.model.refit_readouts(batches, self.cfg.refit_ridge)
            solved = {n: p.detach().clone() for n, p in self.model.named_parameters() if n.startswith(prefixes)}
            if self.ema is not None:
                self.ema.copy_from(self.model, prefixes)
        for n, p in self.model.named_parameters():
            if n in solved:
                p.copy_(solved[n])
        self.model.train(was_training)
        self.last_refit_seconds = time.perf_counter() - t0
        self.refit_seconds = getattr(self, "refit_seconds", 0.0) + self.last_refit_seconds

    def optimizer_step(self, *args, **kwargs):
        super().optimizer_step(*args, **kwargs)
        if self.ema is not None:  # after every optimizer step (inside the step, for the step profile)
            self.ema.update(self.model)

    def on_validation_epoch_start(self):
        self._ema_ctx = self.ema_weights()
        self._ema_ctx.__enter__()

    def on_validation_epoch_end(self):
        self._ema_ctx.__exit__(None, None, None)

    # training wall time across resumed runs: the seconds of earlier runs travel in the checkpoints
    resumed_train_seconds: float = 0.0   # s, what the checkpoint this run resumed from had trained

    def on_fit_start(self):
        self._fit_started = time.monotonic()

    def on_save_checkpoint(self, checkpoint):
        if self.ema is not None:
            checkpoint["ema"] = self.ema.state_dict()
        started = getattr(self, "_fit_started", None)
        checkpoint["train_seconds"] = self.resumed_train_seconds + (time.monotonic() - started if started else 0.0)
        checkpoint[SCHEDULE_KEY] = self.schedule_steps

    def on_load_checkpoint(self, checkpoint):
        if self.ema is not None and "ema" in checkpoint:
            self.ema.load_state_dict(checkpoint["ema"])
        self.resumed_train_seconds = float(checkpoint.get("train_seconds", 0.0))
        self.schedule_steps = checkpoint.get(SCHEDULE_KEY)  # --resume continues the schedule the budget fixed

    def validation_step(self, batch, batch_idx):
        err = block_errors(self(batch), batch)
        n = int(batch["num_molecules"])
        d, o = err["diag"].abs(), err["offd"].abs()
        self.log("val_loss", self._loss(err), batch_size=n, sync_dist=True)
        self.log("val_mae_uEh", torch.cat([d, o]).mean() * MICRO_HARTREE, batch_size=n, prog_bar=True,
                 sync_dist=True)
        self.log("val_mae_diag_uEh", d.mean() * MICRO_HARTREE, batch_size=n, sync_dist=True)
        if o.numel():
            self.log("val_mae_offd_uEh", o.mean() * MICRO_HARTREE, batch_size=n, sync_dist=True)
        if "eps" in err:
            self.log("val_eps_mae_uEh", err["eps"].abs().mean() * MICRO_HARTREE, batch_size=n, sync_dist=True)
        if err.get("gap") is not None and err["gap"].numel():
            self.log("val_gap_mae_uEh", err["gap"].abs().mean() * MICRO_HARTREE, batch_size=n, sync_dist=True)

    def configure_optimizers(self):
        c = self.cfg
        if c.body_lr_scale == 1.0:  # one group (the layout of checkpoints written before body_lr_scale)
            groups = [{"params": list(self.model.parameters()), "lr": c.lr}]
        else:  # readouts at lr, the body at lr * scale (frozen, requires_grad off, when the scale is 0)
            prefixes = self.model.READOUT_PREFIXES
            groups = [{"params": [p for n, p in self.model.named_parameters() if n.startswith(prefixes)], "lr": c.lr}]
            if c.body_lr_scale > 0:
                body = [p for n, p in self.model.named_parameters() if not n.startswith(prefixes)]
                groups.append({"params": body, "lr": c.lr * c.body_lr_scale})
        opt = torch.optim.AdamW(groups, lr=c.lr, weight_decay=c.weight_decay)
        if c.schedule == "plateau":
            sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.5, patience=5, min_lr=c.min_lr)
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "monitor": "val_loss"}}
        # by step count only (eqchem.training.schedule): a time budget fixes schedule_steps once
        self.steps_per_epoch = max(1, int(self.trainer.estimated_stepping_batches // max(1, self.trainer.max_epochs)))
        self.epoch_schedule_steps = max(1, int(self.trainer.estimated_stepping_batches))
        warm, floor = c.warmup_epochs * self.steps_per_epoch, c.min_lr / c.lr

        def factor(step):
            return lr_factor(step, warm, self.lr_schedule_steps, floor)

        sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    schedule_steps: int | None = None
    """Optimizer steps the cosine schedule spans when a time budget fixed them (:mod:`.schedule`; kept in
    checkpoints); None: ``epoch_schedule_steps``, the ``max_epochs`` count."""
    epoch_schedule_steps: int = 1
    steps_per_epoch: int = 1

    @property
    def lr_schedule_steps(self) -> int:
        """The optimizer steps the cosine schedule spans."""
        return self.schedule_steps or self.epoch_schedule_steps

    def inference_model(self) -> torch.nn.Module:
        """A fresh copy of the network holding the weights to ship (EMA if used)."""
        from ..model.hamiltonian import load_portable_state_dict, portable_state_dict

        net = build_model(self.layout, self.cfg.model, self.hparams.avg_neighbors, self.dtype_)
        with self.ema_weights():
            load_portable_state_dict(net, portable_state_dict(self.model))
        return net


class ExponentialMovingAverage:
    """Shadow copies of a module's floating-point parameters, updated as s <- d s + (1 - d) p."""

    def __init__(self, module: torch.nn.Module, decay: float):
        self.decay = decay
        self.shadow = {n: p.detach().clone() for n, p in module.named_parameters()}

    @torch.no_grad()
    def update(self, module: torch.nn.Module) -> None:
        for n, p in module.named_parameters():
            s = self.shadow[n]
            if s.device != p.device or s.dtype != p.dtype:
                s = self.shadow[n] = s.to(p)
            s.mul_(self.decay).add_(p.detach(), alpha=1 - self.decay)

    @torch.no_grad()
    def copy_from(self, module: torch.nn.Module, prefixes: tuple[str, ...]) -> None:
        """Set the shadows of parameters whose names start with ``prefixes`` to their current values."""
        for n, p in module.named_parameters():
            if n.startswith(prefixes):
                self.shadow[n] = p.detach().clone()

    def reset(self, module: torch.nn.Module) -> None:
        self.shadow = {n: p.detach().clone() for n, p in module.named_parameters()}

    @contextlib.contextmanager
    def swapped(self, module: torch.nn.Module):
        backup = {n: p.detach().clone() for n, p in module.named_parameters()}
        with torch.no_grad():
            for n, p in module.named_parameters():
                p.copy_(self.shadow[n].to(p))
        try:
            yield module
        finally:
            with torch.no_grad():
                for n, p in module.named_parameters():
                    p.copy_(backup[n])

    def state_dict(self) -> dict:
        return {"decay": self.decay, "shadow": self.shadow}

    def load_state_dict(self, state: dict) -> None:
        self.decay = state["decay"]
        self.shadow = {n: t.clone() for n, t in state["shadow"].items()}
