"""What a data file says about itself: the keys it holds and its root attributes (read, checked for the
same level of theory, made for a new file, merged with a run's), including the AO-layout attributes.
"""
from __future__ import annotations

import json
from pathlib import Path

import h5py

from .. import keys
from ..errors import DataError
from ..version import __version__
from .reader import BASIS_SHELLS_ATTR

GROWING_ATTRS = (BASIS_SHELLS_ATTR, keys.AO_CHANGE_OF_BASIS)  # grow with new elements: always updated


def file_keys(out: Path, groups: tuple[str, ...] = (keys.FAILURES, keys.MOLECULES)) -> dict[str, str]:
    """Keys stored in the main file ``out`` mapped to 'molecules' or 'failures' (a later group wins)."""
    found: dict[str, str] = {}
    if not Path(out).exists():
        return found
    with h5py.File(out, "r") as f:
        for grp in groups:  # a success overrides an older failure
            if grp in f:
                for k in f[grp]:
                    found[k] = grp
    return found


def root_attrs(out: Path) -> dict:
    with h5py.File(out, "r") as f:
        return {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}


def check_compatible(existing: dict, wanted: dict, what: str) -> None:
    """Refuse to mix data of different levels of theory (xc, basis, grid, conv_tol, density fitting and its
    auxiliary basis, label preset)."""
    for k in (keys.XC, keys.BASIS, keys.GRIDS_LEVEL, keys.CONV_TOL, keys.DENSITY_FIT, keys.AUXBASIS, keys.LABEL_PRESET):
        if k in existing and k in wanted and str(existing[k]).lower() != str(wanted[k]).lower():
            raise DataError(f"{what} has {k}={existing[k]!r} but this run uses {k}={wanted[k]!r}; "
                            f"write to another file")


def check_same_theory(existing: dict, wanted: dict, what: str) -> None:
    """Refuse to train on data of different functionals or bases together; numerical settings (grid,
    conv_tol, density fitting) may differ between files, as labels at the reference settings and at the
    cheap label settings agree to µEh (``bench/label_preset.py``)."""
    for k in (keys.XC, keys.BASIS):
        if k in existing and k in wanted and str(existing[k]).lower() != str(wanted[k]).lower():
            raise DataError(f"{what} has {k}={wanted[k]!r} but the first data file has {k}={existing[k]!r}; "
                            f"train on data of one functional and basis")


def merged_attrs(existing: dict, attrs: dict) -> dict:
    """``existing`` root attributes plus those of ``attrs`` it lacks; the AO layout (``GROWING_ATTRS``)
    always taken from ``attrs``."""
    out = dict(existing)
    for k, v in attrs.items():
        if k not in out or k in GROWING_ATTRS:  # the layout grows with new elements
            out[k] = v
    return out


def default_root_attrs(settings_attrs: dict, xc_description: str, pyscf_version: str) -> dict:
    """Root attributes of a new file (format version, level of theory, provenance)."""
    return {
        keys.FORMAT_VERSION_ATTR: keys.FORMAT_VERSION,
        keys.XC: settings_attrs["xc"],
        keys.XC_DESCRIPTION: xc_description,
        keys.BASIS: settings_attrs["basis"].lower(),
        keys.PYSCF_VERSION: pyscf_version,
        keys.AO_CONVENTION: "pyscf",
        keys.GRIDS_LEVEL: int(settings_attrs["grid_level"]),
        keys.CONV_TOL: float(settings_attrs["conv_tol"]),
        keys.DENSITY_FIT: bool(settings_attrs["density_fit"]),
        keys.EQCHEM_VERSION: __version__,
        "settings": json.dumps(settings_attrs),
    }


def layout_attrs(shells: dict, change_of_basis: str | None = None) -> dict:
    """The AO-layout root attributes for per-element shells ``{Z: [l of every shell]}``: ``basis_shells``
    and ``keys.AO_CHANGE_OF_BASIS``, the PySCF<->e3nn change of basis of every l up to the largest present.

    ``change_of_basis``: an ``AO_CHANGE_OF_BASIS`` text already stored (a file's, a shard's), reused when
    it covers those l; otherwise it is computed (:func:`eqchem.basis.change_of_basis_json`, which
    imports PySCF and e3nn). No change of basis if neither is possible.
    """
    shells = {str(z): [int(l) for l in ls] for z, ls in sorted(shells.items(), key=lambda kv: int(kv[0]))}
    out = {BASIS_SHELLS_ATTR: json.dumps(shells)}
    ls = [str(l) for l in range(max((l for v in shells.values() for l in v), default=-1) + 1)]
    if not ls:
        return out
    known = json.loads(change_of_basis) if change_of_basis else {}
    if set(ls) <= set(known):
        out[keys.AO_CHANGE_OF_BASIS] = json.dumps({l: known[l] for l in ls})
        return out
    try:
        from ..basis import change_of_basis_json

        out[keys.AO_CHANGE_OF_BASIS] = change_of_basis_json(int(l) for l in ls)
    except ImportError:  # merging on a machine without PySCF/e3nn: readers fall back to computing it
        pass
    return out
