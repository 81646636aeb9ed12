"""Plots people would rather look at than read: parity of H elements, learning curves."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np


def parity_plot(path: Path, ref: Sequence[float], pred: Sequence[float], summary: dict | None = None) -> None:
    """Predicted vs reference matrix elements (Eh), with the error distribution inset."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ref, pred = np.asarray(ref), np.asarray(pred)
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(10, 4.5))
    ax.scatter(ref, pred, s=2, alpha=0.3)
    lo, hi = float(min(ref.min(), pred.min())), float(max(ref.max(), pred.max()))
    ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
    ax.set_xlabel("reference H element (Eh)")
    ax.set_ylabel("predicted H element (Eh)")
    if summary and "h_mae_uEh" in summary:
        ax.set_title(f"H MAE {summary['h_mae_uEh']:.0f} µEh over {summary.get('n_molecules', '?')} structures")
    err = np.abs(pred - ref) * 1e6
    ax2.hist(np.log10(err + 1e-3), bins=60)
    ax2.set_xlabel("log10 |error| (µEh)")
    ax2.set_ylabel("elements")
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def learning_curve_plot(path: Path, sizes: Sequence[int], maes: Sequence[float], label: str = "",
                        references: Sequence[tuple[str, int, float]] = (), floor: float | None = None) -> None:
    """Test H MAE (µEh) against the number of training structures, log-log; ``references``: (name, training
    structures, H MAE µEh) points of other models (published), ``floor``: a horizontal line (µEh)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5 if references else 5, 4))
    ax.loglog(sizes, maes, "o-", label=label or None)
    for i, (name, n, mae) in enumerate(references):
        ax.scatter([n], [mae], marker="s^Dv"[i % 4], s=45, label=name)
    if floor:
        ax.axhline(floor, color="grey", ls="--", lw=1, label=f"floor {floor:g} µEh")
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    ax.xaxis.set_major_formatter(ScalarFormatter())  # plain numbers at the data points
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xticks(list(sizes) + [n for _, n, _ in references])
    ax.yaxis.set_major_formatter(ScalarFormatter())
    ax.yaxis.set_minor_formatter(ScalarFormatter())  # a curve within one decade has only minor ticks
    ax.set_xlabel("training structures")
    ax.set_ylabel("test H MAE (µEh)")
    ax.grid(True, which="both", alpha=0.3)
    if label or references or floor:
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
