"""README.md's "## Python API" example runs as written (read from the README at test time, not copied)."""
from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
EXAMPLES = ROOT / "datasets" / "examples"
# A converged refine() and an SCF from PySCF's own guess reach the same state: measured on glycine (fast model,
# B3LYP/def2-SVP, conv_tol 1e-10), gap 1.5e-7, HOMO 3.8e-7, LUMO 2.3e-7 Eh and energy 1.6e-12 Eh apart. The
# bounds leave room for the SCF's convergence criterion (orbital gradient 1e-5); the prediction itself is
# ~2.5e-3 Eh off in the gap, so a refine() that returns (or stops near) the prediction does not pass.
ORBITAL_TOL = 1e-5  # Eh
ENERGY_TOL = 1e-8  # Eh


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


def record_scf_runs(monkeypatch) -> list[dict]:
    """Every PySCF SCF run from now on (``SCF.scf``, behind ``kernel``): its initial density, PySCF's own cycle
    count, convergence and energy."""
    from pyscf.scf import hf

    runs: list[dict] = []
    original = hf.SCF.scf

    def scf(self, dm0=None, **kwargs):
        e_tot = original(self, dm0, **kwargs)
        runs.append({"dm0": None if dm0 is None else np.array(dm0), "cycles": int(self.cycles),
                     "converged": bool(self.converged), "e_tot": float(self.e_tot)})
        return e_tot

    monkeypatch.setattr(hf.SCF, "scf", scf)
    return runs


def reference_scf(res) -> dict:
    """HOMO, LUMO, gap and energy (Eh) of PySCF's SCF of ``res``'s molecule at its model's settings, from PySCF's
    own initial guess: the stored reference of a datasets/examples molecule (datasets/examples/reference.py), else
    a fresh PySCF run."""
    import eqchem

    doc = json.loads((EXAMPLES / "reference_values.json").read_text())
    settings = {"xc": res.xc, "basis": res.basis, "grids_level": int(res.settings.get("grids_level") or 3),
                "conv_tol": float(res.settings.get("conv_tol") or 1e-10)}
    for rec in doc["molecules"].values():
        (s,) = eqchem.read_structures(EXAMPLES / rec["file"])
        if (doc["settings"] == settings and np.array_equal(s.numbers, res.numbers)
                and np.allclose(s.positions, res.positions, atol=1e-8)):
            return rec
    from pyscf import dft

    mf = dft.RKS(res.mole.copy())
    mf.xc, mf.grids.level, mf.conv_tol = settings["xc"], settings["grids_level"], settings["conv_tol"]
    mf.kernel()
    assert mf.converged
    nocc = int(np.count_nonzero(mf.mo_occ))
    homo, lumo = float(mf.mo_energy[nocc - 1]), float(mf.mo_energy[nocc])
    return {"homo": homo, "lumo": lumo, "gap": lumo - homo, "energy": float(mf.e_tot)}


def test_python_api_example_runs_as_written(monkeypatch):
    code, first_line = section_code("Python API")
    monkeypatch.chdir(ROOT)  # the example's paths are relative to the repository root
    ns: dict = {"__name__": "__readme__"}
    scf_runs = record_scf_runs(monkeypatch)
    # line numbers of a traceback are README.md's own
    exec(compile("\n" * (first_line - 1) + code, str(README), "exec"), ns)
    scf_runs = list(scf_runs)

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
    refined_results = {k: v for k, v in results.items() if k != "res"}
    # each res.refine() runs one SCF, and nothing else in the example does
    assert len(scf_runs) == len(refined_results), (len(scf_runs), sorted(refined_results))
    if "cycles" in defined:  # the count refine() returns is PySCF's own count of the SCF's iterations
        cycles = defined["cycles"]
        assert isinstance(cycles, (int, np.integer)) and not isinstance(cycles, bool) and cycles >= 1, cycles
        pyscf_cycles = [r["cycles"] for r in scf_runs]
        assert pyscf_cycles and cycles == pyscf_cycles[-1], (cycles, pyscf_cycles)
    if "converged" in defined:  # a name promising a flag must hold one
        converged = defined["converged"]
        assert isinstance(converged, (bool, np.bool_)), (
            f"`converged` is a {type(converged).__name__}, not a bool: README.md's example misnames what it unpacks")
    for name, refined in refined_results.items():  # res.refine(): PySCF's SCF from the predicted density
        assert refined.settings.get("converged") is True, name
        assert refined.hamiltonian.shape == res.hamiltonian.shape, name
        run = next((r for r in scf_runs if r["e_tot"] == refined.settings["energy"]), None)
        assert run is not None and run["converged"], name
        assert run["dm0"] is not None and np.allclose(run["dm0"], res.density_matrix, atol=1e-10), (
            f"{name}: the SCF did not start from the predicted density")
        ref = reference_scf(refined)  # the same SCF from PySCF's own guess reaches the same state
        errors = {k: abs(getattr(refined, k) - ref[k]) for k in ("homo", "lumo", "gap")}
        assert max(errors.values()) < ORBITAL_TOL, (name, errors)
        assert abs(refined.settings["energy"] - ref["energy"]) < ENERGY_TOL, (name, refined.settings["energy"], ref)
