"""``eqchem predict``, ``eqchem diagonalize``, ``eqchem evaluate``."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from .common import console, print_table, user_errors
from .app import app
from .trust import trust_lines


QUICK_BUILD_STRUCTURES = 48
"""``eqchem predict`` of at most this many structures in this process builds the network without e3nn's
einsum-order search (seconds less start-up, a slower forward pass; ``load_model(quick=True)``)."""
MODE_HELP = "Shipped model: fast (no Fock build) or accurate (two cheap Fock builds); default: the package's default mode."


def _load_model_for_cli(model: Optional[str], mode: Optional[str] = None, quick: bool = False):
    """``quick``: a run of a few structures in this process (see :func:`~eqchem.inference.model_file.load_model`)."""
    from ..errors import InputError
    from ..inference.model_file import load_model
    from ..model.file import default_model_path

    if model is not None and mode is not None:
        raise InputError("give --model FILE or --mode fast|accurate, not both")
    if mode is not None:
        default_model_path(mode)  # an unknown mode: one line naming the modes
        return load_model(mode, quick=quick)
    return load_model(model, quick=quick)  # None or "default": the default mode's shipped model


@app.command()
@user_errors
def predict(
    inputs: List[str] = typer.Argument(..., help="xyz / multi-frame xyz / SDF / .smi files or SMILES strings."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Model file (default: the shipped model)."),
    mode: Optional[str] = typer.Option(None, "--mode", help=MODE_HELP),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="results.json or results.h5 (written as each "
                                       "structure finishes)."),
    charge: Optional[int] = typer.Option(None, "--charge", help="Total charge of every input structure "
                                         "(default: what the input says: xyz comment charge=, SMILES formal charges)."),
    spin: Optional[int] = typer.Option(None, "--spin", help="2S = N_alpha - N_beta of every input structure "
                                       "(default: what the input says, else 0)."),
    allow_extrapolation: bool = typer.Option(False, "--allow-extrapolation",
                                             help="Predict charges/spins outside the model's training data "
                                                  "(every output then says so)."),
    molden: Optional[Path] = typer.Option(None, "--molden", help="Directory for molden files of the orbitals."),
    cube: Optional[str] = typer.Option(None, "--cube", help="Comma list of homo,lumo,density cube files."),
    cube_dir: Path = typer.Option(Path("cubes"), "--cube-dir", help="Directory for cube files."),
    energy: bool = typer.Option(False, "--energy", help="Evaluate the DFT energy at the predicted density."),
    refine: bool = typer.Option(False, "--refine", help="Converge PySCF's SCF from the prediction (and from minao)."),
    fock_step: bool = typer.Option(True, "--fock-step/--no-fock-step",
                                   help="Apply the model's damped Fock step (if it has one) after the network."),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda."),
    batch_size: int = typer.Option(16, "--batch-size", help="Structures per network call."),
    workers: Optional[int] = typer.Option(None, "--workers", help="Processes on the CPU, one thread each "
                                          "(default: every usable core once there are 4 batches or more, else 1)."),
    timings: bool = typer.Option(False, "--timings", help="After the results, print the wall time of every "
                                 "prediction stage (s): total and per molecule (summed over processes)."),
    threads: Optional[int] = typer.Option(None, "--threads", help="Threads of this process for torch, PySCF and "
                                          "BLAS (default: 1, or OMP_NUM_THREADS where set; more cores: --workers)."),
    check: bool = typer.Option(False, "--check", help="Check each prediction at the cost of one cheap Fock build "
                               "from its density (the accurate mode's own Fock step; or a second shipped model where "
                               "the model file names one): flag those whose gap shift, beyond its typical one and "
                               "with the gap's error bar, scores above the model's threshold."),
):
    """Predict Hamiltonians, orbitals, HOMO/LUMO, dipoles and charges of molecules.

    With a model that carries error estimates (the shipped ones), every result gives its estimated 1σ errors
    (gap 7.21 ± 0.08 eV in the table; all of them in the JSON/HDF5 output) and says when the molecule lies
    outside the training data (out of domain, with the reason) or, with --check, when it is flagged.

    Threads: this process predicts with one thread per library (torch, PySCF, BLAS) unless --threads or
    OMP_NUM_THREADS says otherwise: a small molecule gains little from a second thread and, on cores shared
    with other busy processes, loses much (bench/shared_machine.py); many molecules use the cores through
    --workers processes of one thread each.
    """
    import time

    from ..cpu import use_inference_threads
    from ..errors import InputError

    t0 = time.perf_counter()
    if threads is not None and threads < 1:
        raise InputError(f"--threads must be at least 1, got {threads}")
    use_inference_threads(threads)  # before torch, PySCF and NumPy start their thread pools
    from ..inference import writers
    from ..io.readers import read_structures

    if out is not None and out.suffix not in (".json", ".h5", ".hdf5"):
        raise InputError(f"--out must end in .json or .h5, got '{out.name}'")
    kinds = [k.strip() for k in cube.split(",")] if cube else []
    bad = [k for k in kinds if k not in writers.CUBE_KINDS]
    if bad:
        raise InputError(f"--cube takes {', '.join(writers.CUBE_KINDS)}; got {', '.join(bad)}")
    for path, option, is_dir in ((out, "--out", False), (molden, "--molden", True),
                                 (cube_dir if kinds else None, "--cube-dir", True)):
        if path is not None:
            writers.check_output_path(path, option, directory=is_dir)
    if workers is not None and workers < 1:
        raise InputError(f"--workers must be at least 1, got {workers}")
    structures = [s for inp in inputs for s in read_structures(inp, charge=charge, spin=spin)]
    if workers is None:
        from ..cpu import available_cores

        workers = available_cores() if device == "cpu" and len(structures) >= 4 * batch_size else 1
    from ..inference.parallel import helper_processes

    ahead = None
    in_process = not helper_processes(len(structures), batch_size, workers, device, True)
    if device == "cpu" and in_process and not (model and mode):
        from ..inference.integrals_ahead import start_integrals_ahead

        # PySCF's integrals of the first batch in a second process while this one imports torch
        ahead = start_integrals_ahead(mode or model, structures[:batch_size])
    try:
        # a few batches here: the quick build; helper processes (many batches) build their own, optimized
        m = _load_model_for_cli(model, mode, quick=in_process and len(structures) <= QUICK_BUILD_STRUCTURES)
        _run_predictions(structures, m, out, molden, kinds, cube_dir, energy, refine, fock_step, device, batch_size,
                         allow_extrapolation, t0, timings, workers, ahead, check)
    finally:
        if ahead is not None:
            ahead.close()


def _run_predictions(structures, m, out, molden, kinds, cube_dir, energy, refine, fock_step, device, batch_size,
                     allow_extrapolation, t0, timings: bool = False, workers: int = 1, ahead=None,
                     check: bool = False) -> None:
    """Predict, post-process and write each structure as it finishes; the table at the end (also on Ctrl-C),
    then with ``timings`` the table of stage wall times. ``ahead``: an
    :class:`~eqchem.inference.integrals_ahead.IntegralsAhead` of the first structures, or None."""
    import time
    import warnings

    from ..inference import writers
    from ..inference.pipeline import StageTimings
    from ..inference.checks import ExtrapolationWarning, check_structures
    from ..inference.predict import iter_predictions
    from .common import ProgressReporter

    stage_times = StageTimings()
    known_shells = ahead.shells() if ahead is not None else None  # PySCF's shells for the basis check
    with warnings.catch_warnings(), stage_times.stage("structures"):
        warnings.simplefilter("ignore", ExtrapolationWarning)  # shown per structure below instead
        checked = check_structures(m, structures, allow_extrapolation, known_shells)  # a bad one stops the run here
    stream = writers.ResultStream(out, {"xc": m.xc, "basis": m.basis, "model": str(m.path)}) if out else None
    builds = m.fock_builds(fock_step)
    from ..inference.parallel import helper_processes

    processes = helper_processes(len(structures), batch_size, workers, device, m.path)
    console.print(f"predicting {len(structures)} structure(s) with {m.path.name if m.path else 'model'} "
                  f"({m.xc}/{m.basis}; network" + (f" + {builds} cheap Fock build(s) each" if builds else "")
                  + (f"; {processes} processes)" if processes else ")"), highlight=False)
    rows: list[tuple] = []
    interrupted = False
    try:
        with ProgressReporter("predict", len(structures), interval=10.0) as bar:
            for r in iter_predictions(structures, m, batch_size=batch_size, device=device, fock_step=fock_step,
                                      checked=checked, timings=stage_times, workers=workers,
                                      integrals_ahead=ahead, check=check):
                rec = _finish_prediction(r, energy, refine, molden, kinds, cube_dir)
                for w in r.warnings:
                    bar.log(f"[yellow]warning:[/] {r.name}: {w}: the prediction is an extrapolation")
                for line in trust_lines(r):
                    bar.log(line)
                if stream:
                    stream.add(r, rec)
                rows.append((r, rec))
                bar.advance(f"{r.name} {r.seconds:.1f} s")
    except KeyboardInterrupt:
        interrupted = True
    print_table(_prediction_table(rows, m, energy, refine))
    if timings:
        print_table(_timings_table(stage_times))
    if stream:
        console.print(f"wrote {stream.path} ({stream.count} structure(s))", highlight=False)
    console.print(f"{len(rows)} structure(s) in {time.perf_counter() - t0:.2f} s", highlight=False)
    if interrupted:
        from .common import fail

        fail(f"interrupted after {len(rows)} of {len(structures)} structure(s)"
             + (f"; the finished ones are in {stream.path}" if stream else ""), 130)


def _finish_prediction(r, energy: bool, refine: bool, molden, kinds, cube_dir) -> dict:
    """The JSON record of one prediction, with the energy / refined SCF when asked; its molden/cube files."""
    from ..inference import writers

    rec = r.summary()
    if energy:
        rec["energy_hartree"] = r.settings["energy"] = r.energy()
    if refine:
        converged, cycles = r.refine()
        rec["scf_cycles"] = cycles
        rec["scf_converged"] = bool(converged.settings["converged"])
        rec["scf_cycles_minao"] = r.minao_scf_cycles()
        rec["refined_energy_hartree"] = r.settings["energy"] = converged.settings["energy"]
        refined = converged.summary()
        rec["refined_homo_ev"], rec["refined_gap_ev"] = refined["homo_ev"], refined["gap_ev"]
    if molden is not None:
        from ..data.store import sanitize_key

        writers.write_molden(molden / f"{sanitize_key(r.name)}.molden", r)
    if kinds:
        writers.write_cubes(cube_dir, r, kinds)
    return rec


def _prediction_table(rows, m, energy: bool, refine: bool):
    from rich.table import Table

    title = f"eqchem predict ({m.path.name if m.path else 'model'}: {m.xc}/{m.basis})"
    if any(r.warnings for r, _ in rows):
        title += "  * = extrapolation (see warnings)"
    uncertain = any(r.uncertainty is not None for r, _ in rows)
    if uncertain:
        title += "  ± = estimated 1σ error; trust: ok, out of domain (see notes), flagged (--check)"
    table = Table(title=title)
    cols = ["name", "formula", "atoms"]
    if any(r.charge or r.spin for r, _ in rows):
        cols += ["charge", "2S"]
    cols += ["HOMO eV", "LUMO eV", "gap eV", "dipole D"]
    cols += ["E Eh"] if energy else []
    cols += ["SCF cycles (minao)", "E_SCF Eh", "gap_SCF eV"] if refine else []
    cols += ["trust"] if uncertain else []
    cols += ["ms"]
    for col in cols:
        table.add_column(col, justify="left" if col in ("name", "formula") else "right", no_wrap=col == "name")
    for r, rec in rows:
        cells = {"name": r.name + (" *" if r.warnings else ""), "formula": rec["formula"],
                 "atoms": str(rec["n_atoms"]), "charge": f"{r.charge:+d}" if r.charge else "0", "2S": str(r.spin),
                 "HOMO eV": f"{rec['homo_ev']:.3f}", "LUMO eV": f"{rec['lumo_ev']:.3f}",
                 "gap eV": f"{rec['gap_ev']:.3f}", "dipole D": f"{rec['dipole_norm_debye']:.3f}",
                 "ms": f"{r.seconds * 1e3:.1f}"}
        u = r.uncertainty
        if u is not None:
            cells["HOMO eV"] += f" ± {u.homo_ev:.2f}"
            cells["LUMO eV"] += f" ± {u.lumo_ev:.2f}"
            cells["gap eV"] += f" ± {u.gap_ev:.2f}"
            cells["dipole D"] += f" ± {u.dipole_debye:.2f}"
            cells["trust"] = "flagged" if u.flagged else "out of domain" if not u.in_domain else "ok"
        elif uncertain:
            cells["trust"] = "-"
        if energy:
            cells["E Eh"] = f"{rec['energy_hartree']:.6f}"
        if refine:
            cells["SCF cycles (minao)"] = f"{rec['scf_cycles']} ({rec['scf_cycles_minao']})"
            cells["E_SCF Eh"] = f"{rec['refined_energy_hartree']:.6f}"
            cells["gap_SCF eV"] = f"{rec['refined_gap_ev']:.3f}"
        table.add_row(*(cells[c] for c in cols))
    return table


def _timings_table(timings):
    """Seconds of every prediction stage (:data:`eqchem.inference.pipeline.STAGES`), total and per molecule."""
    from rich.table import Table

    n = timings.molecules
    table = Table(title=f"prediction stages (wall time, {n} molecule(s))")
    for col in ("stage", "s", "s / molecule", "share"):
        table.add_column(col, justify="left" if col == "stage" else "right")
    total = timings.total
    per = timings.per_molecule()
    for stage, sec in timings.seconds.items():
        table.add_row(stage, f"{sec:.4f}", f"{per[stage]:.4f}", f"{100 * sec / total:.1f}%" if total else "-")
    table.add_row("total", f"{total:.4f}", f"{total / max(1, n):.4f}", "100.0%" if total else "-")
    return table


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
    print_table(table)
    console.print(f"wrote {out} ({len(results)} structures)", highlight=False)


@app.command()
@user_errors
def evaluate(
    data: Path = typer.Argument(..., help="Reference eqchem HDF5 file (same basis and functional as the model)."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Model file (default: the shipped model)."),
    mode: Optional[str] = typer.Option(None, "--mode", help=MODE_HELP),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="metrics.json"),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Parity plot (png) of H elements."),
    scf: bool = typer.Option(False, "--scf", help="Also measure SCF cycles from the prediction vs minao."),
    limit: Optional[int] = typer.Option(None, help="Evaluate only the first N structures."),
    batch_size: int = typer.Option(16, "--batch-size"),
    fock_step: bool = typer.Option(True, "--fock-step/--no-fock-step",
                                   help="Apply the model's damped Fock step (if it has one) after the network."),
    check: bool = typer.Option(False, "--check", help="Also run the self-consistency check of every prediction "
                               "(one cheap Fock build each) and report how well it flags gap errors above 0.3 eV."),
    reliability_plot: Optional[Path] = typer.Option(None, "--reliability-plot",
                                                    help="Reliability plot (png) of the error estimates."),
):
    """Model accuracy on reference data: H MAE (all/diag/off-diag), ε, ψ, HOMO/LUMO/gap, SCF ratio; for a model
    with error estimates, their calibration (coverage, reliability, rank correlation, --check AUC)."""
    from rich.table import Table

    from ..data.reader import H5Dataset
    from ..inference import writers
    from ..inference.evaluate import evaluate as run_eval
    from .common import ProgressReporter

    ds = H5Dataset(data)
    m = _load_model_for_cli(model, mode)
    n = min(limit, len(ds)) if limit else len(ds)
    with ProgressReporter("evaluate", n) as bar:
        res = run_eval(ds, m, scf=scf, batch_size=batch_size, limit=limit, on_molecule=lambda k: bar.advance(k),
                       fock_step=fock_step, check=check)
    table = Table(title=f"{data.name}: {res['summary'].get('n_molecules', 0)} structures, model {m.path.name}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for k, v in res["summary"].items():
        table.add_row(k, f"{v:.4g}" if isinstance(v, float) else str(v))
    print_table(table)
    if len(res["groups"]) > 3:  # more than all / one source / one size bin: the metrics by chemistry and size
        from .report import groups_table

        print_table(groups_table(res["groups"]))
    if "calibration" in res:
        from ..calibration_metrics import calibration_lines

        for line in calibration_lines(res["calibration"]):
            console.print(line, highlight=False)
    elif reliability_plot is not None or check:
        console.print(f"{m.path.name}: this model file carries no error estimates (eqchem calibrate adds them)",
                      highlight=False)
    if out is not None:
        extra = {k: res[k] for k in ("calibration", "uncertainty") if k in res}
        writers.write_json(out, [{"summary": res["summary"], "groups": res["groups"], "molecules": res["molecules"],
                                  **extra, "model": str(m.path), "data": str(data)}])
        console.print(f"wrote {out}", highlight=False)
    if reliability_plot is not None and "calibration" in res:
        from ..calibration_metrics import plot_reliability

        plot_reliability(res["calibration"], reliability_plot)
        console.print(f"wrote {reliability_plot}", highlight=False)
    if plot is not None:
        from ..plots import parity_plot

        parity_plot(plot, res["parity"]["ref"], res["parity"]["pred"], res["summary"])
        console.print(f"wrote {plot}", highlight=False)
