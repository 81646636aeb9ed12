"""Where a model's Hamiltonian error lies: the test molecules' |H_pred − H| split by kind of block (on-site, atom
pairs by distance), by the two shells' angular momenta (and whether a heavy atom's 1s takes part) and by element
pair.

    python bench/error_anatomy.py MODEL.pt --data DATA.h5... --split split.json... [--out DIR] [--limit N]

Each category's **contribution** (µEh) is its summed |ΔH| over the molecule's AO pairs divided by all its AO
pairs, averaged over molecules, so the contributions of one breakdown add up to the H MAE; beside it the
category's share of the matrix elements and its own mean |ΔH| (µEh). The test keys are the union of the splits'
``test`` keys found in the data (molecules with elements the model lacks left out). The pair distances tell
where the network stops: the fast model's correction of an atom pair fades out from 4 to 5 Å, so beyond 5 Å
its error is its grid-free guess's.
"""
from __future__ import annotations

import argparse
import json
import time
import warnings
from collections import defaultdict
from pathlib import Path

import numpy as np
from report import write_report

DISTANCE_BINS = (0.0, 1.6, 2.8, 4.0, 5.0, np.inf)
"""Å: bonded, 1-3 neighbours, 2.8–4, 4–5 (the fast correction fades out), beyond 5."""
L_NAMES = "spdfg"


def _distance_label(d: float) -> str:
    i = int(np.searchsorted(DISTANCE_BINS, d, side="right")) - 1
    lo, hi = DISTANCE_BINS[i], DISTANCE_BINS[i + 1]
    return f"pair {lo:g}–{hi:g} Å" if np.isfinite(hi) else f"pair beyond {lo:g} Å"


def anatomy(numbers: np.ndarray, positions: np.ndarray, error: np.ndarray,
            shells: dict[int, tuple[int, ...]]) -> dict[str, dict[str, tuple[float, int]]]:
    """{breakdown: {category: (summed |error|, number of AO pairs)}} of one molecule's |H_pred − H| (nao, nao)."""
    from eqchem.data.reader import ao_shells, atom_ao_offsets
    from eqchem.io.elements import symbol

    off = atom_ao_offsets(numbers, shells)
    ls, shell_index = ao_shells(numbers, shells)
    core = (shell_index == 0) & (np.repeat(numbers, np.diff(off)) > 2)  # a heavy atom's 1s
    dist = np.linalg.norm(positions[:, None] - positions[None], axis=-1)
    out: dict[str, dict[str, list]] = {name: defaultdict(lambda: [0.0, 0]) for name in ("block", "shells", "elements")}
    sym = [symbol(int(z)) for z in numbers]
    n = len(numbers)
    for i in range(n):
        for j in range(n):
            blk = error[off[i]:off[i + 1], off[j]:off[j + 1]]
            s, c = float(blk.sum()), int(blk.size)
            kind = "on-site" if i == j else _distance_label(float(dist[i, j]))
            out["block"][kind][0] += s
            out["block"][kind][1] += c
            pair = sym[i] if i == j else "-".join(sorted((sym[i], sym[j])))
            key = f"{pair} on-site" if i == j else pair
            out["elements"][key][0] += s
            out["elements"][key][1] += c
    li, lj = np.meshgrid(ls, ls, indexing="ij")
    ci, cj = np.meshgrid(core, core, indexing="ij")
    lo, hi = np.minimum(li, lj), np.maximum(li, lj)
    for l1 in range(int(ls.max()) + 1):
        for l2 in range(l1, int(ls.max()) + 1):
            for with_core in (True, False):
                mask = (lo == l1) & (hi == l2) & ((ci | cj) == with_core)
                if mask.any():
                    name = f"{L_NAMES[l1]}{L_NAMES[l2]}{' (with a 1s)' if with_core else ''}"
                    out["shells"][name][0] += float(error[mask].sum())
                    out["shells"][name][1] += int(mask.sum())
    return {k: {c: (v[0], v[1]) for c, v in d.items()} for k, d in out.items()}


def summarize(per_molecule: list[dict], sizes: list[int]) -> dict[str, list[dict]]:
    """Per breakdown, the categories' contribution to the H MAE, share of elements and own mean (µEh), largest
    contribution first; ``sizes``: each molecule's nao² (its H MAE's denominator)."""
    out = {}
    for name in per_molecule[0]:
        cats = sorted({c for m in per_molecule for c in m[name]})
        rows = []
        for c in cats:
            s = np.array([m[name].get(c, (0.0, 0))[0] for m in per_molecule])
            k = np.array([m[name].get(c, (0.0, 0))[1] for m in per_molecule])
            rows.append({"category": c, "contribution_uEh": float(np.mean(s / np.array(sizes)) * 1e6),
                         "share_of_elements_pct": float(np.mean(k / np.array(sizes)) * 100),
                         "mean_abs_error_uEh": float(s.sum() / max(k.sum(), 1) * 1e6),
                         "molecules": int(np.count_nonzero(k))})
        out[name] = sorted(rows, key=lambda r: -r["contribution_uEh"])
    return out


def markdown(summary: dict[str, list[dict]], h_mae: float) -> str:
    """The breakdowns as markdown tables."""
    lines = [f"H MAE {h_mae:.0f} µEh (mean over molecules); each table's contributions add up to it.", ""]
    titles = {"block": "by block", "shells": "by the two shells' l (and a heavy atom's 1s)", "elements": "by element pair"}
    for name, rows in summary.items():
        lines += [f"### {titles.get(name, name)}", "",
                  "| category | contribution µEh | share of elements % | mean \\|ΔH\\| µEh | molecules |",
                  "|---|---:|---:|---:|---:|"]
        lines += [f"| {r['category']} | {r['contribution_uEh']:,.0f} | {r['share_of_elements_pct']:.1f} | "
                  f"{r['mean_abs_error_uEh']:,.0f} | {r['molecules']} |" for r in rows]
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    import eqchem
    from eqchem.cpu import processor_name
    from eqchem.data.reader import H5Dataset
    from eqchem.inference.model_file import load_model

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", type=Path)
    ap.add_argument("--data", nargs="+", required=True)
    ap.add_argument("--split", type=Path, nargs="+", required=True)
    ap.add_argument("--limit", type=int, default=None, help="at most this many test molecules (the first, sorted)")
    ap.add_argument("--out", type=Path, default=None, help="folder for error_anatomy.json and .md")
    a = ap.parse_args()

    t0 = time.perf_counter()
    model = load_model(a.model)
    test = set()
    for path in a.split:
        test |= set(json.loads(path.read_text()).get("test", []))
    per_molecule, sizes, maes, keys = [], [], [], []
    for path in a.data:
        ds = H5Dataset(path)
        shells = ds.basis_shells()
        for key in sorted(test & set(ds.keys())):
            if a.limit is not None and len(keys) >= a.limit:
                break
            if not model.covers_elements(ds.numbers(key)):
                continue
            rec = ds.read(key, overlap=False)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # drug-sized molecules: size-extrapolation warnings
                res = eqchem.predict((rec.numbers, rec.positions), model=model)
            err = np.abs(res.hamiltonian - rec.hamiltonian)
            per_molecule.append(anatomy(rec.numbers, rec.positions, err, shells))
            sizes.append(err.size)
            maes.append(float(err.mean() * 1e6))
            keys.append(key)
    if not keys:
        raise SystemExit("no test key of the splits is in the data files")
    summary = summarize(per_molecule, sizes)
    header = (f"Model {a.model} on {len(keys)} test molecules of {', '.join(p.name for p in a.split)}; "
              f"{processor_name()}, {time.perf_counter() - t0:.0f} s.")
    text = markdown(summary, float(np.mean(maes)))
    if a.out:
        write_report(a.out, "error_anatomy", text, header, {"model": str(a.model), "keys": keys,
                                                            "h_mae_uEh": float(np.mean(maes)), "breakdowns": summary})
    else:
        print(text + "\n" + header)


if __name__ == "__main__":
    main()
