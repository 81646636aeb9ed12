"""``eqchem generate``, ``eqchem merge``, ``eqchem guess``, ``eqchem info``."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from .common import ProgressReporter, console, fail, user_errors
from .app import app


@app.command()
@user_errors
def generate(
    ctx: typer.Context,
    inputs: List[str] = typer.Argument(..., help="xyz / multi-frame xyz / extxyz / SDF / .smi files, or SMILES strings."),
    out: Path = typer.Option(..., "--out", "-o", help="HDF5 file to create or extend (resumable)."),
    xc: str = typer.Option("b3lyp", help="Exchange-correlation functional (PySCF string)."),
    basis: str = typer.Option("def2-svp", help="AO basis set (any basis PySCF knows)."),
    workers: int = typer.Option(1, "--workers", "-j", help="Parallel processes (one structure each)."),
    threads: Optional[int] = typer.Option(None, "--threads", help="Threads per worker (default: usable cores // workers)."),
    preset: Optional[str] = typer.Option(None, "--preset", help="Named label settings: fast-labels (--density-fit "
                                         "--auxbasis def2-universal-jkfit --grid-level 1 --conv-tol 1e-8, the shared "
                                         "data's cheap part) or reference (the defaults: grid 3, conv_tol 1e-10, no "
                                         "density fitting). A flag that contradicts it is refused; xc and basis stay apart."),
    grid_level: int = typer.Option(3, help="PySCF DFT grid level."),
    conv_tol: float = typer.Option(1e-10, help="SCF energy convergence threshold (Eh)."),
    max_cycles: int = typer.Option(100, help="Maximum SCF cycles; unconverged structures go to /failures."),
    density_fit: bool = typer.Option(False, "--density-fit", help="Density fitting for J/K."),
    auxbasis: Optional[str] = typer.Option(None, help="Auxiliary basis of --density-fit (default: PySCF's for the "
                                           "basis and functional, def2-universal-jkfit for def2-SVP and B3LYP)."),
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
    from ..dft.runner import preset_settings
    from ..io.readers import read_structures
    from ..io.sampling import gaussian_jitter, normal_mode_samples

    given = {f: v for f, v in (("grid_level", grid_level), ("conv_tol", conv_tol), ("density_fit", density_fit),
                               ("auxbasis", auxbasis)) if ctx.get_parameter_source(f).name != "DEFAULT"}
    settings = preset_settings(preset, given, xc=xc, basis=basis, max_cycles=max_cycles, forces=forces,
                               density_coefficients=density_coefficients)  # checked before reading the inputs
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
    reporter: dict = {}

    def on_start(n_todo, n_skipped):
        console.print(f"{len(structures)} structures read; {n_skipped} already in {out}; computing {n_todo} "
                      f"({xc}/{basis}, {settings.label_preset() or 'custom'} label settings, {workers} worker(s))",
                      highlight=False)
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
    kind: str = typer.Option("minao-fock", "--kind", help="Guess Hamiltonian (eqchem.dft.baselines): none has no "
                             "guess; minao-fock, core, core-j or core-jx (fitted)."),
    split_file: Optional[Path] = typer.Option(None, "--split-file", help="core-jx: fit its atomic potentials on "
                                              "this JSON's 'train' keys only (as eqchem train --split-file)."),
    potentials: Optional[Path] = typer.Option(None, "--potentials", help="core-jx: take the fitted atomic "
                                              "potentials of this guess file or model file instead of fitting."),
):
    """Precompute the guess Hamiltonians a Δ-model corrects (DATA.h5 -> DATA.guess.h5 for minao-fock,
    DATA.guess-KIND.h5 for other kinds; resumable). core-jx first fits its atomic potentials on the
    structures of all the files given (or reuses those their guess files already hold)."""
    from ..data.guess_file import guess_path, present_keys, uncovered_keys
    from ..data.reader import H5Dataset
    from ..dft.baselines import BASELINES, get_baseline
    from ..dft.guess import write_guesses

    params = None
    if get_baseline(kind).fitted:
        params = _fitted_guess_params(data, kind, split_file, potentials)
    elif split_file or potentials:
        fitted = ", ".join(b.name for b in BASELINES.values() if b.fitted)
        fail(f"--split-file and --potentials apply to fitted guesses ({fitted}), not '{kind}'")
    for path in data:
        ds = H5Dataset(path)
        uncovered = uncovered_keys(ds, params)
        n = len(set(ds.keys()) - present_keys(path, kind) - set(uncovered))
        with ProgressReporter(f"guess {path.name}", n) as progress:
            done, skipped = write_guesses(path, kind, on_done=lambda key: progress.advance(key), params=params)
        left = (f", {len(uncovered)} left without one (an element the fitted potentials lack)" if uncovered else "")
        console.print(f"{path}: {done} computed, {skipped} already present{left} -> {guess_path(path, kind)}",
                      highlight=False)


def _fitted_guess_params(data: List[Path], kind: str, split_file: Optional[Path],
                         potentials: Optional[Path]) -> dict:
    """The parameters of a fitted guess: from ``potentials`` (a guess file or model file), else those the
    data files' existing guess files hold, else fitted now on the data (a split's training keys)."""
    import json

    from ..data.guess_file import read_params, stored_params
    from ..data.split_file import read_split
    from ..dft.atomic_potential import OMEGA, fit_on_data, fit_structures
    from ..errors import DataError
    from ..io.elements import symbol

    if potentials is not None:
        if not potentials.exists():
            fail(f"{potentials}: no such file")
        if potentials.suffix in (".pt", ".ckpt"):
            from ..model.file import read_header

            header = read_header(potentials)
            params = header.card.baseline_params if header is not None else None
        else:
            try:
                params = read_params(potentials)
            except OSError:
                params = None
        if not params:
            fail(f"{potentials} holds no fitted {kind} parameters (give a {kind} guess file or model file)")
        return params
    held = {json.dumps(p, sort_keys=True) for p in (stored_params(path, kind) for path in data) if p}
    if len(held) > 1:
        raise DataError(f"the {kind} guess files of {', '.join(map(str, data))} hold different fitted parameters; "
                        f"move some away or give --potentials")
    if held:
        console.print(f"{kind}: using the atomic potentials the existing guess files hold", highlight=False)
        return json.loads(held.pop())
    keys = None
    if split_file is not None:
        keys = read_split(split_file)["train"]
        if not keys:
            fail(f"{split_file}: the split file lists no 'train' keys to fit the atomic potentials on")
    else:
        console.print(f"{kind}: fitting atomic potentials on every structure given (--split-file keeps "
                      f"validation and test structures out of the fit)", highlight=False)
    structures = fit_structures(data, keys)
    with ProgressReporter(f"fit {kind} atomic potentials", len(structures)) as progress:
        fit, summary = fit_on_data(structures, on_done=lambda key: progress.advance(key))
    console.print(f"{kind}: fitted atomic potentials of {' '.join(symbol(z) for z in summary['elements'])} on "
                  f"{summary['structures']} structures: guess MAE {summary['mae_before_uEh']:,.0f} µEh without them, "
                  f"{summary['mae_after_uEh']:,.0f} µEh with them (first {min(10, summary['structures'])} of them)",
                  highlight=False)
    return {"atomic_potentials": fit, "omega": OMEGA, "fit": summary}


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
