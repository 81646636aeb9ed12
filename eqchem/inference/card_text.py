"""A loaded model described for people: the lines of ``eqchem info model.pt`` (units: one per quantity)."""
from __future__ import annotations

import math

from typing import TYPE_CHECKING

from ..dft.baselines import get_baseline
from ..io.elements import symbol
from ..model.calibration import RESIDUAL_OFFSET_EV
from ..units import HARTREE_EV, MICRO_HARTREE

if TYPE_CHECKING:
    from .model_file import EqchemModel


def describe(model: "EqchemModel") -> dict:
    """Label -> value of everything a model file says about itself."""
    c = model.card
    stages = c.training_stages or [c.to_dict()]  # a fine-tuned default lists its stages; else this one run
    return {
        "path": str(model.path) if model.path else "(in memory)",
        "target": model.target,
        "baseline": baseline_text(model.config.baseline, c.baseline_params),
        "mode": c.mode or "-",
        "PySCF Fock builds per prediction": model.fock_builds(),
        "Fock step after the network": (f"H + {model.fock_mixing:g} (F[P(H)] - H): one cheap Fock build"
                                        if model.fock_mixing > 0 else "none"),
        "prediction settings": ", ".join(f"{k}={v:g}" for k, v in model.settings.to_dict().items()),
        "level of theory": f"PySCF RKS {model.xc} / {model.basis} (grid {c.grids_level if c.grids_level is not None else '?'}, "
                           f"conv_tol {c.conv_tol if c.conv_tol is not None else '?'})",
        "label settings": "; ".join(_label_text(x) for x in c.label_settings) or "as the level of theory says",
        "functional (parsed)": c.xc_description or "not recorded",
        "functional note": functional_note(model.xc, c.xc_description),
        "coverage": coverage_line(model),
        "charge / spin coverage": model.coverage_text,
        "PySCF version of the data": c.pyscf_version or "?",
        "elements": " ".join(symbol(z) for z in model.elements),
        "atoms per training structure": c.atoms_range or "?",
        "training molecules / structures": f"{_or_unknown(c.n_train_molecules)} / {_or_unknown(c.n_train_structures)}",
        "validation structures": _or_unknown(c.n_val_structures),
        "parameters": sum(p.numel() for p in model.net.parameters()),
        "architecture": ", ".join(f"{k}={v}" for k, v in model.config.to_dict().items()),
        "training data hash": c.data_hash or "?",
        "trained with eqchem": c.eqchem_version or "?",
        "training runs / hours (wall clock)": f"{len(stages)} / "
                                              f"{sum(float(st.get('train_seconds') or 0) for st in stages) / 3600:.2f}",
        "trained on": hardware_text(c.train_hardware),
        "off-equilibrium geometries": "?" if c.off_equilibrium_geometries is None else c.off_equilibrium_geometries,
        "data recipe": c.data_recipe or "?",
        "peers": "; ".join(f"{k}: " + ", ".join(f"{a} {b}" for a, b in v.items()) for k, v in c.peers.items()) or "-",
        "notes": c.notes,
        "metrics": card_metrics(c.metrics),
        "test metrics by group": {g: {k: v for k, v in m.items() if k in GROUP_METRICS}
                                  for g, m in c.test_metrics_by_group.items()},
        "error estimates": uncertainty_text(model),
    }


def _fock_score_text(cal) -> str:
    """What the Fock build's score of a calibration takes (:meth:`~eqchem.model.calibration.UncertaintyCalibration.
    check_score`)."""
    if cal.check_signal == "response":
        return ("the check's estimate of the gap error: the predicted gap minus the gap where one Anderson step "
                f"between H and F would take the SCF (F's Coulomb response scaled by {cal.check_coulomb_scale:g}), "
                f"beyond {cal.check_center_ev:+.2f} eV")
    if cal.check_signal == "residuals":
        c0, c_sigma, c_homo, c_lumo, c_shift = cal.check_coefficients
        return ("the gap error estimated from one Fock build and σ_gap (fitted on the validation molecules: "
                f"{math.exp(c0):.2f} · σ_gap^{c_sigma:.2f} · r_HOMO^{c_homo:.2f} · r_LUMO^{c_lumo:.2f} · "
                f"(|d {-cal.check_center_ev:+.2f} eV| + {RESIDUAL_OFFSET_EV:g})^{c_shift:.2f} − {RESIDUAL_OFFSET_EV:g} eV; r: the frontier "
                "orbitals' residuals in F, d: its eigenvalue gap shift)")
    return ("one Fock build's gap shift " + ("to first order" if cal.check_signal == "first_order" else
                                            "of its eigenvalues")
            + f" beyond {cal.check_center_ev:+.2f} eV, with {cal.check_sigma_weight:g} σ_gap in quadrature")


def uncertainty_text(model: "EqchemModel") -> str:
    """Whether predictions carry error estimates, what calibrated them, and how they did on test molecules."""
    u = model.uncertainty
    if u is None:
        return "none (eqchem calibrate adds them)"
    cal = u.calibration
    text = (f"readout posterior of {u.posterior.n_molecules} training molecules, calibrated on {cal.n_molecules} "
            f"validation molecules; --check flags "
            + (f"a gap {cal.partner_threshold_ev:.2f} eV from the {cal.check_partner} model's (elsewhere "
               if cal.check_partner else "")
            + f"a score beyond {cal.check_threshold_ev:.2f} eV: " + _fock_score_text(cal)
            + (")" if cal.check_partner else ""))
    test = (model.card.uncertainty_metrics or {}).get("test", {}).get("all")
    if test:
        def pct(q):
            v = (test.get(q) or {}).get("coverage_1sigma")
            return f"{100 * v:.0f} %" if v is not None else "n/a"
        auc = next((v for k, v in (test.get("check") or {}).items() if k.startswith("auc")), None)
        rho = test.get("h_mae_spearman")
        text += (f"; on {test.get('n_molecules')} test molecules: H MAE rank correlation "
                 + (f"{rho:.2f}" if rho is not None else "n/a"))
        text += (f", 1σ coverage HOMO {pct('homo')}, LUMO {pct('lumo')}, gap {pct('gap')}"
                 + (f", check AUC {auc:.2f}" if auc is not None else ""))
    return text


GROUP_METRICS = ("n_molecules", "h_mae_uEh", "h_mae_diag_uEh", "h_mae_offd_uEh", "eps_occ_mae_uEh", "homo_mae_ev",
                 "lumo_mae_ev", "gap_mae_ev", "psi_cos_pct", "dipole_mae_debye")
"""What the card shows of each group's test metrics."""


def coverage_line(model: "EqchemModel") -> str:
    """What the model was trained on, in one line: its elements; the fewest–most heavy atoms and atoms of a
    training structure ("not recorded" where the card lacks them); its charges and spins."""
    c = model.card
    heavy = _span(c.heavy_atoms_range, 'heavy atom') if c.heavy_atoms_range else "heavy atoms not recorded"
    cal = model.uncertainty.calibration if model.uncertainty is not None else None
    if not c.heavy_atoms_range and cal is not None and cal.heavy_atoms_range:  # from the posterior's molecules
        heavy = (f"{_span(cal.heavy_atoms_range, 'heavy atom')} (the {model.uncertainty.posterior.n_molecules} "
                 f"training molecules in the calibration data)")
    sizes = [heavy,
             f"{_span(c.atoms_range, 'atom')} per training structure" if c.atoms_range else "atoms not recorded"]
    return f"{' '.join(symbol(z) for z in model.elements)}; {', '.join(sizes)}; {model.coverage_text}"


def _span(rng, noun: str) -> str:
    """[lo, hi] counts of ``noun`` as "lo–hi nouns" (one number where they agree)."""
    return f"{rng[0]} {noun}" + ("" if rng[1] == 1 else "s") if rng[0] == rng[1] else f"{rng[0]}–{rng[1]} {noun}s"


def _label_text(x: dict) -> str:
    """One training file's label settings in words."""
    how = x.get("label_preset") or "custom"
    fit = f", density fitting on {x['auxbasis']}" if x.get("density_fit") and x.get("auxbasis") else ""
    return f"{x.get('file', '?').rsplit('/', 1)[-1]}: {how} (grid {x.get('grids_level')}, conv_tol {x.get('conv_tol')}{fit})"


def _or_unknown(value) -> object:
    return "?" if value is None else value


def baseline_text(baseline: str, params: dict | None = None) -> str:
    """The card's line for a model's baseline (``params``: its fitted parts, if any)."""
    kind = get_baseline(baseline)
    if not kind.is_delta:
        return kind.summary
    how = ("one cheap PySCF Fock build" if kind.fock_builds else
           "analytic PySCF integrals, no DFT grid, no density fitting")
    text = f"{baseline}: a Δ-model; predictions add this guess Hamiltonian ({how})"
    fit = (params or {}).get("fit")
    if (params or {}).get("atomic_potentials"):
        elements = " ".join(symbol(int(z)) for z in sorted(params["atomic_potentials"], key=int))
        text += f"; effective atomic potentials of {elements} fitted"
        if fit:
            text += (f" on {fit['structures']} training structures (their guess MAE {fit['mae_before_uEh']:,.0f} "
                     f"µEh without them, {fit['mae_after_uEh']:,.0f} µEh with them)")
    return text


def card_metrics(metrics: dict) -> dict:
    """The metrics with one unit per quantity: H and orbital energies in µEh, HOMO/LUMO/gap in eV (training
    logs the gap loss in µEh; the card shows it in eV like the test metrics)."""
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
                "whose 'b3lyp' was B3LYP with VWN5 ('b3lyp5' today), so compare with QH9 only with that in mind "
                "(bench/b3lyp_vwn.py measures how far the two Fock matrices differ; "
                "eqchem generate --xc b3lyp5 gives QH9's functional)")
    if name == "b3lyp5":
        return "B3LYP with VWN5 (QH9's functional: PySCF 2.2.1's 'b3lyp')"
    return "-"


def hardware_text(hw) -> str:
    """The card's line for ``train_hardware``: a dict recorded by training, or a shipping script's text."""
    if isinstance(hw, dict):
        return (f"{hw.get('accelerator', '?')}, {hw.get('processes', '?')} process(es), "
                f"{hw.get('torch_threads', '?')} torch threads, {hw.get('cpu_cores', '?')} cores")
    return str(hw) if hw else "not recorded"
