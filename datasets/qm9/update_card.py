"""Add to a shipped model's card what its shipping run did not measure: the dipole error on held-out test
molecules and the charges/spins its training data covered. Weights and other metrics stay as they are.

    python datasets/qm9/update_card.py eqchem/models/accurate.pt --data FILES... --split split.json [--write]

Dipole: error of |μ| (Debye, QM9's ``mu``) of the predicted density against the data's SCF dipole, with and
without the model's Fock step, on the test keys of ``split.json`` found in the data files (the card says
on how many). Coverage: ``charges``/``spins`` read from the training structures found in the data (the QM9
training set is neutral and closed-shell); keys not found are reported, not guessed.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def dipole_metrics(model, data: list[str], test: set[str], fock_step: bool) -> tuple[float, int]:
    """(mean |μ| error in Debye, molecules) over the ``test`` keys found in the ``data`` files."""
    from eqchem.data.reader import H5Dataset
    from eqchem.inference.evaluate import evaluate

    errors = []
    for path in data:
        ds = H5Dataset(path)
        keys = [k for k in ds.keys() if k in test]
        if keys:
            errors += [r["dipole_mae_debye"] for r in evaluate(ds.subset(keys), model, fock_step=fock_step)["molecules"]]
    return float(np.mean(errors)) if errors else float("nan"), len(errors)


def training_coverage(data: list[str], train_keys: list[str]) -> tuple[list[int], list[int], int]:
    """(charges, spins, structures found) of the training keys present in the data files."""
    from eqchem.data.reader import H5Dataset

    charges, spins, found = set(), set(), set()
    for path in data:
        ds = H5Dataset(path)
        for k in set(ds.keys()) & set(train_keys) - found:
            rec = ds[k]
            charges.add(rec.charge)
            spins.add(int(rec.attrs.get("spin", 0)))
            found.add(k)
    return sorted(charges), sorted(spins), len(found)


def main() -> None:
    from eqchem.data.split_file import split_keys
    from eqchem.inference.model_file import load_model

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", type=Path)
    ap.add_argument("--data", nargs="+", required=True)
    ap.add_argument("--split", type=Path, required=True)
    ap.add_argument("--write", action="store_true", help="write the card fields into the model file")
    a = ap.parse_args()

    model = load_model(a.model)
    test = split_keys([a.split], "test")
    with_step, n = dipole_metrics(model, a.data, test, fock_step=True)
    network_only, _ = dipole_metrics(model, a.data, test, fock_step=False) if model.fock_mixing > 0 else (None, n)
    charges, spins, n_found = training_coverage(a.data, model.card.train_keys)
    report = {"test_dipole_mae_debye": with_step, "test_network_only_dipole_mae_debye": network_only,
              "test_dipole_molecules": n, "charges": charges, "spins": spins,
              "training structures checked for coverage": f"{n_found} of {len(model.card.train_keys)}"}
    print(json.dumps(report, indent=1))
    if not a.write:
        return
    metrics = {**model.card.metrics, "test_dipole_mae_debye": with_step, "test_dipole_molecules": n}
    if network_only is not None:
        metrics["test_network_only_dipole_mae_debye"] = network_only
    model.with_card(charges=charges, spins=spins, metrics=metrics).save(a.model)
    print(f"wrote {a.model}")


if __name__ == "__main__":
    main()
