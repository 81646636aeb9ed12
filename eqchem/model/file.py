"""The model file: weights, architecture, basis layout, prediction settings and card, one format, one owner.

A model file is a plain ``torch.save`` dict of tensors and JSON-able values (it loads with
``weights_only=True``); the network is rebuilt from its config, never unpickled. Training writes it
(:func:`save_model`), inference reads it (:func:`read_model_file`, then :meth:`ModelFile.network`), and a
caller that must not import torch yet (:mod:`eqchem.inference.integrals_ahead`) reads its JSON-able part
with :func:`read_header`. Keys of the stored dict, each spelled only here::

    format, eqchem_version, model_config, prediction_settings, layout, avg_neighbors, dtype,
    ao_convention, ao_change_of_basis, metadata (the card), state_dict

Files written before prediction settings had their own entry keep them in ``model_config``; they are read
the same way.
"""
from __future__ import annotations

import json
import os
import pickle
import zipfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from .. import keys
from ..basis import BasisLayout
from ..errors import ModelError
from ..version import __version__
from .calibration import ModelUncertainty
from .card import ModelCard
from .config import ModelConfig
from .settings import PredictionSettings, split_settings

MODEL_FORMAT = "eqchem-model-1"
SHIPPED_MODELS = {"accurate": "accurate.pt", "fast": "fast.pt"}
"""The models shipped inside the package, by mode: ``fast`` corrects the grid-free ``core-jx`` guess (no
Fock build); ``accurate`` corrects a minao Fock matrix and takes a damped Fock step (two cheap PySCF Fock
builds per molecule)."""
DEFAULT_MODE = "fast"
"""The mode ``load_model()``, ``eqchem.predict`` and ``eqchem predict`` use when none is named."""


def default_model_path(mode: str | None = None) -> Path:
    """The shipped model file of ``mode`` (``None``/``"default"``: :data:`DEFAULT_MODE`)."""
    mode = DEFAULT_MODE if mode in (None, "default") else mode
    if mode not in SHIPPED_MODELS:
        raise ModelError(f"unknown model mode '{mode}' (choose {' or '.join(SHIPPED_MODELS)}, or give a model file)")
    return Path(str(resources.files("eqchem") / "models" / SHIPPED_MODELS[mode]))


def is_shipped(path) -> bool:
    """Whether ``path`` names a shipped model by mode (``None``, ``"default"``, a key of SHIPPED_MODELS)."""
    return path is None or str(path) in ("default", *SHIPPED_MODELS)


def model_path(path: str | Path | None) -> Path:
    """The file a model name means: a shipped model by mode (:func:`is_shipped`) or ``path`` itself."""
    if is_shipped(path):
        return default_model_path(None if path is None else str(path))
    return Path(path)


@dataclass
class ModelFile:
    """What a model file holds: ``state_dict`` (portable tensors), ``config`` (architecture), ``settings``
    (how predictions run), ``layout`` (basis), ``card`` (provenance), ``change_of_basis`` ``{l: M_l}`` of
    the layout's shells (None in files written before eqchem stored it: computed with PySCF)."""

    path: Path | None
    config: ModelConfig
    settings: PredictionSettings
    layout: BasisLayout
    card: ModelCard
    avg_neighbors: float
    dtype: str
    state_dict: dict
    change_of_basis: dict | None
    eqchem_version: str = ""
    uncertainty: "ModelUncertainty | None" = None  # error estimates (eqchem.model.calibration); None: none

    def network(self, dtype=None, quick: bool = False):
        """The network rebuilt from the config with the stored weights (``dtype``: torch dtype, default the
        stored one). ``quick``: build without e3nn's einsum-order search (:mod:`eqchem.model.e3nn_setup`)."""
        import torch

        from .e3nn_setup import quick_build
        from .hamiltonian import build_model, load_portable_state_dict

        stored = torch.float64 if self.dtype == "float64" else torch.float32
        with quick_build(einsum_search=not quick):
            net = build_model(self.layout, self.config, self.avg_neighbors, dtype or stored)
        try:
            load_portable_state_dict(net, self.state_dict)
        except RuntimeError:
            raise ModelError(f"{self.path or 'the model'} was written by an incompatible eqchem version "
                             f"({self.eqchem_version or '?'}); retrain or use a matching eqchem") from None
        return net


def save_model(path: str | Path, net, card: ModelCard, settings: PredictionSettings | None = None,
               change_of_basis: dict | None = None, uncertainty: "ModelUncertainty | None" = None) -> Path:
    """Write a model file atomically: the network ``net`` (HamiltonianModel), its ``card`` and ``settings``,
    and, where calibrated, what estimates each prediction's error (``uncertainty``).

    The PySCF<->e3nn change of basis of the layout's shells travels with it: ``change_of_basis`` ``{l: M_l}``
    as training read it from the data, else computed with PySCF (left out where PySCF is absent; loading
    then computes it, as for model files written before)."""
    import torch

    from ..basis import change_of_basis_table
    from .hamiltonian import portable_state_dict

    path = Path(path)
    try:
        table = change_of_basis_table(net.layout.slot_ls, dict(change_of_basis) if change_of_basis else None)
        cob_json = json.dumps({str(l): m.tolist() for l, m in sorted(table.items())})
    except ImportError:
        cob_json = None
    path.parent.mkdir(parents=True, exist_ok=True)
    blob = {
        "format": MODEL_FORMAT,
        "eqchem_version": __version__,
        "model_config": net.config.to_dict(),
        "prediction_settings": (settings or PredictionSettings()).to_dict(),
        "layout": net.layout.to_dict(),
        "avg_neighbors": float(net.layers[0].avg_neighbors) if len(net.layers) else 8.0,
        "dtype": str(next(net.parameters()).dtype).replace("torch.", ""),
        "ao_convention": "pyscf",
        **({keys.AO_CHANGE_OF_BASIS: cob_json} if cob_json else {}),
        "metadata": card.to_dict(),
        "state_dict": {k: v.detach().cpu().clone() for k, v in portable_state_dict(net).items()},
        **({"uncertainty": uncertainty.to_dict()} if uncertainty is not None else {}),
    }
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    torch.save(blob, tmp)
    os.replace(tmp, path)
    return path


def read_model_file(path: str | Path | None) -> ModelFile:
    """Read a model file, or a shipped model by mode (:func:`model_path`); ModelError says what is wrong."""
    import torch

    p = model_path(path)
    if not p.exists():
        if is_shipped(path):
            raise ModelError(f"the '{path or DEFAULT_MODE}' model is not shipped in this eqchem ({p.name} missing)")
        raise ModelError(f"model file not found: {p}")
    try:
        blob = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - corrupt zip, wrong pickle, ...
        raise ModelError(f"{p} is not a readable eqchem model file ({type(exc).__name__})") from None
    if not isinstance(blob, dict) or blob.get("format") != MODEL_FORMAT:
        raise ModelError(f"{p} is not an eqchem model file (format {blob.get('format') if isinstance(blob, dict) else '?'})")
    layout = BasisLayout.from_dict(blob["layout"])
    config, settings = parts_of(blob)
    card = ModelCard.from_dict(blob.get("metadata"))
    if not card.eqchem_version and blob.get("eqchem_version"):
        card = card.replace(eqchem_version=blob["eqchem_version"])
    return ModelFile(p, config, settings, layout, card, float(blob["avg_neighbors"]), str(blob.get("dtype", "float32")),
                     blob["state_dict"], _stored_change_of_basis(blob, layout, p), str(blob.get("eqchem_version", "")),
                     ModelUncertainty.from_dict(blob.get("uncertainty")))


def parts_of(blob: dict) -> tuple[ModelConfig, PredictionSettings]:
    """The architecture and the prediction settings of a stored dict (older files: both in model_config)."""
    arch, legacy = split_settings(dict(blob.get("model_config") or {}))
    return ModelConfig.from_dict(arch), PredictionSettings.from_dict({**legacy, **(blob.get("prediction_settings") or {})})


def _stored_change_of_basis(blob: dict, layout: BasisLayout, path: Path):
    from ..basis import change_of_basis_from_json, change_of_basis_table

    text = blob.get(keys.AO_CHANGE_OF_BASIS)
    if not text:
        return None
    try:
        return change_of_basis_table(layout.slot_ls, change_of_basis_from_json(text))
    except (ValueError, TypeError, KeyError) as exc:
        raise ModelError(f"{path}: unreadable AO change of basis ({exc})") from None
    except ImportError:
        raise ModelError(f"{path}: its AO change of basis lacks some shells and PySCF is not installed") from None


# -- the header, without torch --------------------------------------------------------------------
class _HeaderUnpickler(pickle.Unpickler):
    """Unpickles ``data.pkl`` of a torch archive with every torch object (tensors, storages, dtypes) as None."""

    def find_class(self, module: str, name: str):
        if module == "torch" or module.startswith("torch."):
            return _absent
        if module in ("collections", "builtins", "_codecs") or module.startswith("numpy"):
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"unexpected global {module}.{name} in a model file")

    def persistent_load(self, pid):  # a tensor's storage: not read
        return None


def _absent(*args, **kwargs):  # noqa: ARG001 - stands in for any torch callable
    return None


@dataclass(frozen=True)
class ModelHeader:
    """The JSON-able part of a model file, read without torch: enough to start PySCF work early."""

    config: ModelConfig
    settings: PredictionSettings
    basis: str
    card: ModelCard

    @property
    def xc(self) -> str:
        return self.card.xc


def read_header(path: str | Path) -> ModelHeader | None:
    """The header of an eqchem model file, or None when ``path`` is not one (missing, not a torch zip
    archive, another format): :func:`read_model_file` then says what is wrong. Tensors are never read."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = [n for n in archive.namelist() if n.endswith("/data.pkl") or n == "data.pkl"]
            if len(names) != 1:
                return None
            with archive.open(names[0]) as f:
                blob: Any = _HeaderUnpickler(f).load()
    except (OSError, zipfile.BadZipFile, pickle.UnpicklingError, EOFError, AttributeError, ValueError,
            TypeError, IndexError, KeyError):
        return None
    if not isinstance(blob, dict) or blob.get("format") != MODEL_FORMAT:
        return None
    try:
        config, settings = parts_of(blob)
    except Exception:  # noqa: BLE001 - an inconsistent file: read_model_file says what is wrong
        return None
    return ModelHeader(config, settings, str((blob.get("layout") or {}).get("basis", "")),
                       ModelCard.from_dict(blob.get("metadata")))
