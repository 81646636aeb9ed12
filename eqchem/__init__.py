"""eqchem: E(3)-equivariant prediction of Kohn–Sham Hamiltonians.

Public API (imported lazily so ``import eqchem`` stays fast)::

    model = eqchem.load_model()              # the default model shipped with the package
    result = eqchem.predict("mol.xyz")       # OrbitalResult: H, S, orbitals, HOMO/LUMO, dipole, ...
"""
from __future__ import annotations

from .version import __version__

__all__ = ["__version__", "load_model", "predict", "OrbitalResult", "read_structures", "H5Dataset"]

_LAZY = {
    "load_model": ("eqchem.inference.model_file", "load_model"),
    "predict": ("eqchem.inference.predict", "predict"),
    "OrbitalResult": ("eqchem.inference.result", "OrbitalResult"),
    "read_structures": ("eqchem.io.readers", "read_structures"),
    "H5Dataset": ("eqchem.data.reader", "H5Dataset"),
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'eqchem' has no attribute {name!r}")
