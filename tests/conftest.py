"""Shared fixtures: small molecules, PySCF runs cached per session, and a CLI runner."""
from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("OMP_NUM_THREADS", "2")

WATER = ([8, 1, 1], [[0.0, 0.0, 0.1173], [0.0, 0.7572, -0.4692], [0.0, -0.7572, -0.4692]])
ETHANOL = (
    [6, 6, 8, 1, 1, 1, 1, 1, 1],
    [[-0.0014, -0.5500, 0.0000], [1.2023, 0.3822, 0.0000], [-1.1985, 0.2283, 0.0000],
     [-0.0246, -1.1931, 0.8854], [-0.0246, -1.1931, -0.8854], [2.1393, -0.1818, 0.0000],
     [1.1729, 1.0271, 0.8814], [1.1729, 1.0271, -0.8814], [-1.9543, -0.3712, 0.0000]],
)


def make_structure(mol, name="mol", **kw):
    from eqchem.io.structure import Structure

    return Structure(mol[0], mol[1], name=name, source=name, **kw)


WATER_LEVEL = ["--xc", "pbe", "--basis", "sto-3g", "--grid-level", "2", "--conv-tol", "1e-9"]


def generate_water_set(directory, samples: int, seed: int):
    """``directory``/water.xyz (equilibrium water) and water.h5: it plus ``samples`` geometries jittered by
    0.05 Å, PBE/STO-3G (WATER_LEVEL), through the CLI. Returns the data file."""
    from typer.testing import CliRunner

    from eqchem.cli.main import app

    (directory / "water.xyz").write_text("3\nname=water\nO 0.0 0.0 0.1173\nH 0.0 0.7572 -0.4692\n"
                                         "H 0.0 -0.7572 -0.4692\n")
    res = CliRunner().invoke(app, ["generate", str(directory / "water.xyz"), "--out", str(directory / "water.h5"),
                                   "--jitter", "0.05", "--samples", str(samples), "--seed", str(seed), *WATER_LEVEL])
    assert res.exit_code == 0, res.output
    return directory / "water.h5"


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture
def run_cli():
    """Run the eqchem CLI in-process; returns (exit_code, stdout+stderr)."""
    from typer.testing import CliRunner

    from eqchem.cli.main import app

    def _run(*args):
        res = CliRunner().invoke(app, [str(a) for a in args])
        return res.exit_code, res.output

    return _run
