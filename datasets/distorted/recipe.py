"""QM9 molecules with one bond stretched or squeezed: labelled geometries outside the training domain, to
calibrate the error estimates there (validation split) and to measure them and the ``--check`` flag
(test split).

Each molecule of ``datasets/qm9/selection.csv`` in the chosen split (in rank order, so any prefix is
reproducible) gets one distortion, the next of :data:`DISTORTIONS` in turn: a bond to a hydrogen (the H moves
along the bond) or a bond between heavy atoms that is not in a ring (the side of the bond with fewer atoms
moves rigidly along it), scaled by the factor. Which bond of that kind: drawn with a generator seeded by the
QM9 index. Keys: ``dist_qm9_<index>_<kind><factor·100>`` (e.g. ``dist_qm9_000539_xh130``); their split is
their QM9 molecule's (``datasets/qm9/recipe.py``), so test molecules stay test molecules.

    python datasets/distorted/recipe.py xyz --split val --count 30 --out $C/distorted-val.xyz [--skip DATA.h5]
    eqchem generate $C/distorted-val.xyz --out $C/distorted.h5 --preset fast-labels --xc b3lyp \\
        --basis def2-svp --threads 1
    python datasets/distorted/recipe.py split $C/distorted.h5 --out $C/distorted.split.json
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "qm9"))
import recipe as qm9  # noqa: E402

DISTORTIONS = [("xh", 1.30), ("xx", 1.30), ("xh", 1.15), ("xx", 1.15), ("xh", 1.50), ("xx", 0.85)]
"""(bond kind, factor) applied in turn: xh a bond to hydrogen, xx one between heavy atoms outside rings."""
BOND_FACTOR = 1.25
"""Two atoms are bonded when nearer than this times the sum of their covalent radii."""


def bonds(numbers: np.ndarray, positions: np.ndarray) -> list[tuple[int, int]]:
    """(i, j), i < j, of the bonded atom pairs (covalent radii of RDKit's periodic table, Å)."""
    from rdkit import Chem

    table = Chem.GetPeriodicTable()
    r = np.array([table.GetRcovalent(int(z)) for z in numbers])
    d = np.linalg.norm(positions[:, None] - positions[None], axis=-1)
    i, j = np.nonzero(np.triu(d < BOND_FACTOR * (r[:, None] + r[None]), 1))
    return list(zip(i.tolist(), j.tolist()))


def side(n_atoms: int, edges: list[tuple[int, int]], cut: tuple[int, int], start: int) -> set[int] | None:
    """Atoms reachable from ``start`` without crossing the bond ``cut``; None when the bond lies in a ring."""
    adj: dict[int, list[int]] = {a: [] for a in range(n_atoms)}
    for a, b in edges:
        if {a, b} != set(cut):
            adj[a].append(b)
            adj[b].append(a)
    seen, todo = {start}, [start]
    while todo:
        for b in adj[todo.pop()]:
            if b not in seen:
                seen.add(b)
                todo.append(b)
    other = cut[0] if start == cut[1] else cut[1]
    return None if other in seen else seen


def distort(numbers: np.ndarray, positions: np.ndarray, kind: str, factor: float,
            rng: np.random.Generator) -> tuple[np.ndarray, str] | None:
    """``positions`` with one bond of ``kind`` scaled by ``factor`` and a label of the bond ('C3-H9'), or None
    when the molecule has no such bond."""
    from eqchem.io.elements import symbol

    edges = bonds(numbers, positions)
    if kind == "xh":
        cands = [(a, b) if numbers[b] == 1 else (b, a) for a, b in edges if (numbers[a] == 1) != (numbers[b] == 1)]
        moving = [{h} for _, h in cands]
    else:
        cands, moving = [], []
        for a, b in edges:
            if numbers[a] > 1 and numbers[b] > 1:
                part = side(len(numbers), edges, (a, b), b)
                if part is not None:
                    rest = set(range(len(numbers))) - part
                    small, anchor, tip = (part, a, b) if len(part) <= len(rest) else (rest, b, a)
                    cands.append((anchor, tip))
                    moving.append(small)
    if not cands:
        return None
    k = int(rng.integers(len(cands)))
    anchor, tip = cands[k]
    shift = (factor - 1.0) * (positions[tip] - positions[anchor])
    out = positions.copy()
    out[sorted(moving[k])] += shift
    label = f"{symbol(int(numbers[anchor]))}{anchor + 1}-{symbol(int(numbers[tip]))}{tip + 1}"
    return out, label


def key_of(qm9_index: int, kind: str, factor: float) -> str:
    return f"dist_{qm9.key_of(qm9_index)}_{kind}{round(100 * factor)}"


def split_of(key: str) -> str:
    """The split of a distorted key: its QM9 molecule's."""
    return qm9.split_of_key(key)


def write_xyz(split: str, count: int, out: Path, skip: list[str], round_: int = 0) -> int:
    """Extxyz of the first ``count`` molecules of ``split`` in selection order, each distorted (module
    docstring), minus keys already in ``skip`` files. Round r > 0 gives each molecule the distortion r places
    after round 0's in :data:`DISTORTIONS` and draws its bond with the seed (QM9 index, r): new geometries of the
    same molecules once a split's molecules are used up."""
    from eqchem.io.elements import symbol

    sel = [r for r in qm9.read_selection() if r["split"] == split][:count]
    recs = qm9.load_qm9({int(r["qm9_index"]) for r in sel})
    done = qm9.existing_keys(skip)
    frames = []
    for n, r in enumerate(sel):
        idx = int(r["qm9_index"])
        rec = recs[idx]
        numbers = np.asarray(rec["numbers"])
        first = (n + round_) % len(DISTORTIONS)
        for kind, factor in DISTORTIONS[first:] + DISTORTIONS[:first]:
            got = distort(numbers, rec["positions"], kind, factor,
                          np.random.default_rng([idx, round_] if round_ else idx))
            if got is not None:
                break
        key = key_of(idx, kind, factor)
        if got is None or key in done:
            continue
        pos, label = got
        lines = [f"{len(numbers)}", f'name={key} qm9_index={idx} bond={label} factor={factor} '
                                    f'smiles="{rec["smiles"]}" charge=0 spin=0']
        lines += [f"{symbol(int(z))} {x:.10f} {y:.10f} {w:.10f}" for z, (x, y, w) in zip(numbers, pos)]
        frames.append("\n".join(lines) + "\n")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text("".join(frames))
    tmp.replace(out)
    print(f"wrote {out}: {len(frames)} distorted {split} molecules")
    return len(frames)


def write_split(data: list[str], out: Path) -> dict:
    """JSON {train, val, test: keys} of the distorted keys in ``data`` (their QM9 molecules' split)."""
    import h5py

    split: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    for p in data:
        with h5py.File(p, "r") as f:
            for k in f.get("molecules", {}):
                if k.startswith("dist_qm9_"):
                    split[split_of(k)].append(k)
    return qm9.save_split(split, out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    x = sub.add_parser("xyz", help="write distorted molecules of one split as extxyz")
    x.add_argument("--split", choices=("train", "val", "test"), required=True)
    x.add_argument("--count", type=int, default=30)
    x.add_argument("--out", type=Path, required=True)
    x.add_argument("--skip", nargs="*", default=[], help="HDF5 files whose keys are done")
    x.add_argument("--round", type=int, default=0, dest="round_",
                   help="0: each molecule's first distortion; r > 0: the one r places after it (new geometries)")
    sp = sub.add_parser("split", help="train/val/test key lists (JSON) of distorted data")
    sp.add_argument("data", nargs="+")
    sp.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    if a.cmd == "split":
        write_split(a.data, a.out)
    else:
        write_xyz(a.split, a.count, a.out, a.skip, a.round_)


if __name__ == "__main__":
    main()
