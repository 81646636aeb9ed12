"""``eqchem calibrate``: give a model file its error estimates (validation molecules only)."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from .app import app
from .common import ProgressReporter, console, user_errors


@app.command()
@user_errors
def calibrate(
    model: str = typer.Argument(..., help="Model file (or fast / accurate) to calibrate."),
    data: Optional[List[Path]] = typer.Argument(None, help="Reference HDF5 files holding its training and "
                                                "validation molecules (not with --refit)."),
    out: Path = typer.Option(..., "--out", "-o", help="The calibrated model file to write."),
    split_file: Optional[List[Path]] = typer.Option(None, "--split-file", help="JSON split (train/val/test key "
                                                    "lists), repeatable: their 'val' keys calibrate besides the "
                                                    "model's own validation keys; their 'test' keys never do."),
    report: Optional[Path] = typer.Option(None, "--report", help="JSON of the validation molecules' estimates and "
                                          "errors, and their calibration metrics."),
    check_partner: Optional[str] = typer.Option(None, "--check-partner", help="A shipped model (fast / accurate) "
                                                "whose gap --check compares with this model's where it covers the "
                                                "molecule, instead of one Fock build (a committee of two)."),
    train_structures: Optional[List[Path]] = typer.Option(None, "--train-structures", help="(ext)xyz files of "
                                                          "training structures named by their keys (name=...), "
                                                          "repeatable: the posterior and the training domain take "
                                                          "those whose labels are not in DATA (geometries suffice)."),
    domain_only: bool = typer.Option(False, "--domain-only", help="Only recompute the training-domain ranges "
                                     "(sizes, nearest neighbours per element pair) of a calibrated model."),
    refit: Optional[Path] = typer.Option(None, "--refit", help="Fit the calibrated model's scalars again on the "
                                         "validation rows of a --report it wrote (no DATA, no prediction; its "
                                         "posterior and domain ranges kept)."),
):
    """Error estimates for every prediction: the readouts' posterior from the model's training molecules found in
    DATA, calibrated on validation molecules (the model's validation keys, plus --split-file's), never on test
    or training molecules."""
    from ..data.reader import H5Dataset
    from ..data.split_file import read_split
    from ..errors import InputError
    from ..inference.calibrate import calibrate as run_calibrate
    from ..inference.model_file import load_model
    from ..inference.writers import check_output_path
    from ..model.file import SHIPPED_MODELS

    check_output_path(out, "--out")
    if check_partner is not None and check_partner not in SHIPPED_MODELS:
        raise InputError(f"--check-partner {check_partner}: not a shipped model (one of {', '.join(SHIPPED_MODELS)})")
    m = load_model(model)
    if refit is not None:
        _refit(m, refit, out, report)
        return
    if not data:
        raise InputError("no DATA: give the reference HDF5 files holding the model's training and validation "
                         "molecules (or --refit REPORT.json)")
    structures = _structures_by_key(train_structures or [])
    if domain_only:
        from ..inference.calibrate import refresh_domain

        path = refresh_domain(m, [H5Dataset(p) for p in data], structures).save(out)
        console.print(f"wrote {path}: training-domain ranges recomputed, fitted scalars kept", highlight=False)
        return
    val = list(m.card.val_keys)
    test: set[str] = set()
    for path in split_file or []:
        split = read_split(path)
        val += [k for k in split["val"] if k not in val]
        test |= set(split["test"])
    val = [k for k in val if k not in test and k not in set(m.card.train_keys)]
    datasets = [H5Dataset(p) for p in data]
    n = len(m.card.train_keys) + len(val)
    with ProgressReporter("calibrate", n) as bar:
        calibrated, rows = run_calibrate(m, datasets, val, on_molecule=lambda k: bar.advance(k),
                                          check_partner=check_partner, structures=structures)
    _write(calibrated, rows, out, report)


def _refit(m, source: Path, out: Path, report: Optional[Path]) -> None:
    """--refit: the scalars fitted again on a report's validation rows."""
    from ..inference.calibrate import refit, report_rows

    _write(*refit(m, report_rows(source)), out, report)


def _write(calibrated, rows: list, out: Path, report: Optional[Path]) -> None:
    """Save the calibrated model, print the validation rows' calibration metrics, write the report."""
    from ..calibration_metrics import calibration_lines, calibration_report

    cal = calibrated.uncertainty.calibration
    path = calibrated.save(out)
    console.print(f"wrote {path}: posterior of {calibrated.uncertainty.posterior.n_molecules} training molecules, "
                  f"calibrated on {cal.n_molecules} validation molecules", highlight=False)
    summary = calibration_report(rows)
    for line in calibration_lines(summary):
        console.print(line, highlight=False)
    if report is not None:
        from ..inference.calibrate import write_report

        write_report(report, cal, summary, rows)
        console.print(f"wrote {report}", highlight=False)


def _structures_by_key(paths: List[Path]) -> dict:
    """{key: (numbers, positions Å)} of every frame of ``paths`` (its ``name=``; a name twice is refused)."""
    from ..errors import InputError
    from ..io.readers import read_structures

    out: dict = {}
    for path in paths:
        for s in read_structures(path):
            if s.name in out:
                raise InputError(f"--train-structures {path}: {s.name} appears twice; name each training structure "
                                 "once (name=KEY in its comment line)")
            out[s.name] = (s.numbers, s.positions)
    return out
