"""Choose a prediction-only setting of a trained model on the validation molecules (never the test set).

    python datasets/qm9/tune_prediction.py MODEL.pt --data part-001.h5 qm9.h5 --split split.json \
        --setting fock_mixing --values 0 0.2 0.3 0.4 0.5 0.6

Prints one row of validation metrics per value (through the same path as ``eqchem predict``: guess
recomputed, Fock step applied). Settings are the fields of ``eqchem.model.settings.PredictionSettings``;
the chosen value goes to ``ship_model.py`` (``--fock-mixing``, ``--pair-cutoff``, ``--correction-cutoff``).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

COLUMNS = ("h_mae_uEh", "h_mae_diag_uEh", "h_mae_offd_uEh", "eps_occ_mae_uEh", "psi_cos_pct", "homo_mae_ev",
           "lumo_mae_ev", "gap_mae_ev")


def main() -> None:
    from eqchem.data.reader import H5Dataset
    from eqchem.inference.evaluate import evaluate
    from eqchem.inference.model_file import load_model
    from eqchem.model.settings import FIELDS

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", type=Path)
    ap.add_argument("--data", nargs="+", required=True)
    ap.add_argument("--split", type=Path, required=True)
    ap.add_argument("--setting", choices=FIELDS, default="fock_mixing")
    ap.add_argument("--values", type=float, nargs="+", required=True)
    a = ap.parse_args()

    model = load_model(a.model)
    val = set(json.loads(a.split.read_text())["val"])
    sets = [ds.subset(keys) for ds in map(H5Dataset, a.data) if (keys := [k for k in ds.keys() if k in val])]
    if not sets:
        raise SystemExit("no validation molecules found in the data")
    print(f"{a.setting:>12} " + " ".join(f"{c:>15}" for c in COLUMNS))
    for v in a.values:
        rows = [r for ds in sets for r in evaluate(ds, model.with_settings(**{a.setting: v}))["molecules"]]
        print(f"{v:>12g} " + " ".join(f"{np.mean([r[c] for r in rows]):>15.3f}" for c in COLUMNS), flush=True)
    print(f"({sum(len(ds) for ds in sets)} validation molecules)")


if __name__ == "__main__":
    main()
