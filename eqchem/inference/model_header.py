"""Which model file a mode means, and what a model file says about itself, without importing torch.

Importing torch takes most of a fresh ``eqchem predict``'s start-up; a caller that wants to start work
that needs no network first (:mod:`eqchem.inference.integrals_ahead`) reads the file's header here.

A model file is ``torch.save``'s zip archive; its ``data.pkl`` holds the dict of
:func:`eqchem.inference.model_file.save_model`. :func:`read_header` unpickles it with torch's tensors
replaced by ``None`` (their storages are never read), so the JSON-able entries (``format``,
``model_config``, ``metadata``, ...) come back as they were saved. Loading a model for prediction stays
:func:`eqchem.inference.model_file.load_model`'s job.
"""
from __future__ import annotations

import pickle
import zipfile
from importlib import resources
from pathlib import Path

from ..errors import ModelError

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


def model_path(path: str | Path | None) -> Path:
    """The file ``load_model(path)`` reads: a shipped model by mode (``None``, ``"default"``, a key of
    :data:`SHIPPED_MODELS`) or ``path`` itself."""
    if path is None or str(path) in ("default", *SHIPPED_MODELS):
        return default_model_path(None if path is None else str(path))
    return Path(path)


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


def read_header(path: str | Path) -> dict | None:
    """The saved dict of an eqchem model file with its tensors as None, or None when ``path`` is not one
    (missing, not a torch zip archive, another format): :func:`~eqchem.inference.model_file.load_model`
    then says what is wrong."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = [n for n in archive.namelist() if n.endswith("/data.pkl") or n == "data.pkl"]
            if len(names) != 1:
                return None
            with archive.open(names[0]) as f:
                blob = _HeaderUnpickler(f).load()
    except (OSError, zipfile.BadZipFile, pickle.UnpicklingError, EOFError, AttributeError, ValueError,
            TypeError, IndexError, KeyError):
        return None
    if not isinstance(blob, dict) or blob.get("format") != MODEL_FORMAT:
        return None
    return blob
