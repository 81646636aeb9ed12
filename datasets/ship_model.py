"""Evaluate a trained model on the held-out test molecules and ship it as one of eqchem's models.

    python datasets/ship_model.py MODEL.pt --mode accurate|fast --data part-001.h5 qm9.h5 \
        --split split.json... [--recipe qm9|fragments] [--scf-molecules 5] [--notes "..."]

Writes ``eqchem/models/<mode>.pt`` (the model with its test metrics, its wall time per test molecule by
prediction stage, and card fields in the metadata) and ``datasets/<recipe>/<mode>_training_set.csv`` (key,
QM9 index where it is a QM9 molecule, and canonical SMILES of every training molecule; the card names the
file). ``--recipe fragments``: a model of QM9 and drug-like fragments (``datasets/fragments``); the test keys
are the union of the ``--split`` files'. Test metrics follow QH9/QHNet: H MAE (all /
diagonal / off-diagonal blocks), occupied orbital-energy MAE, occupied-orbital cosine similarity,
HOMO/LUMO/gap MAE; the SCF cycle ratio uses PySCF's minao cycle counts stored with the data and a fresh SCF
from the predicted density.
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE / "qm9"))

RECIPES = {"qm9": "datasets/qm9/recipe.py (QM9 geometries from qm9pack; split by QM9 index)",
           "fragments": "datasets/fragments/README.md (QM9 molecules split by QM9 index, drug-like MOSES fragments "
                        "with force-field geometries split by canonical SMILES; the shared data's parts plus each "
                        "session's)"}
PEERS = {"QHNet (QH9-stable-id, ~130k molecules)": {"h_mae_uEh": 76.3, "h_mae_diag_uEh": 111, "h_mae_offd_uEh": 73.7,
                                                   "eps_occ_mae_uEh": 799, "psi_cos_pct": 95.85, "scf_ratio": 0.71}}


def _stage_of(m) -> dict:
    """One training run's card entry: its time, epochs, hardware, molecules and config."""
    tc = m.metadata.get("train_config", {})
    return {"train_seconds": m.metadata.get("train_seconds"), "epochs": m.metadata.get("epochs"),
            "train_hardware": m.metadata.get("train_hardware"),
            "n_train_molecules": m.metadata.get("n_train_molecules"), "train_config": tc}


def training_stages(model, where: Path) -> list[dict]:
    """The training runs that made ``model`` (file in directory ``where``), first to last, following each run's
    ``--init`` model; a shipped model met on the way brings its card's stages (those not already listed: a run's
    ``--init eqchem/models/fast.pt`` names whatever that file holds today, which may be a later stage shipped
    since)."""
    from eqchem.inference.model_file import load_model

    stages, m = [], model
    while m is not None:
        if m is not model and m.metadata.get("training_stages"):  # a shipped model: its card has its stages
            seen = {(st.get("train_seconds"), st.get("epochs"), st.get("n_train_molecules")) for st in stages}
            earlier = [st for st in m.metadata["training_stages"]
                       if (st.get("train_seconds"), st.get("epochs"), st.get("n_train_molecules")) not in seen]
            return earlier + stages
        stages.insert(0, _stage_of(m))
        init = m.metadata.get("train_config", {}).get("init_model")
        # a relative --init path was relative to the directory that run started in: try the model's own; a
        # session's cache is gone by the next one: try the same file name beside the model (stages kept in git)
        found = next((p for p in (Path(init), where / init, where / Path(init).name) if p.exists()), None) \
            if init else None
        if init and found is not None and found != Path(init):
            print(f"stage model {init} not found; using {found}")
        if init and found is None:
            raise SystemExit(f"stage model {init} not found: the card would miss a training stage")
        m, where = (load_model(found), found.parent) if found else (None, where)
    return stages


def test_metrics(model, data: list[str], test: set[str], scf_molecules: int, fock_step: bool = True) -> dict:
    """Mean test metrics over the ``test`` keys found in the ``data`` files; SCF cycles on the first few;
    the wall time per molecule of the prediction (``evaluate``'s pipeline stages, one process, seconds)."""
    from eqchem.data.reader import H5Dataset
    from eqchem.inference.evaluate import SCF_FIELDS, evaluate, scf_ratios
    from eqchem.inference.pipeline import StageTimings

    rows = []
    timings = StageTimings()
    scf_left = scf_molecules
    for path in data:
        ds = H5Dataset(path)
        keys = [k for k in ds.keys() if k in test]
        if not keys:
            continue
        ds = ds.subset(keys)
        rows.extend(evaluate(ds, model, fock_step=fock_step, timings=timings)["molecules"])
        if scf_left > 0:
            sub = ds.subset(keys[:scf_left])
            for r in evaluate(sub, model, scf=True, fock_step=fock_step)["molecules"]:
                for row in rows:
                    if row["key"] == r["key"]:
                        row.update({k: r[k] for k in SCF_FIELDS})
            scf_left -= len(sub)
    if not rows:
        raise SystemExit("no test molecules found in the data")
    metric_keys = [k for k in rows[0] if k not in ("key", "n_atoms", *SCF_FIELDS)  # numbers only (a calibrated
                   and isinstance(rows[0][k], (int, float)) and not isinstance(rows[0][k], bool)]  # model: reasons)
    summary = {k: float(np.nanmean([r[k] for r in rows])) for k in metric_keys}
    scf_rows = [r for r in rows if "scf_cycles_pred" in r]
    if scf_rows:
        summary.update(scf_ratios(scf_rows))
        summary["scf_molecules"] = len(scf_rows)
    summary["n_test_molecules"] = len(rows)
    per = timings.per_molecule()
    summary["seconds_per_molecule"] = float(sum(per.values()))
    summary.update({f"seconds_per_molecule_{k}": float(v) for k, v in per.items() if v > 0})
    return summary


def main() -> None:
    from recipe import index_of, read_selection

    from eqchem.data.reader import H5Dataset
    from eqchem.data.split_file import split_keys
    from eqchem.model.card import ModelCard
    from eqchem.inference.card_text import hardware_text
    from eqchem.inference.model_file import load_model
    from eqchem.model.file import SHIPPED_MODELS, default_model_path, save_model

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", type=Path)
    ap.add_argument("--mode", choices=sorted(SHIPPED_MODELS), required=True, help="which shipped model this becomes")
    ap.add_argument("--data", nargs="+", required=True)
    ap.add_argument("--split", type=Path, nargs="+", required=True, help="split files: their test keys, united")
    ap.add_argument("--recipe", choices=sorted(RECIPES), default="qm9", help="the recipe that made the data")
    ap.add_argument("--scf-molecules", type=int, default=5)
    ap.add_argument("--notes", default="")
    ap.add_argument("--train-hardware", default="",
                    help="what the stages trained on, for models whose files predate eqchem recording it")
    ap.add_argument("--out", type=Path, default=None, help="default: eqchem/models/<mode>.pt")
    ap.add_argument("--correction-cutoff", type=float, default=None,
                    help="Δ-models: set the prediction setting correction_overlap_cutoff (choose it on validation molecules)")
    ap.add_argument("--fock-mixing", type=float, default=None,
                    help="set the prediction setting fock_mixing, the damped Fock step after the network (choose it on validation)")
    ap.add_argument("--pair-cutoff", type=float, default=None,
                    help="Δ-models: set the prediction setting correction_pair_cutoff in Å (choose it on validation molecules)")
    a = ap.parse_args()

    chosen = {"correction_overlap_cutoff": a.correction_cutoff, "correction_pair_cutoff": a.pair_cutoff,
              "fock_mixing": a.fock_mixing}
    model = load_model(a.model).with_settings(**{k: v for k, v in chosen.items() if v is not None})
    test = split_keys(a.split, "test")
    summary = test_metrics(model, a.data, test, a.scf_molecules)
    network_only = (test_metrics(model, a.data, test, a.scf_molecules, fock_step=False)
                    if model.fock_mixing > 0 else None)

    meta = dict(model.metadata)
    meta["test_metrics"] = summary
    meta["metrics"] = {**meta.get("metrics", {}), **{f"test_{k}": v for k, v in summary.items()}}
    if network_only:
        meta["test_metrics_network_only"] = network_only
        meta["metrics"].update({f"test_network_only_{k}": v for k, v in network_only.items()})
    if not meta.get("xc_description"):  # data files written before eqchem recorded the parsed functional
        import pyscf

        from eqchem.dft.runner import xc_description

        if meta.get("pyscf_version") == pyscf.__version__:  # the same PySCF parses the name the same way
            meta["xc_description"] = xc_description(meta["xc"])
    meta["peers"] = PEERS
    meta["name"] = f"eqchem-{a.mode}-{'qm9' if a.recipe == 'qm9' else 'qm9-fragments'}-b3lyp-def2svp"
    meta["mode"] = a.mode
    meta["notes"] = a.notes
    meta["off_equilibrium_geometries"] = False
    stages = training_stages(model, a.model.parent)
    meta["training_stages"] = stages
    hardware = {hardware_text(st["train_hardware"]) for st in stages if st.get("train_hardware")}
    meta["train_hardware"] = a.train_hardware or "; ".join(sorted(hardware)) or "not recorded"
    meta["data_recipe"] = RECIPES[a.recipe]
    csv_path = HERE / a.recipe / f"{a.mode}_training_set.csv"
    meta["training_set_file"] = str(csv_path.relative_to(ROOT))
    out = a.out or default_model_path(a.mode)
    save_model(out, model.net, ModelCard.from_dict(meta), model.settings, model.change_of_basis, model.uncertainty)

    # the exact training set: QM9 index and canonical SMILES
    from rdkit import Chem

    sel = {r["key"]: r for r in read_selection()}
    smiles = {}
    for path in a.data:
        ds = H5Dataset(path)
        f = ds._h5()
        for k in meta["train_keys"]:
            if k in f["molecules"] and k not in smiles:
                smiles[k] = f["molecules"][k].attrs.get("smiles", "")
    with open(csv_path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["key", "qm9_index", "canonical_smiles"])
        for k in meta["train_keys"]:
            smi = sel[k]["canonical_smiles"] if k in sel else smiles.get(k, "")
            if smi and k not in sel:
                mol = Chem.MolFromSmiles(smi)
                smi = Chem.MolToSmiles(mol) if mol is not None else smi
            w.writerow([k, index_of(k) if k.startswith("qm9_") else "", smi])
    print(json.dumps({"with Fock step": summary, "network only": network_only}, indent=1))
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB) and {csv_path}")


if __name__ == "__main__":
    main()
