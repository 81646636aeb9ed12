"""Test metrics of a model by chemistry and size: QM9, fragments with S, with Cl, with Br, with none of them, and
per heavy-atom count (≤ 9, 10–12, > 12), on the held-out test keys of a split (never training or validation).

    python datasets/fragments/card_metrics.py MODEL.pt --data DATA.h5... --split split.json... \\
        [--out results/] [--write]

The test keys: the union of the splits' (e.g. the fragment split and ``datasets/drugs/split.json``, whose
drug-sized molecules fill the > 12 heavy-atom group); molecules with elements the model lacks are left out.

Every group's mean H MAE (all / diagonal / off-diagonal), occupied ε, HOMO, LUMO, gap, ψ cosine and |μ| errors
come from ``eqchem.inference.evaluate`` (groups: ``eqchem.metrics.chemistry_groups``); ``--write`` stores them
in the model file's card (``test_metrics_by_group``), which ``eqchem info`` prints, and fills the card's
``heavy_atoms_range`` where it is missing (files trained before eqchem recorded it) from its ``train_keys`` in the
data files, if they hold every one (``datasets/qm9/card_sizes.py`` does only that).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def main() -> None:
    from eqchem.cpu import processor_name
    from eqchem.data.reader import H5Dataset
    from eqchem.data.split_file import split_keys
    from eqchem.inference.evaluate import evaluate
    from eqchem.inference.model_file import load_model
    from eqchem.metrics import grouped_aggregate
    from eqchem.training.index import size_ranges_in

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", type=Path)
    ap.add_argument("--data", nargs="+", required=True)
    ap.add_argument("--split", type=Path, nargs="+", required=True)
    ap.add_argument("--out", type=Path, default=None, help="folder for card_metrics.json and .md")
    ap.add_argument("--write", action="store_true", help="store the groups' metrics in the model file's card")
    a = ap.parse_args()

    t0 = time.perf_counter()
    model = load_model(a.model)
    test = split_keys(a.split, "test")
    elements = set(model.elements)
    rows = []
    for path in a.data:
        ds = H5Dataset(path)
        keys = [k for k in ds.keys() if k in test and set(ds.numbers(k).tolist()) <= elements]
        if keys:
            rows.extend(evaluate(ds.subset(keys), model)["molecules"])
    if not rows:
        raise SystemExit("no test molecules of the split in the data")
    groups = grouped_aggregate(rows)
    cols = ("n_molecules", "h_mae_uEh", "h_mae_diag_uEh", "h_mae_offd_uEh", "eps_occ_mae_uEh", "homo_mae_ev",
            "lumo_mae_ev", "gap_mae_ev", "psi_cos_pct", "dipole_mae_debye")
    lines = ["| group | " + " | ".join(cols) + " | gap errors > 0.5 eV |", "|---" * (len(cols) + 2) + "|"]
    for g, m in groups.items():
        wrong = sum(1 for r in rows if g in r["groups"] and r["gap_mae_ev"] > 0.5)
        lines.append(f"| {g} | " + " | ".join(_cell(c, m.get(c, float("nan"))) for c in cols) + f" | {wrong} |")
    splits = ", ".join(p.name for p in a.split)
    footer = (f"Model {a.model} on the test keys of {splits} ({len(rows)} molecules; MAE per molecule, "
              f"mean over the group); {processor_name()}, {time.perf_counter() - t0:.0f} s.")
    print("\n".join(lines) + "\n\n" + footer)
    if a.out is not None:
        a.out.mkdir(parents=True, exist_ok=True)
        (a.out / "card_metrics.json").write_text(json.dumps({"model": str(a.model), "groups": groups,
                                                             "molecules": rows}, indent=1))
        (a.out / "card_metrics.md").write_text("\n".join(lines) + "\n\n" + footer + "\n")
    if a.write:
        model = model.with_card(test_metrics_by_group=groups)
        if model.card.heavy_atoms_range is None:
            keys = model.card.train_keys
            _, heavy, found = size_ranges_in(a.data, keys)
            print(f"heavy atoms per training structure: {heavy} ({found} of {len(keys)} training keys "
                  f"in the data{'' if heavy else ': not written'})")
            model = model.with_card(heavy_atoms_range=heavy)
        model.save(a.model)
        print(f"wrote the groups into {a.model}'s card")


def _cell(metric: str, value: float) -> str:
    """µEh as whole numbers, eV to 3 decimals, % and counts plainly, Debye to 2 decimals."""
    if metric == "n_molecules":
        return f"{int(value)}"
    fmt = ",.0f" if metric.endswith("_uEh") else ".3f" if metric.endswith("_ev") else ".1f" if metric.endswith("_pct") else ".2f"
    return format(value, fmt)


if __name__ == "__main__":
    main()
