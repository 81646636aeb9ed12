"""Importing e3nn and building its modules without start-up costs that buy nothing here.

Most of ``import e3nn.o3`` is spent importing ``torch._dynamo``, which e3nn 0.6 pulls in only to
decorate a few functions with ``torch.compiler.disable`` at import time (see ``python -X importtime -c
"import e3nn.o3"``); most of building a model is opt_einsum_fx's contraction-order search and e3nn's
activation normalization, which draws 10^6 seeded normal samples per activation to compute a constant.
eqchem never runs these modules under ``torch.compile``, so:

- :func:`import_e3nn` imports e3nn with ``torch.compiler.disable`` replaced by the identity for the
  duration of the import (restored afterwards): e3nn's functions are then plain functions, which only
  matters to ``torch.compile`` (not used by eqchem). It also defers e3nn's one import of sympy:
  ``e3nn.o3._angular_spherical_harmonics`` takes seven sympy names at import time but uses them only in
  its two Legendre-polynomial builders (``Legendre``, ``SphericalHarmonicsAlphaBeta``, which eqchem does
  not use); those two functions import sympy and bind the real names on their first call;
- :func:`quick_build` is a context in which e3nn reuses the normalization constant of an activation it has
  already normalized (the same seeded samples give the same constant) and, unless ``einsum_search`` is set,
  skips the einsum-order search (the same contractions in the order e3nn writes them: results equal to
  float32 round-off). Without the search a model builds in a fraction of the time but each forward pass is
  slower: torch then searches a contraction order on every einsum call (``bench/einsum_search.py`` measures
  both on the shipped fast model; see :func:`eqchem.inference.model_file.load_model`'s ``quick``). Inference builds models in it; training keeps
  e3nn's defaults.
"""
from __future__ import annotations

import contextlib
import functools
import sys
import types


def import_e3nn() -> None:
    """Import e3nn (idempotent) without importing ``torch._dynamo`` or, until it is needed, sympy."""
    if "e3nn" in sys.modules:
        return
    import torch

    original = torch.compiler.disable

    def identity(fn=None, recursive=True, **kwargs):  # noqa: ARG001 - torch.compiler.disable's signature
        return fn if fn is not None else (lambda f: f)

    torch.compiler.disable = identity
    deferred = "sympy" not in sys.modules
    if deferred:
        sys.modules["sympy"] = _SympyPlaceholder("sympy")
    try:
        import e3nn.o3  # noqa: F401
    finally:
        torch.compiler.disable = original
        if deferred and isinstance(sys.modules.get("sympy"), _SympyPlaceholder):
            del sys.modules["sympy"]
    if deferred:
        _bind_sympy_on_first_use(sys.modules["e3nn.o3._angular_spherical_harmonics"])


_SYMPY_NAMES = ("Integer", "Poly", "diff", "factorial", "pi", "sqrt", "symbols")


class _SympyPlaceholder(types.ModuleType):
    """Stands in for sympy while e3nn imports: the names e3nn takes from it, as markers; any other
    name is an AttributeError, so a module that really needs sympy at import time fails loudly."""

    def __getattr__(self, name: str):
        if name in _SYMPY_NAMES:
            return _Deferred(name)
        raise AttributeError(f"sympy is deferred while e3nn imports; '{name}' is not one of e3nn's names")


class _Deferred:
    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"<sympy.{self.name}, imported on first use>"


def _bind_sympy_on_first_use(module) -> None:
    """Wrap the functions of ``module`` that use sympy: the first call imports sympy and replaces the
    markers in the module's namespace by the real objects."""
    def bind() -> None:
        import sympy

        for name in _SYMPY_NAMES:
            if isinstance(module.__dict__.get(name), _Deferred):
                module.__dict__[name] = getattr(sympy, name)

    for fname in ("_poly_legendre", "_sympy_legendre"):
        original = module.__dict__.get(fname)
        if original is None:
            continue

        def first_use(*args, _original=original, _name=fname, **kwargs):
            bind()
            module.__dict__[_name] = _original
            return _original(*args, **kwargs)

        module.__dict__[fname] = functools.wraps(original)(first_use)


@contextlib.contextmanager
def quick_build(einsum_search: bool = False):
    """Build e3nn modules with cached activation normalizations and, unless ``einsum_search``, without the
    einsum-order search (faster to build, slower to run)."""
    import_e3nn()
    import e3nn
    from e3nn.math import _normalize_activation as norm

    saved = e3nn.get_optimization_defaults()
    original_moment = norm.moment
    e3nn.set_optimization_defaults(optimize_einsums=einsum_search)
    norm.moment = _cached_moment(original_moment)
    try:
        yield
    finally:
        norm.moment = original_moment
        e3nn.set_optimization_defaults(**saved)


_MOMENTS: dict = {}


def _cached_moment(moment):
    @functools.wraps(moment)
    def cached(f, n, dtype=None, device=None):
        key = (f, n, dtype, str(device))
        try:
            hit = _MOMENTS.get(key)
        except TypeError:  # an unhashable activation: compute as e3nn does
            return moment(f, n, dtype=dtype, device=device)
        if hit is None:
            hit = _MOMENTS[key] = moment(f, n, dtype=dtype, device=device)
        return hit

    return cached
