"""``eqchem generate``, ``eqchem merge``, ``eqchem guess``, ``eqchem info``."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from .common import ProgressReporter, console, fail, user_errors
from .main import app


@app.command()
@user_errors
def generate(
    inputs: List[str] = typer.Argument(..., help="xyz / multi-frame xyz / extxyz / SDF / .smi files, or SMILES strings."),
    out: Path = typer.Option(..., "--out", "-o", help="HDF5 file to create or extend (resumable)."),
    xc: str = typer.Option("b3lyp", help="Exchange-correlation functional (PySCF string)."),
    basis: str = typer.Option("def2-svp", help="AO basis set (any basis PySCF knows)."),
    workers: int = typer.Option(1, "--workers", "-j", help="Parallel processes (one structure each)."),
    threads: Optional[int] = typer.Option(None, "--threads", help="Threads per worker (default: usable cores // workers)."),
    grid_level: int = typer.Option(3, help="PySCF DFT grid level."),
    conv_tol: float = typer.Option(1e-10, help="SCF energy convergence threshold (Eh)."),
    max_cycles: int = typer.Option(100, help="Maximum SCF cycles; unconverged structures go to /failures."),
    density_fit: bool = typer.Option(False, "--density-fit", help="Density fitting for J/K."),
    charge: Optional[int] = typer.Option(None, help="Total charge (overrides the file)."),
    spin: Optional[int] = typer.Option(None, help="2S = N_alpha - N_beta; > 0 runs UKS."),
    conformers: int = typer.Option(1, help="Conformers per SMILES (RDKit ETKDG + MMFF)."),
    jitter: float = typer.Option(0.0, help="Gaussian displacement sigma in Å for extra off-equilibrium samples."),
    thermal: float = typer.Option(0.0, help="Temperature in K for normal-mode (MMFF) thermal samples."),
    samples: int = typer.Option(0, help="Number of jittered/thermal samples per structure (input kept too)."),
    seed: int = typer.Option(0, help="Random seed for conformers and sampling."),
    forces: bool = typer.Option(False, "--forces", help="Also store nuclear forces (Eh/Bohr)."),
    density_coefficients: Optional[str] = typer.Option(None, help="Auxiliary basis to store density-fit coefficients on, e.g. def2-universal-jkfit."),
    shard: Optional[str] = typer.Option(None, help="i/n: compute only every n-th structure from the i-th (1-based)."),
    retry_failed: bool = typer.Option(False, "--retry-failed", help="Recompute structures recorded as failed."),
):
    """Run PySCF DFT on structures and store H, S, P, orbitals and energies in HDF5."""
    from ..dft.generate import generate as run_generate
    from ..dft.runner import DFTSettings
    from ..io.readers import read_structures
    from ..io.sampling import gaussian_jitter, normal_mode_samples

    structures = []
    for inp in inputs:
        structures.extend(read_structures(inp, charge=charge, spin=spin, n_conformers=conformers, seed=seed))
    if samples > 0 and (jitter > 0 or thermal > 0):
        extra = []
        for k, s in enumerate(structures):
            if jitter > 0:
                extra.extend(gaussian_jitter(s, jitter, samples, seed + k))
            if thermal > 0:
                extra.extend(normal_mode_samples(s, thermal, samples, seed + k))
        structures.extend(extra)
    settings = DFTSettings(xc=xc, basis=basis, grid_level=grid_level, conv_tol=conv_tol, max_cycles=max_cycles,
                           density_fit=density_fit, forces=forces, density_coefficients=density_coefficients)
    reporter: dict = {}

    def on_start(n_todo, n_skipped):
        console.print(f"{len(structures)} structures read; {n_skipped} already in {out}; computing {n_todo} "
                      f"({xc}/{basis}, {workers} worker(s))", highlight=False)
        reporter["bar"] = ProgressReporter("DFT", n_todo).__enter__()

    def on_result(key, status, reason, secs):
        bar = reporter["bar"]
        if status != "done":
            bar.log(f"[yellow]failed[/] {key}: {reason}")
        bar.advance(f"{key} {secs:.1f}s")

    try:
        report = run_generate(structures, out, settings, workers=workers, shard=shard,
                              retry_failed=retry_failed, threads=threads, on_start=on_start, on_result=on_result)
    finally:
        if "bar" in reporter:
            reporter["bar"].__exit__(None, None, None)
    console.print(f"{report.done} computed, {report.skipped} skipped (already done), {report.failed} failed "
                  f"-> {out} ({report.seconds:.1f} s)", highlight=False)
    if report.failed:
        raise typer.Exit(1)


@app.command()
@user_errors
def merge(
    shards: List[Path] = typer.Argument(..., help="Shard files written by `eqchem generate --shard` (or any eqchem data files)."),
    out: Path = typer.Option(..., "--out", "-o", help="Merged HDF5 file (self-contained)."),
):
    """Merge shard files of the same level of theory (failures kept, no duplicate keys).

    The result holds its data itself; with one input file this packs a file written by `eqchem generate`
    (an index over its data.h5.segments/ folder) into a single file to copy elsewhere.
    """
    from ..data.merge import merge as run_merge

    if out.resolve() in {p.resolve() for p in shards}:
        fail("--out must not be one of the shards")
    r = run_merge(shards, out)
    console.print(f"merged {len(shards)} shard(s): {r.molecules} structures, {r.failures} failures, "
                  f"{r.duplicates} duplicate key(s) skipped -> {out}", highlight=False)


@app.command()
@user_errors
def guess(
    data: List[Path] = typer.Argument(..., help="eqchem HDF5 data files."),
    kind: str = typer.Option("minao-fock", "--kind", help="Guess Hamiltonian (see eqchem.dft.guess)."),
):
    """Precompute the guess Hamiltonians a Δ-model corrects (DATA.h5 -> DATA.guess.h5 for minao-fock,
    DATA.guess-KIND.h5 for other kinds; resumable)."""
    from ..data.guess_file import guess_path, present_keys, write_guesses
    from ..data.reader import H5Dataset

    for path in data:
        n = len(set(H5Dataset(path).keys()) - present_keys(path, kind))
        with ProgressReporter(f"guess {path.name}", n) as progress:
            done, skipped = write_guesses(path, kind, on_done=lambda key: progress.advance(key))
        console.print(f"{path}: {done} computed, {skipped} already present -> {guess_path(path, kind)}", highlight=False)


@app.command()
@user_errors
def info(
    path: Optional[Path] = typer.Argument(None, help="An eqchem HDF5 data file or a model file (.pt)."),
    model: Optional[str] = typer.Option(None, "--model", help="Model card: a model file, 'default', 'fast' or 'accurate'."),
):
    """Describe a data file (counts, elements, level of theory, failures) or a model (its card)."""
    from .report import print_data_info, print_model_card

    if model is not None:
        print_model_card(model)  # a file, or a shipped model's mode (load_model tells them apart)
    elif path is None:
        fail("give a data file, a model file, or --model default|fast|accurate")
    elif path.suffix in (".pt", ".ckpt"):
        print_model_card(path)
    else:
        print_data_info(path)
