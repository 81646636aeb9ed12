"""PySCF reference values of a few committed example molecules, at the shipped models' level of theory.

    python datasets/examples/reference.py [--molecules water ethanol glycine thiophene 3-bromopyridine] \
        [--out reference_values.json]

For each molecule (``datasets/examples/<name>.xyz``) this runs one restricted Kohn–Sham SCF with eqchem's own
DFT runner (:func:`eqchem.dft.runner.run_dft`, the one that labels the training data) at the settings stored
in the shipped model files' metadata: ``xc`` (B3LYP), ``basis`` (def2-SVP), ``grids_level`` (3) and
``conv_tol`` (1e-10); PySCF's default minao initial guess, no density fitting. It refuses to run if the fast
and accurate models disagree on any of them.

Writes, next to this script (or to ``--out``):

* ``reference_values.json``: the settings and PySCF version, and per molecule the number of AOs and of doubly
  occupied orbitals, HOMO, LUMO and gap (Eh; the SCF's orbital energies), dipole vector (Debye, about the
  origin of the xyz frame), total energy (Eh), SCF cycles and convergence;
* ``reference_values.npz`` (same stem): per molecule ``<name>``, the upper triangle (``numpy.triu_indices``,
  row-major) of the converged Kohn–Sham matrix (Eh, PySCF AO order of ``gto.M(basis="def2-svp")``), enough
  for the H MAE of a prediction (mirror it for the full symmetric matrix).

tests/test_reference_values.py compares both shipped models against these files (each on the molecules its
elements cover).
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
DEFAULT_MOLECULES = ("water", "ethanol", "glycine", "thiophene", "3-bromopyridine")
SETTING_KEYS = ("xc", "basis", "grids_level", "conv_tol")


def shipped_settings() -> dict:
    """xc, basis, grids_level and conv_tol of the shipped models' training data (both must agree)."""
    import eqchem

    found = {}
    for mode in ("fast", "accurate"):
        meta = eqchem.load_model(mode, quick=True).metadata
        found[mode] = {k: meta[k] for k in SETTING_KEYS}
    if found["fast"] != found["accurate"]:
        raise SystemExit(f"the shipped models' data settings differ: {found}")
    s = found["fast"]
    return {"xc": str(s["xc"]), "basis": str(s["basis"]), "grids_level": int(s["grids_level"]),
            "conv_tol": float(s["conv_tol"])}


def reference(path: Path, settings: dict) -> tuple[dict, np.ndarray]:
    """(JSON record, full Kohn–Sham matrix) of the single structure in an xyz file."""
    import eqchem
    from eqchem import keys, orbitals
    from eqchem.dft.runner import DFTSettings, run_dft

    (structure,) = eqchem.read_structures(path)
    out = run_dft(structure, DFTSettings(xc=settings["xc"], basis=settings["basis"],
                                         grid_level=settings["grids_level"], conv_tol=settings["conv_tol"]))
    attrs = out["attrs"]
    if not attrs[keys.CONVERGED]:
        raise SystemExit(f"{path.name}: the SCF did not converge")
    eps, occ = out[keys.ORBITAL_ENERGIES], out[keys.ORBITAL_OCCUPATIONS]
    nocc = int(np.count_nonzero(occ))
    homo, lumo, gap = orbitals.frontier(eps, nocc)
    h = np.asarray(out[keys.HAMILTONIAN])
    record = {
        "file": path.name,
        "numbers": [int(z) for z in structure.numbers],
        "nao": int(h.shape[0]),
        "nocc": nocc,
        "homo": float(homo), "lumo": float(lumo), "gap": float(gap),
        "dipole_debye": [float(x) for x in out[keys.DIPOLE]],
        "energy": float(out[keys.ENERGY]),
        "scf_cycles": int(attrs[keys.SCF_CYCLES]),
        "converged": bool(attrs[keys.CONVERGED]),
    }
    return record, h


def to_json(doc: dict) -> str:
    """``doc`` as indented JSON, each list of numbers on one line."""
    def one_line(m: re.Match) -> str:
        return " ".join(m.group(0).split()).replace("[ ", "[").replace(" ]", "]")

    return re.sub(r"\[[^\[\]{}\"]*\]", one_line, json.dumps(doc, indent=1)) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--molecules", nargs="+", default=list(DEFAULT_MOLECULES),
                   help="names of datasets/examples/<name>.xyz (one structure each)")
    p.add_argument("--out", type=Path, default=HERE / "reference_values.json",
                   help="JSON file to write; the Hamiltonians go to the .npz of the same stem")
    args = p.parse_args(argv)

    import pyscf

    settings = shipped_settings()
    records, triangles = {}, {}
    for name in args.molecules:
        record, h = reference(HERE / f"{name}.xyz", settings)
        records[name] = record
        triangles[name] = h[np.triu_indices(h.shape[0])]
        print(f"{name}: nao {record['nao']}, gap {record['gap']:.6f} Eh, {record['scf_cycles']} cycles", flush=True)
    npz = args.out.with_suffix(".npz")
    np.savez_compressed(npz, **triangles)
    doc = {
        "description": "PySCF RKS references of datasets/examples molecules (datasets/examples/reference.py)",
        "settings": settings,
        "pyscf_version": pyscf.__version__,
        "units": {"homo": "Eh", "lumo": "Eh", "gap": "Eh", "energy": "Eh", "dipole_debye": "Debye"},
        "hamiltonians": {"file": npz.name, "layout": "upper triangle, numpy.triu_indices(nao), Eh"},
        "molecules": records,
    }
    args.out.write_text(to_json(doc))
    print(f"wrote {args.out} and {npz}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
