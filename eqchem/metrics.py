"""The field's metrics for predicted Hamiltonians (as QH9/QHNet compute them).

Per molecule: MAE over all H elements, over diagonal (same-atom) and off-diagonal blocks (µEh);
occupied orbital-energy MAE (µEh) from H C = S C ε with the *reference* S; mean |cosine| of
occupied orbital coefficients along the AO axis (%); HOMO, LUMO, gap absolute errors (eV).
Reported values are means over molecules. No PySCF needed.
"""
from __future__ import annotations

import numpy as np

from . import orbitals
from .units import HARTREE_EV, MICRO_HARTREE

METRIC_NAMES = ("h_mae_uEh", "h_mae_diag_uEh", "h_mae_offd_uEh", "eps_occ_mae_uEh", "psi_cos_pct",
                "homo_mae_ev", "lumo_mae_ev", "gap_mae_ev")


def molecule_metrics(h_pred: np.ndarray, h_ref: np.ndarray, s_ref: np.ndarray, ao_offsets: np.ndarray,
                     nocc: int) -> dict[str, float]:
    """Metrics of one molecule; ``ao_offsets`` (n+1,) are its atoms' AO boundaries."""
    err = np.abs(h_pred - h_ref)
    same = np.zeros_like(err, dtype=bool)
    for a, b in zip(ao_offsets[:-1], ao_offsets[1:]):
        same[a:b, a:b] = True
    e_p, c_p = orbitals.solve_generalized(h_pred, s_ref)
    e_r, c_r = orbitals.solve_generalized(h_ref, s_ref)
    hp, lp, gp = orbitals.frontier(e_p, nocc)
    hr, lr, gr = orbitals.frontier(e_r, nocc)
    return {
        "h_mae_uEh": err.mean() * MICRO_HARTREE,
        "h_mae_diag_uEh": err[same].mean() * MICRO_HARTREE,
        "h_mae_offd_uEh": err[~same].mean() * MICRO_HARTREE if (~same).any() else float("nan"),
        "eps_occ_mae_uEh": np.abs(e_p[:nocc] - e_r[:nocc]).mean() * MICRO_HARTREE,
        "psi_cos_pct": orbitals.occupied_cosine_similarity(c_p, c_r, nocc) * 100.0,
        "homo_mae_ev": abs(hp - hr) * HARTREE_EV,
        "lumo_mae_ev": abs(lp - lr) * HARTREE_EV,
        "gap_mae_ev": abs(gp - gr) * HARTREE_EV,
    }


def aggregate(per_molecule: list[dict[str, float]]) -> dict[str, float]:
    """Mean of every metric over molecules (NaNs ignored)."""
    if not per_molecule:
        return {}
    keys = [k for k in per_molecule[0] if isinstance(per_molecule[0][k], (int, float))]
    return {k: float(np.nanmean([m[k] for m in per_molecule])) for k in keys}


GROUPED_ELEMENTS = {16: "S", 17: "Cl", 35: "Br"}
"""Elements whose molecules the grouped metrics report apart (the drug-like chemistry beyond QM9)."""
SIZE_GROUPS = ((9, "≤ 9 heavy atoms"), (12, "10–12 heavy atoms"), (10 ** 9, "> 12 heavy atoms"))
"""Heavy-atom bins of the grouped metrics: (largest count in the bin, label)."""


def chemistry_groups(key: str, numbers) -> list[str]:
    """The groups a molecule counts in: ``all``; its source by key (``qm9`` for ``qm9_*``, ``fragments`` for
    ``frag_*``, else ``other``); ``with S`` / ``with Cl`` / ``with Br`` (each it contains) or ``without S, Cl,
    Br``; and its heavy-atom bin (:data:`SIZE_GROUPS`)."""
    z = [int(x) for x in numbers]
    source = "qm9" if key.startswith("qm9_") else "fragments" if key.startswith("frag_") else "other"
    rare = [f"with {sym}" for el, sym in GROUPED_ELEMENTS.items() if el in z]
    heavy = sum(1 for x in z if x > 1)
    size = next(label for top, label in SIZE_GROUPS if heavy <= top)
    return ["all", source, *(rare or ["without S, Cl, Br"]), size]


def grouped_aggregate(rows: list[dict]) -> dict[str, dict[str, float]]:
    """:func:`aggregate` of the rows in each of their ``groups`` (rows carry ``groups``, a list of labels),
    with ``n_molecules`` per group; groups ordered by their place in those lists (all, sources, chemistries,
    sizes), then as first met."""
    by_group: dict[str, list[dict]] = {}
    place: dict[str, int] = {}  # the position a group takes in chemistry_groups' lists: source, chemistry, size
    for row in rows:
        for i, g in enumerate(row["groups"]):
            by_group.setdefault(g, []).append({k: v for k, v in row.items() if k not in ("key", "groups")})
            place[g] = min(place.get(g, i), i)
    order = sorted(by_group, key=lambda g: (place[g], list(by_group).index(g)))
    return {g: {**aggregate(by_group[g]), "n_molecules": len(by_group[g])} for g in order}
