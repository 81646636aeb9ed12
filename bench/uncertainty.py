"""How far to trust a prediction, measured: a calibrated model's error estimates on molecules it never saw.

    python bench/uncertainty.py MODEL.pt --data DATA.h5... [--split split.json] [--unseen-fragments N] \\
        [--out bench/results/uncertainty_fast] [--write]

Test molecules (never training, never validation, so never calibration): the QM9 keys of the data whose QM9
index falls in the recipe's test split (``datasets/qm9/recipe.py``), or with ``--split`` that file's test keys;
with ``--unseen-fragments N`` also up to N fragments of the data made only of the model's elements (for a model
trained on QM9 alone every fragment is unseen: drug-like pieces with force-field geometries, where its gaps go
wrong most); and the distorted test molecules of the data (``datasets/distorted``: QM9 test molecules with one
bond stretched or squeezed, labelled: out of domain with reference values, where the check must flag) and
the drug-sized test molecules of ``datasets/drugs`` made of the model's elements (larger than any training
molecule, labelled). On them (``eqchem.inference.evaluate`` with the check): the rank correlation of the estimated and
actual per-molecule H MAE, the 1σ coverage and a reliability table of HOMO, LUMO, gap and dipole, and the AUC
of the check's score for gap errors above 0.3 eV.
Out of domain, without reference labels: molecules smaller than any training molecule, larger ones, and test
molecules with one bond to hydrogen, or one bond between heavy atoms, stretched by 30 %: the fraction called out
of domain and their mean estimates against the in-domain test molecules'.
Cost: the estimates' and the check's wall time as a fraction of the prediction's (the pipeline's stage times;
the check's as a user runs it, the model file's source alone, on the QM9 test molecules).
``--write`` stores the results in the model file's card (``uncertainty_metrics``).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "datasets" / "qm9"))
sys.path.insert(0, str(HERE))
_spec = importlib.util.spec_from_file_location("distorted_recipe", HERE.parent / "datasets" / "distorted" / "recipe.py")
sys.modules["distorted_recipe"] = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(sys.modules["distorted_recipe"])

SMALL = {"water": "O", "methane": "C", "ammonia": "N", "methanol": "CO", "hydrogen fluoride": "F",
         "formaldehyde": "C=O", "acetonitrile": "CC#N", "fluoroform": "FC(F)F"}
"""Molecules with fewer atoms than most training molecules (each is out of domain only where it is smaller)."""
LARGE = {"pentoxifylline": "CC(=O)CCCCn1c(=O)c2c(ncn2C)n(C)c1=O", "ketoprofen": "CC(C(=O)O)c1cccc(c1)C(=O)c1ccccc1",
         "melatonin": "CC(=O)NCCc1c[nH]c2ccc(OC)cc12", "paracetamol dimer ether": "CC(=O)Nc1ccc(Oc2ccc(NC(C)=O)cc2)cc1",
         "fluconazole": "OC(Cn1cncn1)(Cn1cncn1)c1ccc(F)cc1F", "nicotinamide riboside": "NC(=O)c1ccc[n+](c1)C1OC(CO)C(O)C1O",
         "diazepam-like": "CN1C(=O)CN=C(c2ccccc2)c2cc(F)ccc21", "naproxen": "COc1ccc2cc(ccc2c1)C(C)C(=O)O",
         "chlorpromazine": "CN(C)CCCN1c2ccccc2Sc2ccc(Cl)cc21",
         "hydrochlorothiazide": "NS(=O)(=O)c1cc2c(cc1Cl)NCNS2(=O)=O", "bromhexine": "CN(C1CCCCC1)Cc1cc(Br)cc(Br)c1N"}
"""Drug-sized molecules (12-22 heavy atoms; H C N O F, three with S, Cl or Br), none of them a validation
molecule of ``datasets/drugs`` (the estimates' growth with size is fitted on those); those with elements a
model lacks are left out of its row."""
STRETCH = 1.30
DRUG_TEST = set(json.loads((HERE.parent / "datasets" / "drugs" / "split.json").read_text())["test"])
"""The drug-sized test molecules (``datasets/drugs``): with labels where the data holds them."""


def stretched(numbers: np.ndarray, positions: np.ndarray) -> np.ndarray | None:
    """``positions`` with the first bond to a hydrogen (the H's nearest heavy atom) stretched by :data:`STRETCH`."""
    for i in np.flatnonzero(numbers == 1):
        d = np.linalg.norm(positions - positions[i], axis=1)
        d[i] = np.inf
        j = int(np.argmin(d))
        if numbers[j] > 1:
            out = positions.copy()
            out[i] = positions[j] + STRETCH * (positions[i] - positions[j])
            return out
    return None


def out_of_domain(model, test_structures) -> dict:
    """Estimates of the out-of-domain sets beside the in-domain test molecules': smaller, larger, a bond to H
    stretched by :data:`STRETCH`, a bond between heavy atoms outside rings stretched alike (the side with fewer
    atoms moved: ``datasets/distorted/recipe.py``)."""
    from distorted_recipe import distort

    from eqchem.inference.predict import predict
    from eqchem.io.readers import read_structures
    from eqchem.io.structure import Structure

    sets = {"smaller": [s for name, smi in SMALL.items() for s in read_structures(smi)],
            "larger": [s for name, smi in LARGE.items() for s in read_structures(smi)
                       if set(s.numbers.tolist()) <= set(model.elements) and s.charge == 0],
            "stretched": []}
    sets["stretched heavy-atom bond"] = []
    for i, s in enumerate(test_structures):
        pos = stretched(s.numbers, s.positions)
        if pos is not None:
            sets["stretched"].append(Structure(s.numbers, pos, name=f"{s.name}-stretched"))
        got = distort(s.numbers, s.positions, "xx", STRETCH, np.random.default_rng(i))
        if got is not None:
            sets["stretched heavy-atom bond"].append(Structure(s.numbers, got[0], name=f"{s.name}-{got[1]}"))
    atoms_range = model.card.atoms_range or [0, 10 ** 9]
    heavy_range = model.card.heavy_atoms_range or [0, 10 ** 9]
    sets["smaller"] = [s for s in sets["smaller"] if len(s.numbers) < atoms_range[0]
                       or int((s.numbers > 1).sum()) < heavy_range[0]]
    sets["larger"] = [s for s in sets["larger"] if len(s.numbers) > atoms_range[1]
                      or int((s.numbers > 1).sum()) > heavy_range[1]]
    out = {}
    for name, structures in [("in-domain test", test_structures), *sets.items()]:
        if not structures:
            continue
        res = predict(structures, model, extrapolate=True)
        res = res if isinstance(res, list) else [res]
        u = [r.uncertainty for r in res]
        out[name] = {"n": len(u), "out_of_domain_fraction": float(np.mean([not x.in_domain for x in u])),
                     "h_mae_uEh": float(np.mean([x.h_mae_uEh for x in u])),
                     "gap_ev": float(np.mean([x.gap_ev for x in u])),
                     "homo_ev": float(np.mean([x.homo_ev for x in u])),
                     "leverage_max": float(np.mean([x.leverage_max for x in u])),
                     "examples": [f"{r.name}: {'; '.join(x.reasons) or 'in domain'}" for r, x in zip(res[:3], u[:3])]}
    return out


def main() -> None:
    from eqchem.calibration_metrics import calibration_lines, calibration_report, plot_reliability
    from eqchem.cpu import processor_name
    from eqchem.data.reader import H5Dataset
    from eqchem.data.split_file import split_keys
    from eqchem.inference.evaluate import evaluate
    from eqchem.inference.model_file import load_model
    from eqchem.inference.pipeline import StageTimings
    from eqchem.io.structure import Structure
    from recipe import split_of_key
    from report import write_report

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", type=Path)
    ap.add_argument("--data", nargs="+", required=True)
    ap.add_argument("--split", type=Path, default=None)
    ap.add_argument("--unseen-fragments", type=int, default=0)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "uncertainty")
    ap.add_argument("--write", action="store_true")
    a = ap.parse_args()

    t0 = time.perf_counter()
    model = load_model(a.model)
    if model.uncertainty is None:
        raise SystemExit(f"{a.model} carries no error estimates: run eqchem calibrate first")
    seen = set(model.card.train_keys) | set(model.card.val_keys) | set(model.uncertainty.calibration.keys)
    split_test = split_keys([a.split], "test") if a.split else None
    timings = StageTimings()
    rows, test_structures, n_frag = [], [], 0
    for path in a.data:
        ds = H5Dataset(path)
        keys = []
        for k in ds.keys():
            if k in seen:
                continue
            if split_test is not None and k in split_test:
                keys.append(k)
            elif split_test is None and k.startswith("qm9_") and split_of_key(k) == "test":
                keys.append(k)
            elif k.startswith("dist_qm9_") and split_of_key(k) == "test":
                keys.append(k)  # datasets/distorted: a test molecule with one bond stretched or squeezed
            elif k in DRUG_TEST and set(ds.numbers(k).tolist()) <= set(model.elements):
                keys.append(k)  # datasets/drugs: drug-sized, larger than any training molecule
            elif k.startswith("frag_") and n_frag < a.unseen_fragments and \
                    set(ds.numbers(k).tolist()) <= set(model.elements):
                keys.append(k)
                n_frag += 1
        if not keys:
            continue
        res = evaluate(ds.subset(keys), model, check=True, check_both=True, timings=timings)
        for r in res.get("uncertainty", []):
            r["source"] = "qm9" if r["key"].startswith("qm9_") else "distorted" if r["key"].startswith("dist_") \
                else "drug-sized" if r["key"].startswith("drug_") else "fragments"
        rows.extend(res.get("uncertainty", []))
        for k in keys:
            rec = ds.read(k, overlap=False)
            if k.startswith("qm9_") and len(test_structures) < 12:
                test_structures.append(Structure(rec.numbers, rec.positions, name=k))
    if not rows:
        raise SystemExit("no test molecules in the data")
    reports = {"all": calibration_report(rows)}
    for source in ("qm9", "fragments", "distorted", "drug-sized"):
        sub = [r for r in rows if r["source"] == source]
        if sub:
            reports[source] = calibration_report(sub)
    ood = out_of_domain(model, test_structures)
    sec = timings.seconds
    prediction = sum(v for k, v in sec.items() if k not in ("uncertainty", "check"))
    check_s, check_prediction_s = check_cost(model, test_structures)
    cost = {"estimates_fraction": sec["uncertainty"] / prediction, "check_fraction": check_s / check_prediction_s,
            "prediction_s_per_molecule": prediction / max(1, timings.molecules),
            "estimates_s_per_molecule": sec["uncertainty"] / max(1, timings.molecules),
            "check_s_per_molecule": check_s}

    lines = []
    for name, rep in reports.items():
        lines.append(f"### {name} ({rep['n_molecules']} test molecules)\n")
        lines += ["    " + x for x in calibration_lines(rep)]
        lines.append("")
        lines.append("| quantity | bin | n | predicted RMS σ | observed RMS error | coverage |")
        lines.append("|---|---:|---:|---:|---:|---:|")
        for q in ("homo", "lumo", "gap", "dipole"):
            for i, b in enumerate((rep.get(q) or {}).get("reliability", [])):
                lines.append(f"| {q} | {i + 1} | {b['n']} | {b['sigma_mean']:.3f} | {b['rms_error']:.3f} | "
                             f"{100 * b['coverage']:.0f} % |")
        lines.append("")
    lines.append("### out of domain (no reference: estimates only)\n")
    lines.append("| set | n | called out of domain | mean est. H MAE µEh | mean gap σ eV | mean max leverage | e.g. |")
    lines.append("|---|---:|---:|---:|---:|---:|---|")
    for name, o in ood.items():
        lines.append(f"| {name} | {o['n']} | {100 * o['out_of_domain_fraction']:.0f} % | {o['h_mae_uEh']:.0f} | "
                     f"{o['gap_ev']:.3f} | {o['leverage_max']:.3g} | {o['examples'][0]} |")
    lines.append("")
    lines.append(f"Cost per molecule: prediction {cost['prediction_s_per_molecule']:.3f} s, estimates "
                 f"{cost['estimates_s_per_molecule']:.4f} s ({100 * cost['estimates_fraction']:.1f} %), check "
                 f"{cost['check_s_per_molecule']:.3f} s ({100 * cost['check_fraction']:.0f} %).")
    cal = model.uncertainty.calibration
    footer = (f"Model {a.model} (calibrated on {cal.n_molecules} validation molecules; posterior of "
              f"{model.uncertainty.posterior.n_molecules} training molecules); test molecules never trained or "
              f"calibrated on; {processor_name()}, {time.perf_counter() - t0:.0f} s.")
    info = {"model": str(a.model), "reports": reports, "out_of_domain": ood, "cost": cost, "molecules": rows}
    write_report(a.out, "uncertainty", "\n".join(lines), footer, info)
    plot_reliability(reports["all"], a.out / "reliability.png")
    if a.write:
        card = {"test": {k: _brief(v) for k, v in reports.items()}, "out_of_domain": ood, "cost": cost}
        model.with_card(uncertainty_metrics=card).save(a.model)
        print(f"wrote the card of {a.model}")


def check_cost(model, structures) -> tuple[float, float]:
    """(check, prediction without it) seconds per molecule of ``--check`` as a user runs it (the model file's
    check source alone; the rows above ran both sources), over ``structures`` (QM9 test molecules)
    (:func:`check_cost.stage_seconds`)."""
    from check_cost import stage_seconds

    stages = stage_seconds(model, structures)
    source = "partner" if "partner" in stages else "fock"
    return stages[source]["check"], sum(v for k, v in stages["none"].items() if k not in ("uncertainty", "check"))


def _brief(rep: dict) -> dict:
    """A report without its reliability bins (for the card)."""
    out = {k: v for k, v in rep.items() if not isinstance(v, dict)}
    for q in ("homo", "lumo", "gap", "dipole", "check"):
        if q in rep:
            out[q] = {k: v for k, v in rep[q].items() if k != "reliability"}
    return out


if __name__ == "__main__":
    main()
