"""What a model refuses and what it warns about, checked for every structure before any prediction."""
from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Sequence

from ..errors import BasisError, ModelError
from ..io.structure import Structure

if TYPE_CHECKING:
    from .model_file import EqchemModel

EXTRAPOLATION_HINT = "pass --allow-extrapolation (Python: extrapolate=True) to predict it anyway"


class ExtrapolationWarning(UserWarning):
    """The structure lies outside what the model was trained on (size, charge or spin)."""


def _basis_key(name: str) -> str:
    return str(name).lower().replace("-", "").replace("_", "").replace(" ", "")


def _check_given_basis(model: "EqchemModel", s: Structure) -> None:
    """Refuse a structure that arrived with its own basis (a PySCF Mole) other than the model's."""
    given = s.info.get("basis")
    if given is None:
        return
    names = set(given.values()) if isinstance(given, dict) else {given}
    if any(not isinstance(b, str) or _basis_key(b) != _basis_key(model.basis) for b in names):
        raise BasisError(f"{s.label}: the Mole was built with basis {given!r} but the model predicts in "
                         f"'{model.basis}'; build it with basis='{model.basis}' (or use a model trained in that basis)")


def covers(model: "EqchemModel", numbers, charge: int, spin: int, basis: str | None = None) -> bool:
    """Whether ``model`` predicts a molecule of these atomic ``numbers``, ``charge`` and ``spin`` (2S) inside its
    training data, in ``basis`` where given: what :func:`check_structure` would neither refuse nor need
    ``extrapolate`` for (size aside, which only warns). For a second model that must answer in the same basis
    (the ``--check`` partner)."""
    return ((basis is None or _basis_key(model.basis) == _basis_key(basis))
            and model.covers_elements(numbers)
            and int(charge) in model.charges and int(spin) in model.spins)


def coverage_warnings(model: "EqchemModel", s: Structure) -> list[str]:
    """Why a prediction of ``s`` would extrapolate the model: charge, spin, size (atoms; heavy atoms where the card
    records their range) beyond the training structures' (empty list: it does not)."""
    out = []
    spin = int(s.spin or 0)
    if int(s.charge) not in model.charges:
        out.append(f"charge {int(s.charge):+d} is outside the model's training data ({model.coverage_text})")
    if spin not in model.spins:
        out.append(f"spin (2S) {spin} is outside the model's training data ({model.coverage_text}); open shells "
                   f"are predicted with one set of spatial orbitals (restricted open shell)")
    rng = model.card.atoms_range
    if rng and s.n_atoms > rng[1]:
        out.append(f"{s.n_atoms} atoms, more than the largest training structure ({rng[1]})")
    heavy = model.card.heavy_atoms_range
    if heavy and s.n_heavy_atoms > heavy[1]:
        out.append(f"{s.n_heavy_atoms} heavy atoms, more than the largest training molecule ({heavy[1]})")
    return out


def check_structure(model: "EqchemModel", s: Structure, extrapolate: bool = False,
                    known_shells: dict | None = None) -> list[str]:
    """Refuse what the model cannot do (elements, basis, and charge or spin outside its training data unless
    ``extrapolate``); return the extrapolation warnings of ``s`` (also issued as ExtrapolationWarning).
    ``known_shells``: {Z: shell l's} of the basis that PySCF gave in another process of this run."""
    s.validate()
    try:
        model.check_covers(s.numbers)
    except ModelError as exc:
        raise ModelError(f"{s.label}: {exc}; use a model trained on these elements") from None
    model.check_basis(s.numbers, known_shells)
    _check_given_basis(model, s)
    found = coverage_warnings(model, s)
    needs_permission = [w for w in found if w.startswith(("charge", "spin"))]
    if needs_permission and not extrapolate:
        raise ModelError(f"{s.label}: {needs_permission[0]}; {EXTRAPOLATION_HINT}")
    for w in found:
        warnings.warn(f"{s.label}: {w}: the prediction is an extrapolation", ExtrapolationWarning, stacklevel=3)
    return found


def check_structures(model: "EqchemModel", structures: Sequence[Structure], extrapolate: bool = False,
                     known_shells: dict | None = None) -> list[list[str]]:
    """:func:`check_structure` of every structure: their extrapolation warnings, or the first refusal."""
    return [check_structure(model, s, extrapolate, known_shells) for s in structures]
