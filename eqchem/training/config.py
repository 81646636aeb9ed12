"""Training configuration: dataclasses + YAML; CLI flags override the file; the run writes the result
(``run_dir/train_config.yaml``) and prints it on request (``--show-config``).

Three sections: ``model:`` (the network's architecture, :class:`~eqchem.model.config.ModelConfig`),
``prediction:`` (how the trained model's predictions run, :class:`~eqchem.model.settings.PredictionSettings`,
stored in the model file; changing them needs no retraining) and the training settings at the top level.
Configs written before ``prediction:`` existed kept its keys under ``model:``; they are read the same way.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import yaml

from ..errors import EqchemError
from ..model.config import ModelConfig
from ..model.settings import PredictionSettings, split_settings


@dataclass
class TrainConfig:
    """Everything a training run needs besides the data files. Energies in Eh, times in seconds."""

    model: ModelConfig = field(default_factory=ModelConfig)
    prediction: PredictionSettings = field(default_factory=PredictionSettings)
    max_epochs: int = 100
    max_time_minutes: float | None = None
    batch_size: int = 8
    lr: float = 3e-3
    min_lr: float = 1e-5
    weight_decay: float = 1e-6
    warmup_epochs: int = 2
    schedule: str = "cosine"          # cosine | plateau
    grad_clip: float = 1.0
    ema_decay: float = 0.99
    refit_every: int = 5              # epochs between exact (ridge) refits of the readouts; 0: never
    refit_ridge: float = 1e-7         # relative ridge of the readout refits
    body_lr_scale: float = 1.0        # learning rate of everything but the readouts, relative to lr; 0 freezes
                                      # the body: a random-feature model whose readouts are solved (refit_every > 0)
    mse_weight: float = 1.0
    mae_weight: float = 1.0
    diag_weight: float = 1.0
    offd_weight: float = 1.0
    eig_weight: float = 0.0           # weight of the orbital-energy loss (occupied + eig_virtuals lowest
    eig_virtuals: int = 1             # virtual energies, training.spectral); 0: block losses only
    gap_weight: float = 0.0           # weight of the HOMO-LUMO gap error (needs eig_weight > 0)
    monitor: str = "val_mae_uEh"      # validation metric that picks the best checkpoint (or val_loss)
    init_model: str | None = None     # model file (.pt) whose weights start the run: fine-tuning
    val_fraction: float = 0.1
    split_by: str = "auto"            # auto (molecule if the data holds >= 2 molecules, else structure) |
                                      # molecule | structure; train() records the resolved value
    split_file: str | None = None     # JSON {"train": [keys], "val": [keys]} overriding the fractions
    early_stopping_patience: int = 30
    seed: int = 0
    dtype: str = "float32"            # float32 | float64
    devices: str = "auto"
    num_nodes: int = 1
    accelerator: str = "auto"
    num_workers: int = 0              # DataLoader worker processes reading and converting structures
    cache_mb: float = 512.0           # converted samples kept in memory, MB (training + validation sets, shared
                                      # out among num_workers processes); 0: none
    stats_max_structures: int = 512   # training structures (seeded sample) for the output statistics
    refit_max_structures: int = 512   # training structures (seeded sample) the readout refits solve on
    val_every: int = 1
    resume: bool = False
    profile: bool = False             # print where a training step's time goes (data, forward, backward, optimizer)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        d = dict(d)
        names = {f.name for f in fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise EqchemError(f"unknown training config keys: {sorted(unknown)}")
        arch, legacy = split_settings(dict(d.pop("model", {}) or {}))  # older configs: prediction keys under model
        try:
            prediction = PredictionSettings.from_dict({**legacy, **(d.pop("prediction", {}) or {})})
        except (TypeError, ValueError) as exc:
            raise EqchemError(f"bad prediction settings: {exc}") from None
        return cls(model=ModelConfig.from_dict(arch), prediction=prediction, **d)

    @classmethod
    def load(cls, path: str | Path | None, overrides: dict | None = None) -> "TrainConfig":
        """YAML file (optional) then overrides (None values ignored; 'model.x' / 'prediction.x' keys go to
        that section)."""
        base: dict = {}
        if path is not None:
            try:
                base = yaml.safe_load(Path(path).read_text()) or {}
            except FileNotFoundError:
                raise EqchemError(f"config file not found: {path}") from None
            except yaml.YAMLError as exc:
                raise EqchemError(f"config file {path} is not valid YAML ({exc})") from None
        for k, v in (overrides or {}).items():
            if v is None:
                continue
            section, dot, name = k.partition(".")
            if dot and section in ("model", "prediction"):
                base[section] = {**(base.get(section) or {}), name: v}
            else:
                base[k] = v
        try:
            return cls.from_dict(base)
        except TypeError as exc:
            raise EqchemError(f"bad training config: {exc}") from None

    @staticmethod
    def training_part(d: dict) -> dict:
        """A copy of a config dict without its prediction settings (the ``prediction`` section, and the same
        keys under ``model`` in configs written before that section existed)."""
        out = {k: v for k, v in d.items() if k != "prediction"}
        out["model"] = split_settings(dict(d.get("model") or {}))[0]
        return out

    def dump(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)
