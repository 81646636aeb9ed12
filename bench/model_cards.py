"""The shipped models' stored test metrics and training stages, as the README's model tables quote them.

Reads each model file's metadata (``torch.load(..., weights_only=True)``; no network is built) and prints one
table: training molecules, test H MAE (all / diagonal / off-diagonal blocks), occupied orbital-energy MAE,
occupied-orbital cosine, HOMO / LUMO / gap MAE, dipole MAE, SCF-cycle ratios, seconds per molecule, and the
minutes of every training stage. ``eqchem info --model fast`` prints the same card of one model.

A model is a shipped mode (``fast``, ``accurate``), a path, or ``REV:PATH`` for a model file of an earlier
commit (read with ``git show``). Default: ``fast``, ``accurate`` and ``5cc3757:eqchem/models/fast.pt`` (the
previous fast model, QM9's elements only, that the README's fast-model table compares with).

    python bench/model_cards.py
    python bench/model_cards.py fast my_model.pt
"""
from __future__ import annotations

import argparse
import io
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT = ("fast", "accurate", "5cc3757:eqchem/models/fast.pt")
ROWS = [  # (label, metric keys, format)
    ("test molecules", ("test_n_test_molecules",), "{:.0f}"),
    ("H MAE, all / diagonal / off-diagonal (µEh)", ("test_h_mae_uEh", "test_h_mae_diag_uEh", "test_h_mae_offd_uEh"),
     "{:,.0f}"),
    ("network alone (no Fock step): H MAE, all / diagonal / off-diagonal (µEh)",
     ("test_network_only_h_mae_uEh", "test_network_only_h_mae_diag_uEh", "test_network_only_h_mae_offd_uEh"),
     "{:,.0f}"),
    ("occupied ε MAE (µEh)", ("test_eps_occ_mae_uEh",), "{:,.0f}"),
    ("network alone: occupied ε MAE (µEh)", ("test_network_only_eps_occ_mae_uEh",), "{:,.0f}"),
    ("occupied-orbital cosine (%)", ("test_psi_cos_pct",), "{:.1f}"),
    ("network alone: occupied-orbital cosine (%)", ("test_network_only_psi_cos_pct",), "{:.1f}"),
    ("HOMO / LUMO / gap MAE (eV)", ("test_homo_mae_ev", "test_lumo_mae_ev", "test_gap_mae_ev"), "{:.3f}"),
    ("network alone: HOMO / LUMO / gap MAE (eV)",
     ("test_network_only_homo_mae_ev", "test_network_only_lumo_mae_ev", "test_network_only_gap_mae_ev"), "{:.3f}"),
    ("dipole magnitude MAE (Debye)", ("test_dipole_mae_debye",), "{:.3f}"),
    ("network alone: dipole magnitude MAE (Debye)", ("test_network_only_dipole_mae_debye",), "{:.3f}"),
    ("molecules of the dipole MAE", ("test_dipole_molecules",), "{:.0f}"),
    ("SCF cycles from the prediction / from minao", ("test_scf_ratio",), "{:.2f}"),
    ("the same, the prediction's Fock builds counted as cycles", ("test_scf_ratio_with_builds",), "{:.2f}"),
    ("network alone: SCF cycle ratio / with builds", ("test_network_only_scf_ratio",
                                                     "test_network_only_scf_ratio_with_builds"), "{:.2f}"),
    ("molecules of the SCF ratios", ("test_scf_molecules",), "{:.0f}"),
    ("s per test molecule: all / network / guess", ("test_seconds_per_molecule", "test_seconds_per_molecule_network",
                                               "test_seconds_per_molecule_baseline"), "{:.3f}"),
]

from report import write_report


def read_metadata(spec: str) -> tuple[str, dict]:
    import torch

    if spec in ("fast", "accurate", "default"):
        path = ROOT / "eqchem" / "models" / f"{'fast' if spec == 'default' else spec}.pt"
        blob = torch.load(path, map_location="cpu", weights_only=True)
        where = str(path.relative_to(ROOT))
    elif ":" in spec and not Path(spec).exists():
        raw = subprocess.run(["git", "show", spec], cwd=ROOT, capture_output=True, check=True).stdout
        blob = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
        where = f"{spec} (git)"
    else:
        blob = torch.load(spec, map_location="cpu", weights_only=True)
        where = spec
    return where, dict(blob.get("metadata", {}))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("models", nargs="*", default=list(DEFAULT))
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "model_cards")
    a = p.parse_args()

    cards = []
    for spec in a.models:
        where, meta = read_metadata(spec)
        metrics = dict(meta.get("metrics") or {})
        stages = [{"n_train_molecules": s.get("n_train_molecules"), "epochs": s.get("epochs"),
                   "minutes": (s.get("train_seconds") or 0) / 60} for s in (meta.get("training_stages") or [])]
        cards.append({"model": spec, "file": where, "name": meta.get("name"), "baseline":
                      (meta.get("train_config") or {}).get("model", {}).get("baseline"),
                      "n_train_molecules": meta.get("n_train_molecules"), "metrics": metrics, "stages": stages,
                      "notes": meta.get("notes")})

    def cell(card, keys, fmt):
        vals = [card["metrics"].get(k) for k in keys]
        return "–" if all(v is None for v in vals) else " / ".join("–" if v is None else fmt.format(v) for v in vals)

    lines = ["| | " + " | ".join(c["model"] for c in cards) + " |", "|---|" + "---:|" * len(cards),
             "| guess (baseline) | " + " | ".join(str(c["baseline"]) for c in cards) + " |",
             "| training molecules | " + " | ".join(str(c["n_train_molecules"]) for c in cards) + " |"]
    for label, keys, fmt in ROWS:
        cells = [cell(c, keys, fmt) for c in cards]
        if any(x != "–" for x in cells):
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines.append("| training stages: molecules, minutes | " + " | ".join(
        "; ".join(f"{s['n_train_molecules']}, {s['minutes']:.0f} min" for s in c["stages"]) or "–" for c in cards)
        + " |")
    lines.append("| training hours in all | " + " | ".join(
        f"{sum(s['minutes'] for s in c['stages']) / 60:.2f}" if c["stages"] else "–" for c in cards) + " |")
    table = "\n".join(lines)
    footer = ("Test metrics as stored in each model file's card (computed when the model was shipped, on its "
              "held-out test molecules: QM9 molecules, and for a model of S, Cl and Br also drug-like fragments "
              "and drug-sized molecules); files: " + ", ".join(f"{c['model']} = {c['file']}" for c in cards) + ".")
    write_report(a.out, "model_cards", table, footer, {"benchmark": "model_cards", "cards": cards})


if __name__ == "__main__":
    main()
