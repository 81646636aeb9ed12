"""Metrics by chemistry and size: which groups a molecule counts in, and the groups' means."""
from __future__ import annotations

import math

from eqchem.metrics import chemistry_groups, grouped_aggregate


def test_a_molecule_counts_in_its_source_its_rare_elements_and_its_size_bin():
    thiophene = [16, 6, 6, 6, 6, 1, 1, 1, 1]
    assert chemistry_groups("frag_00001", thiophene) == ["all", "fragments", "with S", "≤ 9 heavy atoms"]
    both = [17, 35] + [6] * 8 + [1] * 6
    assert chemistry_groups("frag_00002", both) == ["all", "fragments", "with Cl", "with Br", "10–12 heavy atoms"]
    assert chemistry_groups("qm9_000001", [6] * 13 + [1] * 10) == ["all", "qm9", "without S, Cl, Br",
                                                                  "> 12 heavy atoms"]
    assert chemistry_groups("mol", [8, 1, 1])[1] == "other"


def test_each_group_is_the_mean_over_its_molecules():
    rows = [{"key": "a", "h_mae_uEh": 100.0, "groups": ["all", "with S"]},
            {"key": "b", "h_mae_uEh": 300.0, "groups": ["all", "without S, Cl, Br"]},
            {"key": "c", "h_mae_uEh": float("nan"), "groups": ["all", "with S"]}]
    g = grouped_aggregate(rows)
    assert list(g) == ["all", "with S", "without S, Cl, Br"]
    assert g["all"] == {"h_mae_uEh": 200.0, "n_molecules": 3}
    assert g["with S"]["h_mae_uEh"] == 100.0 and g["with S"]["n_molecules"] == 2  # NaN ignored in the mean
    assert not math.isnan(g["without S, Cl, Br"]["h_mae_uEh"])
