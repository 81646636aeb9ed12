"""The model file: weights + architecture + basis + level of theory + provenance, restored without data.

Prediction itself lives in :mod:`eqchem.inference.pipeline`; :meth:`EqchemModel.predict_matrices` hands
the work to it.

Saved as a plain ``torch.save`` dict of tensors and JSON-able values (loads with ``weights_only=True``);
the network is rebuilt from its config, never unpickled.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from .. import __version__
from ..basis import BasisLayout
from ..errors import ModelError
from ..model.blocks import AOConverter
from ..model.config import ModelConfig
from ..model.hamiltonian import HamiltonianModel, build_model, load_portable_state_dict, portable_state_dict
from .model_header import DEFAULT_MODE, MODEL_FORMAT, SHIPPED_MODELS, default_model_path, model_path  # noqa: F401

def save_model(path: str | Path, net: HamiltonianModel, metadata: dict, change_of_basis=None) -> Path:
    """Write a model file atomically. ``metadata``: xc, basis, target, data_hash, metrics, training info.

    The PySCF<->e3nn change of basis of the layout's shells travels with it (``keys.AO_CHANGE_OF_BASIS``,
    JSON): ``change_of_basis`` ``{l: M_l}`` as training read it from the data, else computed with PySCF
    (left out where PySCF is absent; loading then computes it, as for model files written before).
    """
    from .. import keys
    from ..basis import change_of_basis_table

    path = Path(path)
    try:
        table = change_of_basis_table(net.layout.slot_ls, dict(change_of_basis) if change_of_basis else None)
        cob_json = json.dumps({str(l): m.tolist() for l, m in sorted(table.items())})
    except ImportError:
        cob_json = None
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().clone() for k, v in portable_state_dict(net).items()}
    blob = {
        "format": MODEL_FORMAT,
        "eqchem_version": __version__,
        "model_config": net.config.to_dict(),
        "layout": net.layout.to_dict(),
        "avg_neighbors": float(net.layers[0].avg_neighbors) if len(net.layers) else 8.0,
        "dtype": str(next(net.parameters()).dtype).replace("torch.", ""),
        "ao_convention": "pyscf",
        **({keys.AO_CHANGE_OF_BASIS: cob_json} if cob_json else {}),
        "metadata": metadata,
        "state_dict": state,
    }
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    torch.save(blob, tmp)
    os.replace(tmp, path)
    return path


class EqchemModel:
    """A loaded model: the network plus everything needed to use it on new molecules."""

    def __init__(self, net: HamiltonianModel, metadata: dict, path: Path | None, change_of_basis=None):
        self.net = net.eval()
        self.metadata = metadata
        self.path = path
        self.layout: BasisLayout = net.layout
        self.change_of_basis = change_of_basis  # {l: M_l} from the model file (None: computed with PySCF)
        self.converter = AOConverter(self.layout, change_of_basis)

    # -- description ------------------------------------------------------------------------
    @property
    def basis(self) -> str:
        return self.layout.basis

    @property
    def xc(self) -> str:
        return str(self.metadata.get("xc", ""))

    @property
    def baseline_params(self) -> dict | None:
        """The fitted parts of the model's guess (``core-jx``: its atomic potentials), as training's guess
        files held them; None for guesses without any."""
        return self.metadata.get("baseline_params")

    @property
    def target(self) -> str:
        return self.net.config.target

    @property
    def elements(self) -> tuple[int, ...]:
        return self.layout.elements

    @property
    def charges(self) -> tuple[int, ...]:
        """Total charges of the training structures (models trained before eqchem recorded it: neutral)."""
        return tuple(int(q) for q in self.metadata.get("charges") or (0,))

    @property
    def spins(self) -> tuple[int, ...]:
        """2S values of the training structures (models trained before eqchem recorded it: closed shell)."""
        return tuple(int(s) for s in self.metadata.get("spins") or (0,))

    @property
    def coverage_text(self) -> str:
        """The charges and spins the model was trained on, in words."""
        if self.charges == (0,) and self.spins == (0,):
            text = "neutral closed-shell molecules only: charge 0, spin 0"
        else:
            text = (f"charges {', '.join(f'{q:+d}' if q else '0' for q in self.charges)}; "
                    f"spins (2S) {', '.join(map(str, self.spins))}")
        return text if "charges" in self.metadata else text + " (assumed: this model file does not record it)"

    def card(self) -> dict:
        from ..io.elements import symbol

        m = self.metadata
        stages = m.get("training_stages") or [m]  # a fine-tuned default lists its stages; else this one run
        card = {
            "path": str(self.path) if self.path else "(in memory)",
            "target": self.target,
            "baseline": baseline_text(self.net.config.baseline, self.baseline_params),
            "mode": m.get("mode") or next((k for k in SHIPPED_MODELS if self.path == default_model_path(k)), "-"),
            "PySCF Fock builds per prediction": self.fock_builds(),
            "Fock step after the network": (f"H + {self.fock_mixing:g} (F[P(H)] - H): one cheap Fock build"
                                            if self.fock_mixing > 0 else "none"),
            "level of theory": f"PySCF RKS {self.xc} / {self.basis} (grid {m.get('grids_level', '?')}, "
                               f"conv_tol {m.get('conv_tol', '?')})",
            "functional (parsed)": m.get("xc_description") or "not recorded",
            "functional note": functional_note(self.xc, m.get("xc_description") or ""),
            "charge / spin coverage": self.coverage_text,
            "PySCF version of the data": m.get("pyscf_version", "?"),
            "elements": " ".join(symbol(z) for z in self.elements),
            "atoms per training structure": m.get("atoms_range", "?"),
            "training molecules / structures": f"{m.get('n_train_molecules', '?')} / {m.get('n_train_structures', '?')}",
            "validation structures": m.get("n_val_structures", "?"),
            "parameters": sum(p.numel() for p in self.net.parameters()),
            "architecture": ", ".join(f"{k}={v}" for k, v in self.net.config.to_dict().items()),
            "training data hash": m.get("data_hash", "?"),
            "trained with eqchem": m.get("eqchem_version", "?"),
            "training runs / hours (wall clock)": f"{len(stages)} / "
                                                  f"{sum(float(st.get('train_seconds') or 0) for st in stages) / 3600:.2f}",
            "trained on": hardware_text(m.get("train_hardware")),
            "off-equilibrium geometries": m.get("off_equilibrium_geometries", "?"),
            "data recipe": m.get("data_recipe", "?"),
            "peers": "; ".join(f"{k}: " + ", ".join(f"{a} {b}" for a, b in v.items())
                               for k, v in (m.get("peers") or {}).items()) or "-",
            "notes": m.get("notes", ""),
            "metrics": card_metrics(m.get("metrics", {})),
        }
        return card

    @property
    def fock_mixing(self) -> float:
        """Mixing of the damped Fock step applied after the network (0: none; Hamiltonian models only)."""
        return float(self.net.config.fock_mixing) if self.target == "hamiltonian" else 0.0

    def fock_builds(self, fock_step: bool = True) -> int:
        """Kohn–Sham matrix builds one prediction makes (the guess of a Δ-model, the Fock step)."""
        from ..model.config import FOCK_BUILD_BASELINES

        return int(self.net.config.baseline in FOCK_BUILD_BASELINES) + int(fock_step and self.fock_mixing > 0)

    # -- prediction --------------------------------------------------------------------------
    def check_covers(self, numbers: Sequence[int]) -> None:
        self.converter.check_elements(numbers)

    def check_basis(self, numbers: Sequence[int]) -> None:
        """Refuse a model file whose stored shell layout disagrees with PySCF's basis of the same name
        (a model file edited or written by a buggy tool): its blocks would land on the wrong AOs."""
        from ..basis import element_shells
        from ..errors import BasisError
        from ..io.elements import symbol

        for z in sorted({int(z) for z in numbers} & set(self.layout.shells)):
            have, stored = element_shells(self.basis, z), tuple(self.layout.shells[z])
            if have != stored:
                where = self.path or "the model"
                raise BasisError(f"{where}: its basis layout for {symbol(z)} (shell l {list(stored)}) disagrees with "
                                 f"PySCF's '{self.basis}' (shell l {list(have)}); the model file is inconsistent: "
                                 f"retrain it or use another model")

    def predict_matrices(self, molecules: Sequence[tuple[np.ndarray, np.ndarray]], batch_size: int = 16,
                         device: str = "cpu", charges: Sequence[int] | None = None,
                         fock_step: bool = True, spins: Sequence[int] | None = None) -> list[np.ndarray]:
        """(numbers, positions Å) pairs -> (nao, nao) predicted matrices, PySCF AO order, float64.

        ``charges`` (default neutral) and ``spins`` (2S, default 0) set the electron count of a Δ-model's
        guess and the occupations of the model's Fock step (``config.fock_mixing``); ``fock_step=False``
        returns the network's matrix without it. The work is done by
        :class:`eqchem.inference.pipeline.PredictionPipeline` (use it directly for per-stage timings).
        """
        from .pipeline import PredictionPipeline

        pipeline = PredictionPipeline(self, batch_size=batch_size, device=device, fock_step=fock_step)
        return pipeline.matrices(molecules, charges=charges, spins=spins)


def baseline_text(baseline: str, params: dict | None = None) -> str:
    """The card's line for a model's baseline (``params``: its fitted parts, if any)."""
    from ..model.config import FOCK_BUILD_BASELINES

    if baseline == "none":
        return "none (H from the geometry alone)"
    how = ("one cheap PySCF Fock build" if baseline in FOCK_BUILD_BASELINES else
           "analytic PySCF integrals, no DFT grid, no density fitting")
    text = f"{baseline}: a Δ-model; predictions add this guess Hamiltonian ({how})"
    fit = (params or {}).get("fit")
    if (params or {}).get("atomic_potentials"):
        from ..io.elements import symbol

        elements = " ".join(symbol(int(z)) for z in sorted(params["atomic_potentials"], key=int))
        text += f"; effective atomic potentials of {elements} fitted"
        if fit:
            text += (f" on {fit['structures']} training structures (their guess MAE {fit['mae_before_uEh']:,.0f} "
                     f"µEh without them, {fit['mae_after_uEh']:,.0f} µEh with them)")
    return text


def card_metrics(metrics: dict) -> dict:
    """The metrics with one unit per quantity: H and orbital energies in µEh, HOMO/LUMO/gap in eV (training
    logs the gap loss in µEh; the card shows it in eV like the test metrics)."""
    from ..units import HARTREE_EV, MICRO_HARTREE

    out = {}
    for k, v in metrics.items():
        if k.endswith("_uEh") and any(t in k for t in ("gap", "homo", "lumo")) and isinstance(v, (int, float)):
            k, v = k[: -len("_uEh")] + "_ev", float(v) / MICRO_HARTREE * HARTREE_EV
        out[k] = v
    return out


def functional_note(xc: str, description: str) -> str:
    """What a short functional name means here, with the QH9 caveat for B3LYP's VWN variant."""
    name = xc.lower().replace("-", "")
    if name == "b3lyp" and "402" in description:
        return ("B3LYP with VWN-RPA (libxc 402, Gaussian's; PySCF >= 2.3). QH9 was computed with PySCF 2.2.1, "
                "whose 'b3lyp' was B3LYP with VWN5 ('b3lyp5' today): at the same density the two Fock "
                "matrices differ by ~150 µEh MAE on QM9 molecules, so compare with QH9 only with that in mind "
                "(eqchem generate --xc b3lyp5 gives QH9's functional)")
    if name == "b3lyp5":
        return "B3LYP with VWN5 (QH9's functional: PySCF 2.2.1's 'b3lyp')"
    return "-"


def hardware_text(hw) -> str:
    """The card's line for ``train_hardware``: a dict recorded by training, or a shipping script's text."""
    if isinstance(hw, dict):
        return (f"{hw.get('accelerator', '?')}, {hw.get('processes', '?')} process(es), "
                f"{hw.get('torch_threads', '?')} torch threads, {hw.get('cpu_cores', '?')} cores")
    return str(hw) if hw else "not recorded"


def load_model(path: str | Path | None = None, dtype: torch.dtype | None = None, quick: bool = False) -> EqchemModel:
    """Load a model file, or a shipped model by mode: ``None``/``"default"`` (:data:`DEFAULT_MODE`),
    ``"accurate"`` or ``"fast"`` (:data:`SHIPPED_MODELS`).

    ``quick``: build the network without e3nn's einsum-order search: a few seconds less to load, each forward
    pass slower (see :mod:`eqchem.model.e3nn_setup`): for a process that predicts a few structures and exits
    (``eqchem predict`` of one or a few batches); the default suits a model loaded once for many predictions."""
    shipped = path is None or str(path) in ("default", *SHIPPED_MODELS)
    p = model_path(path)
    if not p.exists():
        if shipped:
            raise ModelError(f"the '{path or DEFAULT_MODE}' model is not shipped in this eqchem ({p.name} missing)")
        raise ModelError(f"model file not found: {p}")
    try:
        blob = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - corrupt zip, wrong pickle, ...
        raise ModelError(f"{p} is not a readable eqchem model file ({type(exc).__name__})") from None
    if not isinstance(blob, dict) or blob.get("format") != MODEL_FORMAT:
        raise ModelError(f"{p} is not an eqchem model file (format {blob.get('format') if isinstance(blob, dict) else '?'})")
    layout = BasisLayout.from_dict(blob["layout"])
    stored = torch.float64 if blob.get("dtype") == "float64" else torch.float32
    from ..model.e3nn_setup import quick_build

    with quick_build(einsum_search=not quick):  # less start-up, same network (see eqchem/model/e3nn_setup.py)
        net = build_model(layout, ModelConfig.from_dict(blob["model_config"]), blob["avg_neighbors"], dtype or stored)
    try:
        load_portable_state_dict(net, blob["state_dict"])
    except RuntimeError:
        raise ModelError(f"{p} was written by an incompatible eqchem version "
                         f"({blob.get('eqchem_version', '?')}); retrain or use a matching eqchem") from None
    meta = dict(blob.get("metadata", {}))
    meta.setdefault("eqchem_version", blob.get("eqchem_version"))
    if meta.get("core_j_density_fits"):  # the core-j baseline's atomic fits, as its training guesses used them
        from ..dft.atomic_density import use_density_fits

        use_density_fits(layout.basis, meta["core_j_density_fits"])
    return EqchemModel(net, meta, p, _stored_change_of_basis(blob, layout, p))


def _stored_change_of_basis(blob: dict, layout: BasisLayout, path: Path):
    """The model file's ``{l: M_l}`` (None in files written before eqchem stored it: computed with PySCF)."""
    from .. import keys
    from ..basis import change_of_basis_from_json, change_of_basis_table

    text = blob.get(keys.AO_CHANGE_OF_BASIS)
    if not text:
        return None
    try:
        return change_of_basis_table(layout.slot_ls, change_of_basis_from_json(text))
    except (ValueError, TypeError, KeyError) as exc:
        raise ModelError(f"{path}: unreadable AO change of basis ({exc})") from None
    except ImportError:
        raise ModelError(f"{path}: its AO change of basis lacks some shells and PySCF is not installed") from None
