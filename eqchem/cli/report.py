"""Tables the CLI prints: data-file summaries and model cards."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

from rich.table import Table

from .. import keys
from .common import console, print_table

CARD_WIDTH = 120  # characters: a model card piped to a file wraps its long values instead of one 400-wide line


def print_data_info(path: Path) -> None:
    """Counts, elements, sizes, level of theory and failures of an eqchem HDF5 file."""
    import numpy as np

    from ..data.reader import H5Dataset
    from ..io.elements import symbol

    ds = H5Dataset(path)
    natoms, elements = [], Counter()
    for k in ds.keys():
        z = ds.numbers(k)
        natoms.append(len(z))
        elements.update(symbol(int(x)) for x in np.unique(z))
    t = Table(title=f"{path}", show_header=False)
    t.add_row("format version", str(ds.attrs.get(keys.FORMAT_VERSION_ATTR, "?")))
    t.add_row("level of theory", f"{ds.xc} / {ds.basis}  (grid {ds.attrs.get(keys.GRIDS_LEVEL, '?')}, "
                                 f"conv_tol {ds.attrs.get(keys.CONV_TOL, '?')})")
    label = ds.attrs.get(keys.LABEL_PRESET)
    aux = ds.attrs.get(keys.AUXBASIS)
    t.add_row("label settings", "not recorded" if label is None else
              (label or "custom") + (f", density fitting on {aux}" if aux else ""))
    t.add_row("functional (parsed)", str(ds.attrs.get(keys.XC_DESCRIPTION, "not recorded")))
    t.add_row("PySCF version", str(ds.attrs.get(keys.PYSCF_VERSION, "?")))
    t.add_row("AO convention", str(ds.attrs.get(keys.AO_CONVENTION, "?")))
    t.add_row("structures", str(len(ds)))
    if natoms:
        t.add_row("atoms per structure", f"{min(natoms)}–{max(natoms)} (mean {np.mean(natoms):.1f})")
    t.add_row("elements (structures containing)", ", ".join(f"{e} {n}" for e, n in sorted(elements.items())))
    t.add_row("failures", str(len(ds.failures)))
    t.add_row("file size", f"{path.stat().st_size / 1e6:.1f} MB")
    print_table(t)
    if ds.failures:
        ft = Table("failed structure", "reason", title="failures")
        for k, reason in list(ds.failures.items())[:20]:
            ft.add_row(k, reason)
        print_table(ft)
        if len(ds.failures) > 20:
            console.print(f"... and {len(ds.failures) - 20} more")


def print_model_card(path: Path | str | None) -> None:
    """The card of a model file, or of a shipped model by mode ('default', 'fast', 'accurate'; None: default)."""
    from ..inference.model_file import load_model

    model = load_model(path)
    card = model.describe()
    t = Table(title=f"model: {card['path']}", show_header=False)
    t.add_column(no_wrap=True)
    t.add_column(overflow="fold")  # long values (notes, the architecture) wrap in their cell; nothing is cut
    for k, v in card.items():
        if k in ("path", "metrics", "test metrics by group"):
            continue
        t.add_row(k, str(v))
    for k, v in (card.get("metrics") or {}).items():
        t.add_row(f"metric: {k}", f"{v:.4g}" if isinstance(v, float) else str(v))
    print_table(t, max_width=CARD_WIDTH)
    if card["test metrics by group"]:
        print_table(groups_table(card["test metrics by group"], "test metrics by chemistry and size"))


GROUP_COLUMNS = (("n_molecules", "n", "d"), ("h_mae_uEh", "H µEh", ",.0f"), ("eps_occ_mae_uEh", "ε_occ µEh", ",.0f"),
                 ("psi_cos_pct", "ψ cos %", ".1f"), ("homo_mae_ev", "HOMO eV", ".3f"), ("lumo_mae_ev", "LUMO eV", ".3f"),
                 ("gap_mae_ev", "gap eV", ".3f"), ("dipole_mae_debye", "|μ| D", ".2f"))
"""The grouped table's columns: metric, heading, format."""


def groups_table(groups: dict, title: str = "by chemistry and size (mean absolute errors)"):
    """Mean metrics per chemistry and size group (:func:`eqchem.metrics.chemistry_groups`)."""
    table = Table(title=title)
    table.add_column("group")
    for _, heading, _ in GROUP_COLUMNS:
        table.add_column(heading, justify="right")
    for g, m in groups.items():
        table.add_row(g, *(format(m[k], f) if k in m else "–" for k, _, f in GROUP_COLUMNS))
    return table
