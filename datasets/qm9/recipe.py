"""QM9 at the QH9-stable level of theory (B3LYP/def2-SVP, grid 3, conv_tol 1e-10): selection and generation.

Geometries come from the PyPI package ``qm9pack`` (MIT; the 130,831 characterized QM9 molecules,
SMILES and xyz in Å). The recipe is deterministic:

* ``order``: all QM9 indices in a fixed random order (``numpy.random.default_rng(SEED).permutation``);
  generation walks this order, so any prefix of it is a reproducible sample.
* ``split``: by molecule, from the QM9 index alone (SHA-1 of the index): 10 % test, 5 % validation,
  85 % train. Structures of one molecule always land on the same side; the shared precomputed data
  (qm9_<index> keys) gets the same split.

Usage::

    python datasets/qm9/recipe.py select --count 2000          # writes selection.csv (committed)
    python datasets/qm9/recipe.py xyz --out ~/.cache/eqchem/qm9/todo.xyz [--skip data.h5 ...]
    python datasets/qm9/recipe.py split DATA.h5... --out split.json     # train/val/test keys
    eqchem generate ~/.cache/eqchem/qm9/todo.xyz --out ~/.cache/eqchem/qm9/qm9.h5 \
        --xc b3lyp --basis def2-svp --grid-level 3 --conv-tol 1e-10 [--shard i/n]
"""
from __future__ import annotations

import argparse
import ast
import csv
import hashlib
import importlib.util
from pathlib import Path

import numpy as np

SEED = 20261124
HERE = Path(__file__).resolve().parent
SELECTION = HERE / "selection.csv"
LEVEL_OF_THEORY = {"xc": "b3lyp", "basis": "def2-svp", "grid_level": 3, "conv_tol": 1e-10}
SYMBOL_Z = {"H": 1, "C": 6, "N": 7, "O": 8, "F": 9}


def split_of(qm9_index: int) -> str:
    """'test' (10 %), 'val' (5 %) or 'train' (85 %), a pure function of the QM9 index."""
    h = int(hashlib.sha1(f"qm9:{int(qm9_index)}".encode()).hexdigest(), 16) % 100
    return "test" if h < 10 else "val" if h < 15 else "train"


def key_of(qm9_index: int) -> str:
    """The data key of a QM9 molecule: "qm9_000539"."""
    return f"qm9_{int(qm9_index):06d}"


def index_of(key: str) -> int | None:
    """The QM9 index in a key of a QM9 molecule ("qm9_000539": 539) or of one made from it
    ("dist_qm9_000539_xh130", ``datasets/distorted``); None for any other key."""
    parts = key.split("_")
    for i, part in enumerate(parts[:-1]):
        if part == "qm9" and parts[i + 1].isdigit():
            return int(parts[i + 1])
    return None


def split_of_key(key: str) -> str | None:
    """The split of a key made from a QM9 molecule (:func:`index_of`, :func:`split_of`); None for others."""
    index = index_of(key)
    return None if index is None else split_of(index)


def qm9pack_csvs() -> list[Path]:
    """The CSV files inside the installed qm9pack wheel (its own import needs pkg_resources)."""
    spec = importlib.util.find_spec("qm9pack")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("pip install qm9pack   (the QM9 geometries)")
    data = Path(list(spec.submodule_search_locations)[0]) / "data"
    return [data / f"qm9_part{i}.csv" for i in (1, 2, 3)]


def load_qm9(indices: set[int] | None = None) -> dict[int, dict]:
    """QM9 records {index: {smiles, numbers, positions}} (all, or only ``indices``)."""
    import pandas as pd

    out = {}
    for p in qm9pack_csvs():
        df = pd.read_csv(p, usecols=["Index", "SMILES", "Elements", "XYZ_Ang"])
        if indices is not None:
            df = df[df["Index"].isin(indices)]
        for idx, smi, els, xyz in df.itertuples(index=False):
            out[int(idx)] = {
                "smiles": smi,
                "numbers": [SYMBOL_Z[e] for e in ast.literal_eval(els)],
                "positions": np.asarray(ast.literal_eval(xyz), dtype=float),
            }
    return out


def canonical(smiles: str) -> str:
    from rdkit import Chem

    mol = Chem.MolFromSmiles(smiles)
    return Chem.MolToSmiles(mol) if mol is not None else smiles


def select(count: int) -> None:
    """Write selection.csv: the first ``count`` QM9 molecules of the seeded order, with split."""
    import pandas as pd

    idx = np.concatenate([pd.read_csv(p, usecols=["Index"])["Index"].to_numpy() for p in qm9pack_csvs()])
    order = np.random.default_rng(SEED).permutation(np.sort(idx))[:count]
    recs = load_qm9(set(int(i) for i in order))
    with open(SELECTION, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["rank", "qm9_index", "key", "split", "n_atoms", "canonical_smiles"])
        for rank, i in enumerate(order):
            r = recs[int(i)]
            w.writerow([rank, int(i), key_of(i), split_of(i), len(r["numbers"]), canonical(r["smiles"])])
    print(f"wrote {SELECTION} ({count} molecules, seed {SEED})")


def read_selection() -> list[dict]:
    with open(SELECTION) as fh:
        return list(csv.DictReader(fh))


def existing_keys(paths: list[str]) -> set[str]:
    import h5py

    found: set[str] = set()
    for p in paths:
        for f in sorted(Path().glob(p)) if any(c in p for c in "*?[") else [Path(p)]:
            if Path(f).exists():
                with h5py.File(f, "r") as h:
                    for grp in ("molecules", "failures"):
                        found.update(h.get(grp, {}).keys())
    return found


def frame_text(key: str, qm9_index: int, rec: dict) -> str:
    """One extxyz frame (``name=KEY qm9_index=... smiles=...``) of a QM9 record of :func:`load_qm9`."""
    symbols = {v: k for k, v in SYMBOL_Z.items()}
    lines = [f"{len(rec['numbers'])}", f'name={key} qm9_index={qm9_index} smiles="{rec["smiles"]}" charge=0 spin=0']
    lines += [f"{symbols[z]} {x:.10f} {y:.10f} {zz:.10f}" for z, (x, y, zz) in zip(rec["numbers"], rec["positions"])]
    return "\n".join(lines) + "\n"


def write_xyz(out: Path, limit: int | None, skip: list[str], splits: set[str]) -> int:
    """Multi-frame extxyz of the selection (in order), minus keys already in ``skip`` files."""
    sel = [r for r in read_selection() if r["split"] in splits]
    done = existing_keys(skip)
    todo = [r for r in sel if r["key"] not in done][:limit]
    recs = load_qm9({int(r["qm9_index"]) for r in todo})
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    with open(tmp, "w") as fh:
        for r in todo:
            fh.write(frame_text(r["key"], int(r["qm9_index"]), recs[int(r["qm9_index"])]))
    tmp.replace(out)
    print(f"wrote {out}: {len(todo)} structures ({len(done)} keys already computed)")
    return len(todo)


def write_split(data: list[str], out: Path) -> dict:
    """JSON {train, val, test: [keys]} for the QM9 keys found in ``data`` (split from the index)."""
    import h5py

    split: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    for p in data:
        with h5py.File(p, "r") as f:
            for k in f.get("molecules", {}):
                if k.startswith("qm9_"):
                    split[split_of_key(k)].append(k)
    return save_split(split, out)


def save_split(split: dict, out: Path) -> dict:
    """Write {train, val, test: keys} as the JSON ``eqchem train --split-file`` reads (sorted, unique)."""
    import json

    result = {k: sorted(set(v)) for k, v in split.items()}
    out.write_text(json.dumps(result, indent=0))
    print(f"wrote {out}: " + ", ".join(f"{k} {len(v)}" for k, v in result.items()))
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("select", help="write selection.csv")
    s.add_argument("--count", type=int, default=2000)
    x = sub.add_parser("xyz", help="write the structures still to compute as extxyz")
    x.add_argument("--out", type=Path, required=True)
    x.add_argument("--limit", type=int, default=None)
    x.add_argument("--skip", nargs="*", default=[], help="HDF5 files whose keys are done")
    x.add_argument("--splits", default="train,val,test")
    sp = sub.add_parser("split", help="write train/val/test key lists (JSON) for eqchem train --split-file")
    sp.add_argument("data", nargs="+")
    sp.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    if a.cmd == "select":
        select(a.count)
    elif a.cmd == "split":
        write_split(a.data, a.out)
    else:
        write_xyz(a.out, a.limit, a.skip, set(a.splits.split(",")))


if __name__ == "__main__":
    main()
