"""What ``--check`` costs per molecule, by source, measured in one run on the same molecules: the model file's
check partner (the fast model's: the accurate model, two cheap Fock builds) against one Fock build from the
predicted density (the check without a partner), beside the prediction without a check and the part of it that
its error estimates take.

    python bench/check_cost.py --data DATA.h5... [--model fast] [--count 12] [--out bench/results/check_cost]

Molecules: the first ``--count`` QM9 test-split keys of the data (``datasets/qm9/recipe.py``). Each molecule runs
through the three pipelines in turn (after one warm-up molecule each, which loads the partner), so a machine's
load falls on all three alike; times are the pipeline's ``check`` and ``check_response`` stages (wall, s; the
latter apart too) and, for the prediction, all stages of the pipeline without a check.
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "datasets" / "qm9"))


def stage_seconds(model, structures) -> dict[str, dict[str, float]]:
    """Mean wall seconds per molecule of every pipeline stage over ``structures``, per pipeline: ``none`` (no
    check), ``fock`` (the check by one Fock build) and, where the model file names a check partner, ``partner``
    (the check as the file has it). Each molecule runs through the pipelines in turn, after one warm-up molecule
    each (which loads the partner)."""
    from eqchem.inference.pipeline import PredictionPipeline, StageTimings

    cal = model.uncertainty.calibration
    fock_only = model.with_uncertainty(replace(model.uncertainty, calibration=replace(cal, check_partner=None)))
    pipelines = {"none": PredictionPipeline(model), "fock": PredictionPipeline(fock_only, check=True)}
    if cal.check_partner:
        pipelines["partner"] = PredictionPipeline(model, check=True)
    for p in pipelines.values():
        p.results(structures[:1], [[]])
    seconds: dict[str, dict[str, float]] = {k: {} for k in pipelines}
    for s in structures:
        for name, p in pipelines.items():
            p.timings = StageTimings()
            p.results([s], [[]])
            for stage, v in p.timings.seconds.items():
                seconds[name][stage] = seconds[name].get(stage, 0.0) + v / len(structures)
    return seconds


def main() -> None:
    from recipe import split_of_key
    from report import write_report

    from eqchem.cpu import processor_name
    from eqchem.data.reader import H5Dataset
    from eqchem.inference.model_file import load_model
    from eqchem.io.structure import Structure

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", nargs="+", required=True)
    ap.add_argument("--model", default="fast")
    ap.add_argument("--count", type=int, default=12)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "check_cost")
    a = ap.parse_args()

    model = load_model(a.model)
    if model.uncertainty is None:
        raise SystemExit(f"{a.model} carries no error estimates: run eqchem calibrate first")
    cal = model.uncertainty.calibration
    structures = []
    for path in a.data:
        ds = H5Dataset(path)
        for k in ds.keys():
            if k.startswith("qm9_") and split_of_key(k) == "test" and len(structures) < a.count:
                rec = ds.read(k, overlap=False)
                structures.append(Structure(rec.numbers, rec.positions, name=k))
    if not structures:
        raise SystemExit("no QM9 test molecules in the data")
    t0 = time.perf_counter()
    stages = stage_seconds(model, structures)
    per = {k: sum(sec.values()) if k == "none" else sec["check"] + sec["check_response"] for k, sec in stages.items()}
    what = {"none": "prediction without a check",
            "fock": "check: one Fock build from the predicted density and its Coulomb response",
            "partner": f"check: the {cal.check_partner} model's prediction (the model file's partner)"}
    lines = ["| what | s / molecule | × the prediction |", "|---|---:|---:|"]
    lines += [f"| {what[k]} | {v:.3f} | {v / per['none']:.1f} |" for k, v in per.items()]
    response = stages["fock"]["check_response"]  # the Coulomb potential of the density change, inside the check
    lines.append(f"| of the check: its Coulomb response (stage `check_response`) | {response:.4f} | "
                 f"{response / per['none']:.2f} ({100 * response / (per['fock'] - response):.1f} % of the Fock build) |")
    per["check_response"] = response
    estimates = stages["none"].get("uncertainty", 0.0)  # readout leverages and estimates, inside the prediction
    lines.append(f"| of the prediction: its error estimates (stage `uncertainty`) | {estimates:.4f} | "
                 f"{estimates / per['none']:.2f} ({100 * estimates / (per['none'] - estimates):.0f} % of the rest) |")
    per["estimates"] = estimates
    footer = (f"Model {a.model}; {len(structures)} QM9 test molecules, each through every pipeline in turn; one thread; "
              f"{processor_name()}; {time.perf_counter() - t0:.0f} s.")
    write_report(a.out, "check_cost", "\n".join(lines), footer,
                 {"model": str(a.model), "molecules": [s.name for s in structures], "seconds_per_molecule": per})


if __name__ == "__main__":
    main()
