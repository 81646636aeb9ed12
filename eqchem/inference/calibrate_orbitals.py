"""Fit the orbital energies' 1σ (HOMO, LUMO, gap) on validation rows: the scale inside the training ranges, the
growth beyond them and the out-of-domain floor, each quantity on its own, every part by the same criterion: ±σ
covers :data:`COVERAGE` of the errors (the formulas: :mod:`eqchem.model.calibration`).

Rows are validation rows (:func:`eqchem.inference.evaluate.uncertainty_row`): each with its signed
``{homo,lumo,gap}_error_ev``, its orbitals' leverages (:func:`raw_sigmas`), ``size_excess``, ``geometry_excess``
and ``in_domain``.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

COVERAGE = 0.6827
"""Fraction of the validation molecules, in domain and out, whose HOMO, LUMO and gap errors the fitted 1σ covers (a
normal distribution's within ±1σ)."""
MIN_INSIDE = 10
"""Fewest in-domain validation molecules that set the orbital scales on their own (else all molecules do)."""
ORBITAL_QUANTITIES = ("homo", "lumo", "gap")
SLOPE_GRID = np.linspace(0.0, 8.0, 33)
"""Growth slopes (per unit of size or geometry excess) the fit tries before refining the best."""
FLOOR_FACTOR_GRID = np.linspace(0.0, 1.0, 11)
"""Floor factors (of the in-domain mean estimate) the fit tries before refining the best."""
ERROR_FLOOR_EV = 1e-4
"""|error| (eV) below which the log-space quantile loss counts an error as this (an exact 0 has no log)."""


def excesses(rows: Sequence[dict]) -> tuple[np.ndarray, np.ndarray]:
    """(size, geometry) excess of each row (0 where a row lacks them)."""
    return tuple(np.array([r.get(k, 0.0) for r in rows], dtype=float) for k in ("size_excess", "geometry_excess"))


def raw_sigmas(row: dict) -> tuple[float, float, float]:
    """The raw σ (sqrt of the leverages: :class:`~eqchem.inference.uncertainty.RawStatistics`) of a row's HOMO,
    LUMO and gap: from its orbitals' leverages where it carries them (any row since session 25, calibrated or
    not), else its σ (a row computed under the unit calibration)."""
    if row.get("leverage_homo") is None or row.get("leverage_lumo") is None:
        return tuple(float(row[f"uncertainty_{q}_ev"]) for q in ORBITAL_QUANTITIES)
    v_homo, v_lumo = float(row["leverage_homo"]), float(row["leverage_lumo"])
    return float(np.sqrt(v_homo)), float(np.sqrt(v_lumo)), float(np.sqrt(v_homo + v_lumo))


def inside_rows(rows: Sequence[dict]) -> np.ndarray:
    """(len(rows),) bool: the in-domain rows (their ``in_domain``, else no size or geometry excess) that set the
    scales of the estimates; every row where fewer than :data:`MIN_INSIDE` are."""
    es, eg = excesses(rows)
    inside = np.array([bool(r.get("in_domain", a == 0 and b == 0)) for r, a, b in zip(rows, es, eg)])
    return inside if inside.sum() >= MIN_INSIDE else np.ones(len(rows), dtype=bool)


def quantile_loss(error: np.ndarray, sigma: np.ndarray, tau: float = COVERAGE) -> float:
    """The pinball loss of ``sigma`` as the ``tau`` quantile of |``error``|, in log space (each molecule weighs by its
    ratio, not its size): minimal where ±σ covers a fraction ``tau`` of the errors, however heavy their tails."""
    u = np.log(np.maximum(np.abs(error), ERROR_FLOOR_EV)) - np.log(np.maximum(sigma, 1e-30))
    return float(np.sum(u * (tau - (u < 0))))


class _OrbitalFit:
    """One quantity's σ = scale · raw · (1 + k_s s + k_g g), out of domain at least α · mean · (1 + max(s, g))
    (α = 1 beyond the training sizes, s > 0)."""

    def __init__(self, error: np.ndarray, raw: np.ndarray, es: np.ndarray, eg: np.ndarray, inside: np.ndarray,
                 out: np.ndarray):
        ok = raw > 1e-30
        self.error, self.raw, self.es, self.eg = np.abs(error[ok]), raw[ok], es[ok], eg[ok]
        self.inside, self.out = inside[ok], out[ok]
        self.fitted = self.out | (self.es > 0) | (self.eg > 0)  # the rows the slopes and the floor act on

    def parts(self, k_size: float, k_geometry: float) -> tuple[float, float, np.ndarray]:
        """(scale, in-domain mean σ, σ before the floor of every row) under the slopes."""
        grow = 1.0 + k_size * self.es + k_geometry * self.eg
        if not self.inside.any():
            return 1.0, 0.0, self.raw * grow
        scale = float(np.quantile(self.error[self.inside] / (self.raw * grow)[self.inside], COVERAGE))
        sigma = scale * self.raw * grow
        return scale, float(sigma[self.inside].mean()), sigma

    def sigma(self, p: Sequence[float]) -> np.ndarray:
        """σ of every row under p = (k_s, k_g, α); α only within the training sizes (beyond them 1)."""
        _, mean, sigma = self.parts(p[0], p[1])
        floor = np.where(self.es > 0, 1.0, p[2]) * mean * (1.0 + np.maximum(self.es, self.eg))
        return np.where(self.out, np.maximum(sigma, floor), sigma)

    def loss(self, p: Sequence[float]) -> float:
        if min(p) < 0 or p[2] > 1:
            return np.inf
        return quantile_loss(self.error[self.fitted], self.sigma(p)[self.fitted])


def fit_orbitals(rows: Sequence[dict]) -> tuple[dict, dict, dict, dict]:
    """({"homo_ev", "lumo_ev", "gap_ev": scale}, {…: [size slope, geometry slope]}, {…: floor}, {…: floor factor
    α}, keyed as the estimates and the calibration's dicts) of each
    quantity's σ = scale · raw σ · (1 + k_s s + k_g g), out of domain no less than the floor (the mean σ of the
    in-domain rows) · (1 + max(s, g)), times α within the training sizes (s = 0; beyond them the whole floor:
    the validation molecules beyond them are few, and with α fitted for them too the drug-sized test molecules'
    gap σ covered 38–42 % of their errors, session 25):
    the scale is the :data:`COVERAGE` quantile of |error| / (raw σ · growth) over the in-domain ``rows``
    (:func:`inside_rows`); the slopes (≥ 0) and α (0–1) minimize the quantile loss (:func:`quantile_loss`) of the
    rows beyond the training ranges or out of domain, so that ±σ covers that fraction of their errors too. A
    quantile, not a Gaussian likelihood: the errors are heavy-tailed; the likelihood's σ (the root mean square)
    covered 78–82 % of the accurate model's out-of-domain validation errors and 85–93 % of its distorted test
    molecules' HOMO errors (session 24). Without rows beyond: no growth and α = 1 (the floor stays the in-domain
    mean); a slope without a row to show it stays 0."""
    from scipy.optimize import minimize

    es, eg = excesses(rows)
    inside = inside_rows(rows)
    out = np.array([not r.get("in_domain", True) for r in rows])
    scales, slopes, floors, factors = {}, {}, {}, {}
    raws = np.array([raw_sigmas(r) for r in rows], dtype=float).reshape(len(rows), len(ORBITAL_QUANTITIES))
    for q, raw in zip(ORBITAL_QUANTITIES, raws.T):
        error = np.array([r[f"{q}_error_ev"] for r in rows], dtype=float)
        fit = _OrbitalFit(error, raw, es, eg, inside, out)
        p = np.array([0.0, 0.0, 1.0])
        if fit.fitted.any():
            grid = [(fit.loss(c), c) for c in ((a, b, f) for a in (SLOPE_GRID if es.any() else [0.0])
                                                for b in (SLOPE_GRID if eg.any() else [0.0]) for f in FLOOR_FACTOR_GRID)]
            p = np.array(min(grid, key=lambda t: t[0])[1], dtype=float)
            refined = minimize(fit.loss, p, method="Nelder-Mead").x
            if fit.loss(refined) < fit.loss(p):
                p = refined
            p[:2] *= [bool(es.any()), bool(eg.any())]
        field = f"{q}_ev"
        scales[field], mean, _ = fit.parts(p[0], p[1])
        slopes[field], floors[field], factors[field] = [float(p[0]), float(p[1])], mean, float(p[2])
    return scales, slopes, floors, factors
