"""How a trained model's prediction runs: settings apart from the network's architecture.

A model file stores its :class:`PredictionSettings` (chosen on validation molecules after training); a
caller that wants to try others makes a copy with :meth:`PredictionSettings.replace` (or
``EqchemModel.with_settings``) instead of editing a loaded model. None of them needs retraining.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace

from ..errors import ModelError


@dataclass(frozen=True)
class PredictionSettings:
    """``correction_overlap_cutoff``: Δ-models project predicted corrections onto the overlap eigenvectors
    with eigenvalue > this (:func:`eqchem.inference.correction.filter_correction`; 0: off).
    ``correction_pair_cutoff``: Δ-models fade atom-pair corrections out over the last Å before this
    distance (Å; :func:`eqchem.inference.correction.pair_switch`; 0: never).
    ``fock_mixing``: Hamiltonian models take one damped Fock step after the network,
    H <- H + α (F[P(H)] - H) (:mod:`eqchem.dft.fock_step`; 0: none)."""

    correction_overlap_cutoff: float = 0.0
    correction_pair_cutoff: float = 0.0
    fock_mixing: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict | None) -> "PredictionSettings":
        d = dict(d or {})
        unknown = set(d) - set(FIELDS)
        if unknown:
            raise ModelError(f"unknown prediction settings: {sorted(unknown)} (known: {', '.join(FIELDS)})")
        return cls(**{k: float(v) for k, v in d.items()})

    def replace(self, **changes) -> "PredictionSettings":
        """A copy with ``changes`` (names of :data:`FIELDS`)."""
        return replace(self, **{k: float(v) for k, v in changes.items()})


FIELDS = tuple(f.name for f in fields(PredictionSettings))
"""The names of the prediction settings (config files and older model files kept them beside the
architecture, under ``model:``)."""


def split_settings(config: dict) -> tuple[dict, dict]:
    """(architecture, prediction settings) of a model config dict that may hold both (older files)."""
    arch = {k: v for k, v in config.items() if k not in FIELDS}
    return arch, {k: v for k, v in config.items() if k in FIELDS}
