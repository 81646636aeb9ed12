"""Drug-like fragments with S, Cl and Br beside QM9: geometries, labels and a split that stays put as data grows.

The fragments are pieces of MOSES molecules (the set ∇²DFT drew on) cut at their BRICS bonds, capped with
hydrogen, 3–12 heavy atoms of C N O F S Cl Br, one RDKit ETKDGv3 conformer each relaxed with MMFF94 (force-field
geometries, not DFT-optimized). The list and its geometries are the shared data's ``fragments.xyz`` (3,000
fragments in rank order, comment ``frag_<rank> <canonical SMILES>``), made by the shared data's
``make_fragments.py``; its README says how. Labels are computed at the cheap label settings
(``eqchem generate --preset fast-labels``: B3LYP/def2-SVP, density fitting, grid 1, conv_tol 1e-8), in rank
order, each session the ranks after those already computed (the shared parts and earlier sessions' files).

* ``xyz``: the next ranks to compute as extxyz (``name=frag_NNNNN smiles=...``), skipping keys already in
  the given HDF5 files.
* ``structures``: a model file's training structures as extxyz named by key (``eqchem calibrate
  --train-structures``: its posterior and training domain need geometries only, not the labels that are gone).
* ``split``: train/val/test keys of every structure in the given files: QM9 molecules by their QM9 index
  (``datasets/qm9/recipe.py``), fragments by their canonical SMILES (SHA-1: 10 % test, 5 % validation):
  a pure function of the molecule, so a split of more data keeps every earlier key on its side.

Usage::

    python datasets/fragments/recipe.py xyz --fragments ../shared/data/fragments.xyz --limit 100 \\
        --skip ../shared/data/cheap_b3lyp_def2svp/part-*.h5 --out ~/.cache/eqchem/frag/todo.xyz
    eqchem generate ~/.cache/eqchem/frag/todo.xyz --out ~/.cache/eqchem/frag/frag.h5 --preset fast-labels \\
        --xc b3lyp --basis def2-svp --threads 1
    python datasets/fragments/recipe.py split DATA.h5... --out split.json
"""
from __future__ import annotations

import argparse
import hashlib
import importlib.util
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_FRAGMENTS = HERE.parents[1] / ".." / "shared" / "data" / "fragments.xyz"


def canonical(smiles: str) -> str:
    """RDKit's canonical SMILES (the input where RDKit cannot parse it)."""
    from rdkit import Chem, RDLogger

    RDLogger.DisableLog("rdApp.*")
    mol = Chem.MolFromSmiles(smiles)
    return Chem.MolToSmiles(mol) if mol is not None else smiles


def fragment_split(smiles: str) -> str:
    """'test' (10 %), 'val' (5 %) or 'train' (85 %), a pure function of the canonical SMILES."""
    h = int(hashlib.sha1(f"frag:{canonical(smiles)}".encode()).hexdigest(), 16) % 100
    return "test" if h < 10 else "val" if h < 15 else "train"


def _qm9_recipe():
    """The QM9 recipe (``datasets/qm9/recipe.py``): its split of QM9 keys and its split writer."""
    spec = importlib.util.spec_from_file_location("qm9_recipe", HERE.parent / "qm9" / "recipe.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def rank_of(key: str) -> int:
    """The rank in ``fragments.xyz`` of a fragment's key ("frag_00467": 467)."""
    return int(key.removeprefix("frag_"))


def read_fragments(path: Path) -> list[tuple[str, str, list[str]]]:
    """(key, SMILES, the frame's lines) of every fragment in ``fragments.xyz``, in rank order."""
    lines = Path(path).read_text().splitlines()
    out, i = [], 0
    while i < len(lines):
        n = int(lines[i])
        key, smiles = lines[i + 1].split()[:2]
        out.append((key, smiles, lines[i + 2:i + 2 + n]))
        i += n + 2
    return out


def existing_keys(paths: list[str]) -> set[str]:
    import h5py

    keys: set[str] = set()
    for p in paths:
        with h5py.File(p, "r") as f:
            keys |= set(f.get("molecules", {}))
    return keys


def write_xyz(fragments: Path, out: Path, limit: int | None, skip: list[str], from_rank: int = 0) -> int:
    """The next ``limit`` fragments (rank order) from rank ``from_rank`` on, not in ``skip`` files, as extxyz
    (``from_rank``: the ranks before it reached a stage model through files that are gone)."""
    done = existing_keys(skip)
    todo = [f for f in read_fragments(fragments) if f[0] not in done and rank_of(f[0]) >= from_rank][:limit]
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w") as fh:
        for key, smiles, atoms in todo:
            fh.write(fragment_frame(key, smiles, atoms))
    print(f"wrote {out}: {len(todo)} fragments ({len(done)} keys already computed)"
          + (f", ranks {todo[0][0]}..{todo[-1][0]}" if todo else ""))
    return len(todo)


def fragment_frame(key: str, smiles: str, atoms: list[str]) -> str:
    """One extxyz frame (``name=frag_NNNNN smiles=...``) of a fragment of ``fragments.xyz``."""
    return f'{len(atoms)}\nname={key} smiles="{smiles}" charge=0 spin=0\n' + "\n".join(atoms) + "\n"


def write_structures(model: str, fragments: Path, out: Path, part: str = "train", skip: list[str] = ()) -> int:
    """The training (``part`` "train") or validation ("val") structures of a model file (its card's keys:
    fragments from ``fragments.xyz``, QM9 molecules from qm9pack), less the keys of the ``skip`` files, as
    extxyz named by key: ``eqchem calibrate --train-structures`` takes the training ones where a session's
    label files are gone (the readouts' posterior and the training domain need no labels); the validation ones
    are what to label again (``eqchem generate``) to calibrate on them."""
    from eqchem.inference.model_file import load_model

    card = load_model(model).card
    done = existing_keys(list(skip))
    keys = sorted(k for k in (card.train_keys if part == "train" else card.val_keys) if k not in done)
    wanted = set(keys)
    frags = {key: (smiles, atoms) for key, smiles, atoms in read_fragments(fragments) if key in wanted}
    qm9 = _qm9_recipe()
    indices = {k: qm9.index_of(k) for k in keys if k.startswith("qm9_")}
    recs = qm9.load_qm9(set(indices.values())) if indices else {}
    frames = [fragment_frame(k, *frags[k]) if k in frags else qm9.frame_text(k, indices[k], recs[indices[k]])
              for k in keys if k in frags or indices.get(k) in recs]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("".join(frames))
    print(f"wrote {out}: {len(frames)} of the {len(keys)} {part} structures of {model} not in the skipped files")
    return len(frames)


def write_split(data: list[str], out: Path, fragments: Path) -> dict:
    """JSON {train, val, test: [keys]} of the QM9 and fragment keys found in ``data``."""
    import h5py

    qm9 = _qm9_recipe()
    smiles = {key: s for key, s, _ in read_fragments(fragments)} if Path(fragments).exists() else {}
    split: dict[str, set[str]] = {"train": set(), "val": set(), "test": set()}
    for p in data:
        with h5py.File(p, "r") as f:
            for k, g in f.get("molecules", {}).items():
                if k.startswith("qm9_"):
                    split[qm9.split_of_key(k)].add(k)
                elif k.startswith("frag_"):
                    s = smiles.get(k) or g.attrs.get("smiles", "")
                    if not s:
                        raise SystemExit(f"{p}: no SMILES for {k} (give --fragments)")
                    split[fragment_split(str(s))].add(k)
    return qm9.save_split(split, out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    commands = {"xyz": "write the next fragments to compute as extxyz",
                "split": "train/val/test keys (JSON) for eqchem train --split-file",
                "structures": "a model's training structures as extxyz, for eqchem calibrate --train-structures"}
    parsers = {name: sub.add_parser(name, help=text) for name, text in commands.items()}
    for p in parsers.values():
        p.add_argument("--fragments", type=Path, default=DEFAULT_FRAGMENTS, help="the shared data's fragments.xyz")
        p.add_argument("--out", type=Path, required=True)
    parsers["xyz"].add_argument("--limit", type=int, default=None, help="at most this many fragments")
    parsers["xyz"].add_argument("--skip", nargs="*", default=[], help="HDF5 files whose keys are done")
    parsers["xyz"].add_argument("--from-rank", type=int, default=0,
                                help="skip lower ranks too (computed by an earlier session, whose files are gone)")
    parsers["split"].add_argument("data", nargs="+", help="eqchem HDF5 data files")
    parsers["structures"].add_argument("model", help="model file whose training keys to write")
    parsers["structures"].add_argument("--part", choices=("train", "val"), default="train",
                                       help="the model's training or validation keys")
    parsers["structures"].add_argument("--skip", nargs="*", default=[], help="HDF5 files whose keys to leave out")
    a = ap.parse_args()
    if a.cmd == "split":
        write_split(a.data, a.out, a.fragments)
    elif a.cmd == "structures":
        write_structures(a.model, a.fragments, a.out, a.part, a.skip)
    elif not a.fragments.exists():
        raise SystemExit(f"{a.fragments}: no fragment list (the shared data's fragments.xyz); give --fragments")
    else:
        write_xyz(a.fragments, a.out, a.limit, a.skip, a.from_rank)


if __name__ == "__main__":
    main()
