"""datasets/distorted: one bond stretched or squeezed by the factor, its moving side rigid, the rest in place."""
from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent


def _recipe():
    sys.path.insert(0, str(ROOT / "datasets" / "qm9"))
    spec = importlib.util.spec_from_file_location("distorted_recipe", ROOT / "datasets" / "distorted" / "recipe.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("kind, factor", [("xh", 1.3), ("xx", 1.3), ("xx", 0.85)])
def test_one_bond_scaled_and_one_side_moved_rigidly(kind, factor):
    from eqchem.io.readers import read_structures

    recipe = _recipe()
    s = read_structures("OCC1CC1")[0]  # a ring: its bonds are never the heavy-atom bond stretched
    z, r = s.numbers, s.positions
    new, label = recipe.distort(z, r, kind, factor, np.random.default_rng(3))
    a, b = (int(i) - 1 for i in re.findall(r"[A-Z][a-z]?(\d+)", label))  # 'C2-O9': the fixed atom, the moved one
    assert np.linalg.norm(new[b] - new[a]) == pytest.approx(factor * np.linalg.norm(r[b] - r[a]))
    moved = np.linalg.norm(new - r, axis=1) > 1e-9
    assert moved[b] and not moved[a]
    d_old = np.linalg.norm(r[:, None] - r[None], axis=-1)
    d_new = np.linalg.norm(new[:, None] - new[None], axis=-1)
    assert np.allclose(d_new[np.ix_(moved, moved)], d_old[np.ix_(moved, moved)])    # rigid
    assert np.allclose(d_new[np.ix_(~moved, ~moved)], d_old[np.ix_(~moved, ~moved)])
    if kind == "xh":
        assert z[b] == 1 and moved.sum() == 1
    else:
        assert z[a] > 1 and z[b] > 1 and recipe.side(len(z), recipe.bonds(z, r), (a, b), b) is not None
