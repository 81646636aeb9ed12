"""Start-up of a fresh ``eqchem`` process: what it skips must not change what it computes.

sympy is deferred while e3nn imports (``eqchem.model.e3nn_setup``); the console script leaves with
``os._exit`` only once nothing is left to write (``eqchem.cli.main.run``). Wall times are in
``bench/vs_pyscf.py``, not here.
"""
from __future__ import annotations

import json
import subprocess
import sys

import h5py
import numpy as np

WATER_XYZ = "3\nwater\nO 0.0 0.0 0.117\nH 0.0 0.757 -0.469\nH 0.0 -0.757 -0.469\n"

LEGENDRE = ("import torch, e3nn.o3 as o3\n"
            "a, b = torch.tensor([0.3, 1.1]), torch.tensor([0.9, 2.0])\n"
            "print('VALUES', o3.Legendre([0, 1, 2, 3])(torch.cos(b), torch.sin(b)).tolist(),"
            " o3.spherical_harmonics_alpha_beta([1, 2], a, b).tolist())\n")


def _run(code: str) -> str:
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    return res.stdout


def _values(out: str):
    line = next(ln for ln in out.splitlines() if ln.startswith("VALUES"))
    return json.loads("[" + line.split(" ", 1)[1].replace("] [", "], [") + "]")


def test_loading_a_model_does_not_import_sympy_and_e3nn_legendre_still_matches_plain_e3nn():
    deferred = _run("import sys\nfrom eqchem.inference.model_file import load_model\nload_model('fast')\n"
                    "print('SYMPY', 'sympy' in sys.modules)\n" + LEGENDRE
                    + "print('SYMPY_AFTER', type(sys.modules.get('sympy')).__name__)\n")
    assert "SYMPY False" in deferred          # the shipped model loads without sympy
    assert "SYMPY_AFTER module" in deferred   # the Legendre builders imported the real sympy when first used
    plain = _run("import sympy\n" + LEGENDRE)  # e3nn as it imports without eqchem
    np.testing.assert_array_equal(np.array(_values(deferred)[0]), np.array(_values(plain)[0]))
    np.testing.assert_array_equal(np.array(_values(deferred)[1]), np.array(_values(plain)[1]))


def test_a_module_needing_other_sympy_names_while_e3nn_imports_fails_loudly():
    from eqchem.model.e3nn_setup import _SympyPlaceholder

    placeholder = _SympyPlaceholder("sympy")
    assert "Integer" in repr(placeholder.Integer)
    try:
        placeholder.Matrix
    except AttributeError as exc:
        assert "deferred" in str(exc)
    else:
        raise AssertionError("a name e3nn does not take must not resolve")


def test_quick_exit_only_once_nothing_is_left_to_write(tmp_path):
    from eqchem.cli.main import _nothing_left_to_write

    assert _nothing_left_to_write()
    with h5py.File(tmp_path / "open.h5", "w"):
        assert not _nothing_left_to_write()  # an open HDF5 file: exit normally, so HDF5 closes it
    assert _nothing_left_to_write()


def test_console_script_writes_complete_outputs_and_keeps_exit_codes(tmp_path):
    (tmp_path / "w.xyz").write_text(WATER_XYZ)
    for out in ("r.json", "r.h5"):
        res = subprocess.run([sys.executable, "-m", "eqchem.cli", "predict", "--mode", "fast", str(tmp_path / "w.xyz"),
                              "-o", str(tmp_path / out)], capture_output=True, text=True, timeout=300)
        assert res.returncode == 0, res.stdout + res.stderr
        assert "1 structure(s) in" in res.stdout  # stdout flushed before the quick exit
    assert json.loads((tmp_path / "r.json").read_text())[0]["name"] == "w"
    with h5py.File(tmp_path / "r.h5", "r") as f:
        assert f["molecules/w/hamiltonian"].shape == (24, 24)
    res = subprocess.run([sys.executable, "-m", "eqchem.cli", "predict", str(tmp_path / "missing.xyz")],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 2 and "missing.xyz" in res.stderr
