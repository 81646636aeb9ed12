"""A loaded model: the network plus everything needed to use it on new molecules.

The file format is :mod:`eqchem.model.file`'s; this module turns a model file into an
:class:`EqchemModel` (network, card, prediction settings, basis layout) and holds what a prediction
asks of it. Nothing here changes process-wide state.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Sequence

import numpy as np

from ..basis import BasisLayout
from ..dft.baselines import Baseline, get_baseline
from ..errors import BasisError
from ..model.blocks import AOConverter
from ..model.calibration import ModelUncertainty
from ..model.card import ModelCard
from ..model.config import ModelConfig
from ..model.file import read_model_file
from ..model.settings import PredictionSettings


class EqchemModel:
    """``net`` (HamiltonianModel, eval mode), ``card`` (:class:`ModelCard`), ``settings``
    (:class:`PredictionSettings`), ``path`` of its file (None: in memory), ``change_of_basis`` ``{l: M_l}``
    from the file (None: computed with PySCF)."""

    def __init__(self, net, card: ModelCard, settings: PredictionSettings, path: Path | None,
                 change_of_basis=None, uncertainty: ModelUncertainty | None = None):
        self.net = net.eval()
        self.uncertainty = uncertainty  # error estimates of each prediction (None: this file has none)
        self.card = card
        self.settings = settings
        self.path = path
        self.layout: BasisLayout = net.layout
        self.change_of_basis = change_of_basis
        self.converter = AOConverter(self.layout, change_of_basis)

    def with_settings(self, **changes) -> "EqchemModel":
        """The same network with other prediction settings (:class:`PredictionSettings` names); this model
        is left as it is."""
        return self._sharing_network(settings=self.settings.replace(**changes))

    def with_card(self, **changes) -> "EqchemModel":
        """The same network with card fields changed (a shipping script's test metrics, notes, ...)."""
        return self._sharing_network(card=replace(self.card, **changes))

    def with_uncertainty(self, uncertainty: ModelUncertainty | None) -> "EqchemModel":
        """The same network with other error estimates (:func:`eqchem.inference.calibrate.calibrate`)."""
        return self._sharing_network(uncertainty=uncertainty)

    def save(self, path: str | Path) -> Path:
        """Write this model (network, card, settings, error estimates) to ``path``."""
        from ..model.file import save_model

        return save_model(path, self.net, self.card, self.settings, self.change_of_basis, self.uncertainty)

    def _sharing_network(self, **attributes) -> "EqchemModel":
        """A shallow copy (the same network, layout and converter) with ``attributes`` set."""
        other = EqchemModel.__new__(EqchemModel)
        other.__dict__.update(self.__dict__, **attributes)
        return other

    # -- description ------------------------------------------------------------------------
    @property
    def metadata(self) -> dict:
        """The card as the dict the model file stores (read-only view: change it with :meth:`with_card`)."""
        return self.card.to_dict()

    @property
    def config(self) -> ModelConfig:
        return self.net.config

    @property
    def baseline(self) -> Baseline:
        return get_baseline(self.net.config.baseline)

    @property
    def basis(self) -> str:
        return self.layout.basis

    @property
    def xc(self) -> str:
        return str(self.card.xc)

    @property
    def name(self) -> str:
        return self.card.name or (self.path.name if self.path else "model")

    @property
    def baseline_params(self) -> dict | None:
        """The fitted parts of the model's guess (``core-jx``: its atomic potentials), None without any."""
        return self.card.baseline_params

    @property
    def target(self) -> str:
        return self.net.config.target

    @property
    def elements(self) -> tuple[int, ...]:
        return self.layout.elements

    @property
    def charges(self) -> tuple[int, ...]:
        """Total charges of the training structures (models trained before eqchem recorded it: neutral)."""
        return tuple(int(q) for q in self.card.charges or (0,))

    @property
    def spins(self) -> tuple[int, ...]:
        """2S values of the training structures (models trained before eqchem recorded it: closed shell)."""
        return tuple(int(s) for s in self.card.spins or (0,))

    @property
    def coverage_text(self) -> str:
        """The charges and spins the model was trained on, in words."""
        if self.charges == (0,) and self.spins == (0,):
            text = "neutral closed-shell molecules only: charge 0, spin 0"
        else:
            text = (f"charges {', '.join(f'{q:+d}' if q else '0' for q in self.charges)}; "
                    f"spins (2S) {', '.join(map(str, self.spins))}")
        return text if self.card.charges else text + " (assumed: this model file does not record it)"

    def describe(self) -> dict:
        """Label -> value of everything the model file says (:func:`eqchem.inference.card_text.describe`)."""
        from .card_text import describe

        return describe(self)

    @property
    def fock_mixing(self) -> float:
        """Mixing of the damped Fock step applied after the network (0: none; Hamiltonian models only)."""
        return float(self.settings.fock_mixing) if self.target == "hamiltonian" else 0.0

    def load_check_partner(self) -> "EqchemModel | None":
        """The shipped model its calibration names as the ``--check`` partner (loaded anew), None where it names
        none (:mod:`eqchem.model.calibration`)."""
        name = self.uncertainty.calibration.check_partner if self.uncertainty is not None else None
        return load_model(name) if name else None

    def fock_builds(self, fock_step: bool = True) -> int:
        """Kohn–Sham matrix builds one prediction makes (the guess of a Δ-model, the Fock step)."""
        return self.baseline.fock_builds + int(fock_step and self.fock_mixing > 0)

    # -- what it can predict -------------------------------------------------------------------
    def covers_elements(self, numbers: Sequence[int]) -> bool:
        """Whether the model predicts every element of ``numbers`` (:meth:`check_covers` refuses the others)."""
        return not self.converter.missing_elements(numbers)

    def check_covers(self, numbers: Sequence[int]) -> None:
        """Refuse ``numbers`` with an element the model lacks (ModelError naming them)."""
        self.converter.check_elements(numbers)

    def check_basis(self, numbers: Sequence[int], known_shells: dict[int, tuple[int, ...]] | None = None) -> None:
        """Refuse a model file whose stored shell layout disagrees with PySCF's basis of the same name
        (a model file edited or written by a buggy tool): its blocks would land on the wrong AOs.
        ``known_shells``: {Z: shell l's} PySCF gave in another process of this run (no PySCF needed here)."""
        from ..basis import element_shells
        from ..io.elements import symbol

        for z in sorted({int(z) for z in numbers} & set(self.layout.shells)):
            have = (known_shells or {}).get(z) or element_shells(self.basis, z)
            stored = tuple(self.layout.shells[z])
            if tuple(have) != stored:
                where = self.path or "the model"
                raise BasisError(f"{where}: its basis layout for {symbol(z)} (shell l {list(stored)}) disagrees with "
                                 f"PySCF's '{self.basis}' (shell l {list(have)}); the model file is inconsistent: "
                                 f"retrain it or use another model")

    def predict_matrices(self, molecules: Sequence[tuple[np.ndarray, np.ndarray]], batch_size: int = 16,
                         device: str = "cpu", charges: Sequence[int] | None = None,
                         fock_step: bool = True, spins: Sequence[int] | None = None) -> list[np.ndarray]:
        """(numbers, positions Å) pairs -> (nao, nao) predicted matrices, PySCF AO order, float64.

        ``charges`` (default neutral) and ``spins`` (2S, default 0) set the electron count of a Δ-model's
        guess and the occupations of the model's Fock step; ``fock_step=False`` returns the network's matrix
        without it. The work is :class:`eqchem.inference.pipeline.PredictionPipeline`'s (use it directly for
        per-stage timings).
        """
        from .pipeline import PredictionPipeline

        pipeline = PredictionPipeline(self, batch_size=batch_size, device=device, fock_step=fock_step)
        return pipeline.matrices(molecules, charges=charges, spins=spins)


def load_model(path: str | Path | None = None, dtype=None, quick: bool = False) -> EqchemModel:
    """Load a model file, or a shipped model by mode: ``None``/``"default"`` (the default mode),
    ``"accurate"`` or ``"fast"`` (:data:`eqchem.model.file.SHIPPED_MODELS`).

    ``quick``: build the network without e3nn's einsum-order search: a few seconds less to load, each forward
    pass slower (see :mod:`eqchem.model.e3nn_setup`): for a process that predicts a few structures and exits
    (``eqchem predict`` of one or a few batches); the default suits a model loaded once for many predictions."""
    f = read_model_file(path)
    return EqchemModel(f.network(dtype, quick), f.card, f.settings, f.path, f.change_of_basis, f.uncertainty)
