"""Fill a model card's size coverage (``heavy_atoms_range``, and ``atoms_range`` where missing) from its
training structures, for model files written before training recorded it. Weights, settings and every other
card field stay as they are.

    python datasets/qm9/card_sizes.py MODEL.pt --data FILES... [--write]

The ranges are read from the card's ``train_keys`` in the data files (``eqchem.training.index``); unless the
files hold every training key, nothing is written and the script says how many it found (a range of some
of the keys would not be the card's).
"""
from __future__ import annotations

import argparse
import json


def main() -> None:
    from eqchem.inference.model_file import load_model
    from eqchem.training.index import size_ranges_in

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", help="model file, or a shipped mode (fast, accurate)")
    ap.add_argument("--data", nargs="+", required=True, help="data files holding the training structures")
    ap.add_argument("--write", action="store_true", help="write the ranges into the model file's card")
    a = ap.parse_args()

    model = load_model(a.model)
    keys = list(model.card.train_keys)
    atoms, heavy, found = size_ranges_in(a.data, keys)
    print(json.dumps({"model": str(model.path), "training keys found": f"{found} of {len(keys)}",
                      "atoms_range": atoms, "heavy_atoms_range": heavy,
                      "card atoms_range": model.card.atoms_range,
                      "card heavy_atoms_range": model.card.heavy_atoms_range}, indent=1))
    if not a.write:
        return
    if not keys or heavy is None:
        raise SystemExit(f"not written: the data hold {found} of the card's {len(keys)} training keys")
    if model.card.atoms_range and list(model.card.atoms_range) != atoms:
        raise SystemExit(f"not written: the data give atoms_range {atoms}, the card says {model.card.atoms_range} "
                         f"(other data than the model's?)")
    model.with_card(heavy_atoms_range=heavy, atoms_range=atoms).save(model.path)
    print(f"wrote {model.path}")


if __name__ == "__main__":
    main()
