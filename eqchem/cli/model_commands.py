"""``eqchem predict``, ``eqchem diagonalize``, ``eqchem evaluate``."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from .common import console, user_errors
from .main import app


def _load_model_for_cli(model: Optional[str]):
    from ..inference.model_file import load_model

    return load_model(None if model in (None, "default") else model)


@app.command()
@user_errors
def predict(
    inputs: List[str] = typer.Argument(..., help="xyz / multi-frame xyz / SDF / .smi files or SMILES strings."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Model file (default: the shipped model)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="results.json or results.h5."),
    molden: Optional[Path] = typer.Option(None, "--molden", help="Directory for molden files of the orbitals."),
    cube: Optional[str] = typer.Option(None, "--cube", help="Comma list of homo,lumo,density cube files."),
    cube_dir: Path = typer.Option(Path("cubes"), "--cube-dir", help="Directory for cube files."),
    energy: bool = typer.Option(False, "--energy", help="Evaluate the DFT energy at the predicted density."),
    refine: bool = typer.Option(False, "--refine", help="Converge PySCF's SCF from the prediction (and from minao)."),
    fock_step: bool = typer.Option(True, "--fock-step/--no-fock-step",
                                   help="Apply the model's damped Fock step (if it has one) after the network."),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda."),
    batch_size: int = typer.Option(16, "--batch-size", help="Structures per network call."),
):
    """Predict Hamiltonians, orbitals, HOMO/LUMO, dipoles and charges of molecules."""
    import time
    import warnings

    from rich.table import Table

    from ..errors import InputError
    from ..inference import writers
    from ..inference.predict import predict_structures
    from ..io.readers import read_structures
    from ..units import HARTREE_EV

    if out is not None and out.suffix not in (".json", ".h5", ".hdf5"):
        raise InputError(f"--out must end in .json or .h5, got '{out.name}'")
    kinds = [k.strip() for k in cube.split(",")] if cube else []
    bad = [k for k in kinds if k not in writers.CUBE_KINDS]
    if bad:
        raise InputError(f"--cube takes {', '.join(writers.CUBE_KINDS)}; got {', '.join(bad)}")
    t0 = time.perf_counter()
    m = _load_model_for_cli(model)
    structures = [s for inp in inputs for s in read_structures(inp)]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        results = predict_structures(structures, m, batch_size=batch_size, device=device, fock_step=fock_step)
    for w in caught:
        console.print(f"[yellow]warning:[/] {w.message}", highlight=False)
    records = []
    for r in results:
        rec = r.summary()
        if energy:
            rec["energy_hartree"] = r.energy()
        if refine:
            from ..dft.runner import make_scf, run_scf

            converged, cycles = r.refine()
            rec["scf_cycles"] = cycles
            rec["scf_cycles_minao"] = run_scf(make_scf(r.mole, r.dft_settings()))
            rec["refined_energy_hartree"] = converged.settings["energy"]
            r.settings["energy"] = converged.settings["energy"]
        if energy and "energy" not in r.settings:
            r.settings["energy"] = rec["energy_hartree"]
        records.append(rec)
        if molden is not None:
            from ..data.store import sanitize_key

            writers.write_molden(molden / f"{sanitize_key(r.name)}.molden", r)
        if kinds:
            writers.write_cubes(cube_dir, r, kinds)
    table = Table(title=f"eqchem predict ({m.path.name if m.path else 'model'}: {m.xc}/{m.basis})")
    for col in ("name", "formula", "atoms", "HOMO eV", "LUMO eV", "gap eV", "dipole D", "ms"):
        table.add_column(col, justify="left" if col in ("name", "formula") else "right")
    for r, rec in zip(results, records):
        table.add_row(r.name, rec["formula"], str(rec["n_atoms"]), f"{r.homo * HARTREE_EV:.3f}",
                      f"{r.lumo * HARTREE_EV:.3f}", f"{r.gap * HARTREE_EV:.3f}", f"{rec['dipole_norm_debye']:.3f}",
                      f"{r.seconds * 1e3:.1f}")
    console.print(table)
    if out is not None:
        if out.suffix == ".json":
            writers.write_json(out, records)
        else:
            writers.write_h5(out, results, {"xc": m.xc, "basis": m.basis, "model": str(m.path)})
        console.print(f"wrote {out}", highlight=False)
    console.print(f"{len(results)} structure(s) in {time.perf_counter() - t0:.2f} s", highlight=False)


@app.command()
@user_errors
def diagonalize(
    path: Path = typer.Argument(..., help="eqchem HDF5 file with Hamiltonians (data or predictions)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Output HDF5 (default: <input>_orbitals.h5)."),
    threshold: float = typer.Option(1e-8, help="Drop overlap eigenvalues below this (canonical orthogonalization)."),
    recompute_overlap: bool = typer.Option(False, "--recompute-overlap", help="Build S from geometry and basis."),
):
    """Solve H C = S C ε for every stored Hamiltonian: orbitals, density, HOMO/LUMO/gap, dipole, charges."""
    from rich.table import Table

    from ..data.reader import H5Dataset
    from ..errors import DataError
    from ..inference import writers
    from ..inference.result import from_matrix
    from ..units import HARTREE_EV

    ds = H5Dataset(path)
    if len(ds) == 0:
        raise DataError(f"{path} holds no structures")
    results = []
    for rec in ds:
        if rec.hamiltonian.ndim != 2:
            raise DataError(f"{rec.key}: spin-polarized Hamiltonians are not supported by diagonalize yet")
        r = from_matrix(rec.key, rec.numbers, rec.positions, rec.hamiltonian, rec.overlap, ds.basis, ds.xc,
                        rec.charge, threshold=threshold)
        if recompute_overlap:
            s = r.mole.intor_symmetric("int1e_ovlp")
            r = from_matrix(rec.key, rec.numbers, rec.positions, rec.hamiltonian, s, ds.basis, ds.xc, rec.charge,
                            threshold=threshold)
        if rec.energy is not None:
            r.settings["energy"] = rec.energy
        results.append(r)
    out = out or path.with_name(path.stem + "_orbitals.h5")
    writers.write_h5(out, results, {"xc": ds.xc, "basis": ds.basis, "diagonalized_from": str(path)})
    table = Table(title=f"{path.name}: H C = S C ε")
    for col in ("structure", "nmo", "HOMO eV", "LUMO eV", "gap eV", "dipole D"):
        table.add_column(col, justify="left" if col == "structure" else "right")
    for r in results[:50]:
        table.add_row(r.name, str(len(r.orbital_energies)), f"{r.homo * HARTREE_EV:.4f}", f"{r.lumo * HARTREE_EV:.4f}",
                      f"{r.gap * HARTREE_EV:.4f}", f"{float((r.dipole ** 2).sum() ** 0.5):.4f}")
    console.print(table)
    console.print(f"wrote {out} ({len(results)} structures)", highlight=False)


@app.command()
@user_errors
def evaluate(
    data: Path = typer.Argument(..., help="Reference eqchem HDF5 file (same basis and functional as the model)."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Model file (default: the shipped model)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="metrics.json"),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Parity plot (png) of H elements."),
    scf: bool = typer.Option(False, "--scf", help="Also measure SCF cycles from the prediction vs minao."),
    limit: Optional[int] = typer.Option(None, help="Evaluate only the first N structures."),
    batch_size: int = typer.Option(16, "--batch-size"),
    fock_step: bool = typer.Option(True, "--fock-step/--no-fock-step",
                                   help="Apply the model's damped Fock step (if it has one) after the network."),
):
    """Model accuracy on reference data: H MAE (all/diag/off-diag), ε, ψ, HOMO/LUMO/gap, SCF ratio."""
    from rich.table import Table

    from ..data.reader import H5Dataset
    from ..inference import writers
    from ..inference.evaluate import evaluate as run_eval
    from .common import ProgressReporter

    ds = H5Dataset(data)
    m = _load_model_for_cli(model)
    n = min(limit, len(ds)) if limit else len(ds)
    with ProgressReporter("evaluate", n) as bar:
        res = run_eval(ds, m, scf=scf, batch_size=batch_size, limit=limit, on_molecule=lambda k: bar.advance(k),
                       fock_step=fock_step)
    table = Table(title=f"{data.name}: {res['summary'].get('n_molecules', 0)} structures, model {m.path.name}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for k, v in res["summary"].items():
        table.add_row(k, f"{v:.4g}" if isinstance(v, float) else str(v))
    console.print(table)
    if out is not None:
        writers.write_json(out, [{"summary": res["summary"], "molecules": res["molecules"],
                                  "model": str(m.path), "data": str(data)}])
        console.print(f"wrote {out}", highlight=False)
    if plot is not None:
        from ..plots import parity_plot

        parity_plot(plot, res["parity"]["ref"], res["parity"]["pred"], res["summary"])
        console.print(f"wrote {plot}", highlight=False)
