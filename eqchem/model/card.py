"""The model card: what a model file says about its data, training and tests, every key spelled once here.

Training fills the fields it knows (:mod:`eqchem.training.train`), a shipping script adds test metrics,
peers and notes; :mod:`eqchem.model.file` stores the card as a JSON-able dict (``metadata``). Keys this
eqchem does not know (a newer writer) are kept in ``extra`` and written back unchanged.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any


@dataclass(frozen=True)
class ModelCard:
    """Provenance of a model. Energies in the metrics: µEh (``*_uEh``) or eV (``*_ev``), dipoles in Debye."""

    # level of theory of the training data
    xc: str = ""                                # functional as given to PySCF
    basis: str = ""
    xc_description: str = ""                    # PySCF/libxc's parsed functional
    pyscf_version: str = ""
    grids_level: int | None = None
    conv_tol: float | None = None
    # the training data
    data_files: list = field(default_factory=list)
    label_settings: list = field(default_factory=list)  # per data file: its label preset, grid, conv_tol,
                                                        # density fitting (files may differ in these)
    data_hash: str = ""
    data_recipe: str = ""
    n_train_structures: int | None = None
    n_val_structures: int | None = None
    n_train_molecules: int | None = None
    charges: list = field(default_factory=list)  # total charges (e) the training structures cover
    spins: list = field(default_factory=list)    # 2S values the training structures cover
    atoms_range: list | None = None             # [fewest, most] atoms of a training structure
    heavy_atoms_range: list | None = None       # [fewest, most] non-hydrogen atoms of a training structure
    train_keys: list = field(default_factory=list)
    val_keys: list = field(default_factory=list)
    off_equilibrium_geometries: bool | None = None
    baseline_params: dict | None = None         # fitted parts of the guess (core-jx: atomic potentials)
    # training
    train_config: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)  # validation metrics of the shipped network, best and last epochs
    shipped_model: str = ""                     # which weights: best checkpoint, last epoch, + readout refit
    stop_reason: str = ""
    eqchem_version: str = ""
    epochs: int | None = None
    train_seconds: float | None = None          # s, this run and the runs it resumed
    train_wall_hours: float | None = None       # h, older shipping scripts
    train_hardware: Any = None                  # dict from training, or a shipping script's text
    training_stages: list = field(default_factory=list)  # earlier runs of a fine-tuned model: their cards' training fields
    # shipping
    name: str = ""
    mode: str = ""                              # fast | accurate for the shipped models
    notes: str = ""
    peers: dict = field(default_factory=dict)   # {benchmark: {model: figure}}
    test_metrics: dict = field(default_factory=dict)
    test_metrics_network_only: dict = field(default_factory=dict)
    test_metrics_by_group: dict = field(default_factory=dict)  # {group: metrics} by chemistry and size
                                                               # (eqchem.metrics.chemistry_groups)
    uncertainty_metrics: dict = field(default_factory=dict)   # calibration of the error estimates on test
                                                               # molecules (bench/uncertainty.py)
    extra: dict = field(default_factory=dict)   # keys unknown to this eqchem, kept as they were

    def to_dict(self) -> dict:
        """The JSON-able dict a model file stores (fields left empty are left out)."""
        d = asdict(self)
        extra = d.pop("extra")
        return {**extra, **{k: v for k, v in d.items() if v not in (None, "", [], {})}}

    @classmethod
    def from_dict(cls, d: dict | None) -> "ModelCard":
        d = dict(d or {})
        known = {k: d.pop(k) for k in FIELDS if k in d and k != "extra"}
        return cls(**known, extra=d)

    def replace(self, **changes) -> "ModelCard":
        return replace(self, **changes)


FIELDS = tuple(f.name for f in fields(ModelCard))
