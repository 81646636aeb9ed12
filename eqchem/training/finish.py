"""The last step of a run, :func:`finalize`: the network to ship (best checkpoint, EMA weights, final
readout refit), its validation, the model card and the model file (:func:`eqchem.model.file.save_model`)."""
from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from .. import keys
from ..cpu import available_cores
from ..model.card import ModelCard
from ..version import __version__
from .callbacks import epoch_of, quiet_lightning
from .index import DataIndex


@dataclass
class TrainReport:
    """What a run did. ``metrics`` is the model card's ``metrics``: the validation metrics of the shipped
    model (``shipped``) plus ``best_epoch``, ``best_<monitor>``, ``last_<metric>`` and ``lr_schedule_steps``."""

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


def finalize(fitted, data, out: Path, t0: float, log=print) -> TrainReport:
    """Ship the network of a finished :func:`~eqchem.training.train.fit` on ``data`` (PreparedData): the best
    checkpoint's EMA weights (else the last epoch's) with readouts refitted once more, validated again; rank 0
    writes the model file ``out`` with its card and the run's prediction settings. ``t0``: when the run began
    (``time.time()``)."""
    from ..model.file import save_model

    cfg, trainer = data.cfg, fitted.trainer
    with quiet_lightning():
        last = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val_")}
        last_epoch = fitted.epochs.last_epoch if fitted.epochs.last_epoch is not None else (int(trainer.current_epoch) or None)
        best_epoch = epoch_of(fitted.checkpoint.best_model_path)
        best = dict(fitted.epochs.history.get(best_epoch, {})) if best_epoch is not None else {}
        if fitted.checkpoint.best_model_score is not None:
            best[cfg.monitor] = float(fitted.checkpoint.best_model_score)
        net, label = shipped_network(fitted, data)
        shipped = validate_net(net, data.loader(data.val_ds, False, persistent=False)) if len(data.val_ds) else {}
    metrics = {**last, **shipped}  # the shipped model's (same keys as before), then the best and last epochs'
    if best_epoch is not None:
        metrics["best_epoch"] = best_epoch
    metrics.update({f"best_{k}": best[k] for k in dict.fromkeys([cfg.monitor, "val_mae_uEh"]) if k in best})
    if last_epoch is not None:
        metrics["last_epoch"] = last_epoch
    metrics.update({f"last_{k}": last[k] for k in dict.fromkeys([cfg.monitor, "val_mae_uEh"]) if k in last})
    if fitted.schedule_steps is not None:
        metrics["lr_schedule_steps"] = fitted.schedule_steps
    seconds = time.time() - t0 + fitted.earlier_seconds  # s, this run and the runs it resumed
    if trainer.global_rank == 0:
        card = model_card(data, trainer, metrics, label, fitted.stop_reason, seconds)
        save_model(out, net, card, settings=cfg.prediction, change_of_basis=data.change_of_basis)
    return TrainReport(out, metrics, len(data.train_ds), len(data.val_ds), int(trainer.current_epoch), seconds,
                       data.run_dir / "checkpoints", int(trainer.global_rank), stop_reason=fitted.stop_reason,
                       monitor=cfg.monitor, best_epoch=best_epoch, best=best, last_epoch=last_epoch, last=last,
                       shipped=shipped, shipped_label=label)


def shipped_network(fitted, data):
    """(network, what it is): the best checkpoint's (else the last epoch's) EMA weights on the CPU, readouts
    solved once more on the refit sample when the run refits them."""
    from .module import HamiltonianTask

    best = fitted.checkpoint.best_model_path
    task = HamiltonianTask.load_from_checkpoint(best, weights_only=False) if best else fitted.task
    net = task.inference_model().cpu()
    label = "best checkpoint" if best else "last epoch"
    if data.cfg.refit_every > 0:  # final readouts solved for the shipped (EMA) body on the refit sample
        net.refit_readouts(data.refit_loader(), data.cfg.refit_ridge)
        label += " + final readout refit"
    return net, label


def model_card(data, trainer, metrics: dict, shipped_label: str, stop_reason: str, seconds: float) -> ModelCard:
    """The card of a model trained on ``data`` (PreparedData) by ``trainer``."""
    dss, index, train_keys = data.datasets, data.index, data.train_keys
    atoms_range, heavy_atoms_range = index.size_ranges(train_keys)
    return ModelCard(**_plain(dict(
        xc=dss[0].xc, basis=data.layout.basis,
        xc_description=next((d.attrs[keys.XC_DESCRIPTION] for d in dss if d.attrs.get(keys.XC_DESCRIPTION)), ""),
        pyscf_version=dss[0].attrs.get(keys.PYSCF_VERSION, ""),
        grids_level=dss[0].attrs.get(keys.GRIDS_LEVEL), conv_tol=dss[0].attrs.get(keys.CONV_TOL),
        data_files=[str(p) for p in data.paths], data_hash=data_hash(index, train_keys),
        label_settings=[label_settings(ds) for ds in dss],
        n_train_structures=len(data.train_ds), n_val_structures=len(data.val_ds), n_train_molecules=data.n_molecules,
        charges=sorted({index.charge(k) for k in train_keys}),  # total charges / 2S the training data covered
        spins=sorted({index.spin(k) for k in train_keys}),
        atoms_range=atoms_range, heavy_atoms_range=heavy_atoms_range,
        train_keys=sorted(train_keys), val_keys=sorted(data.val_keys), baseline_params=data.baseline_params,
        train_config=data.cfg.to_dict(), metrics=metrics, shipped_model=shipped_label, stop_reason=stop_reason,
        eqchem_version=__version__, epochs=int(trainer.current_epoch), train_seconds=seconds,
        train_hardware={"accelerator": type(trainer.accelerator).__name__, "processes": int(trainer.world_size),
                        "torch_threads": torch.get_num_threads(), "cpu_cores": available_cores()},
    )))


def label_settings(ds) -> dict:
    """How a data file's labels were computed: its label preset (``eqchem generate --preset``; "" where its
    settings match none, absent in files written before presets) and the numerical settings themselves."""
    a = ds.attrs
    out = {"file": str(ds.path), "grids_level": a.get(keys.GRIDS_LEVEL), "conv_tol": a.get(keys.CONV_TOL),
           "density_fit": bool(a.get(keys.DENSITY_FIT, False)), "auxbasis": str(a.get(keys.AUXBASIS, "") or "")}
    if keys.LABEL_PRESET in a:
        out["label_preset"] = str(a[keys.LABEL_PRESET])
    return out


def data_hash(index: DataIndex, keys_used: Sequence[str]) -> str:
    """SHA-256 over (key, atomic numbers) of the training set (from the data index: no pass over the data)."""
    h = hashlib.sha256()
    for key in sorted(keys_used):
        h.update(key.encode())
        h.update(index.numbers(key).tobytes())  # int64, as read from the data file
    return h.hexdigest()[:16]


@torch.no_grad()
def validate_net(net, loader) -> dict:
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


def _plain(x):
    """JSON-able copy (numpy scalars -> Python) so the model file loads with weights_only=True."""
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if isinstance(x, np.generic):
        return x.item()
    return x
