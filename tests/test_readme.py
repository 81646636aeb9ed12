"""README.md's "## Python API" example runs as written (read from the README at test time, not copied)."""
from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def section_code(heading: str, lang: str = "python") -> tuple[str, int]:
    """The first ```lang block under the '## heading' section of README.md, and the README line it starts on."""
    lines = README.read_text(encoding="utf-8").splitlines()
    start = next((i for i, line in enumerate(lines) if line.strip() == f"## {heading}"), None)
    assert start is not None, f"README.md has no '## {heading}' section"
    end = next((i for i in range(start + 1, len(lines)) if re.match(r"##?\s", lines[i])), len(lines))
    opening = next((i for i in range(start + 1, end) if lines[i].strip() == f"```{lang}"), None)
    assert opening is not None, f"README.md's '## {heading}' section has no ```{lang} block"
    closing = next((i for i in range(opening + 1, end) if lines[i].strip() == "```"), None)
    assert closing is not None, f"README.md's '## {heading}' ```{lang} block is not closed"
    return "\n".join(lines[opening + 1:closing]) + "\n", opening + 2


def _finite(x) -> bool:
    return bool(np.all(np.isfinite(np.asarray(x, dtype=float))))


def electrons(res) -> int:
    return int(np.sum(res.numbers)) - int(res.charge)


def check_result(name: str, res) -> None:
    """An eqchem prediction (or refined result) holds a consistent electronic structure."""
    h, s = np.asarray(res.hamiltonian), np.asarray(res.overlap)
    nao = h.shape[0]
    assert h.shape == s.shape == (nao, nao) and nao > 0, name
    assert np.allclose(h, h.T) and np.allclose(s, s.T), name
    assert _finite(h) and _finite(s), name
    eps, c = np.asarray(res.orbital_energies), np.asarray(res.orbital_coefficients)
    assert c.shape[0] == nao and eps.shape == (c.shape[1],) and np.all(np.diff(eps) >= -1e-10), name
    assert np.asarray(res.density_matrix).shape == (nao, nao), name
    assert 0 < res.nocc < len(eps), name
    assert res.homo == eps[res.nocc - 1] and res.lumo == eps[res.nocc], name
    assert res.gap > 0 and math.isclose(res.gap, res.lumo - res.homo), name
    assert np.asarray(res.dipole).shape == (3,) and _finite(res.dipole), name
    assert len(res.mulliken_charges) == len(res.numbers) and abs(float(np.sum(res.mulliken_charges)) - res.charge) < 1e-6, name
    assert abs(np.trace(np.asarray(res.density_matrix) @ s) - electrons(res)) < 1e-6, name  # tr(P S) = N


def test_python_api_example_runs_as_written(monkeypatch):
    code, first_line = section_code("Python API")
    monkeypatch.chdir(ROOT)  # the example's paths are relative to the repository root
    ns: dict = {"__name__": "__readme__"}
    # line numbers of a traceback are README.md's own
    exec(compile("\n" * (first_line - 1) + code, str(README), "exec"), ns)

    from eqchem.inference.result import OrbitalResult

    defined = {k: v for k, v in ns.items() if not k.startswith("__")}
    results = {k: v for k, v in defined.items() if isinstance(v, OrbitalResult)}
    assert "res" in results, f"the example should bind a prediction to `res`; it defines {sorted(defined)}"
    for name, value in results.items():
        check_result(name, value)
    res = results["res"]
    if "model" in defined:
        model = defined["model"]
        assert res.basis == getattr(model, "basis", res.basis)
    if "mf" in defined:  # res.to_pyscf(): PySCF's view of the predicted orbitals
        mf = defined["mf"]
        assert np.array_equal(mf.mo_energy, res.orbital_energies)
        assert np.array_equal(mf.mo_coeff, res.orbital_coefficients)
        assert float(np.sum(mf.mo_occ)) == electrons(res)
        assert mf.mol.nao == res.hamiltonian.shape[0]
    if "cycles" in defined:
        cycles = defined["cycles"]
        assert isinstance(cycles, (int, np.integer)) and not isinstance(cycles, bool) and cycles >= 0, cycles
    if "converged" in defined:  # a name promising a flag must hold one
        converged = defined["converged"]
        assert isinstance(converged, (bool, np.bool_)), (
            f"`converged` is a {type(converged).__name__}, not a bool: README.md's example misnames what it unpacks")
    for name, refined in results.items():
        if name != "res":  # res.refine(): the SCF from the prediction converged to a nearby Hamiltonian
            assert refined.settings.get("converged") is True, name
            assert refined.hamiltonian.shape == res.hamiltonian.shape, name
            assert abs(refined.gap - res.gap) < 0.05, name  # Eh; the model's gap error is ~0.003 Eh
