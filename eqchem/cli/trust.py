"""What ``eqchem predict`` says of a prediction's trust: out-of-domain reasons and the ``--check``'s verdict."""
from __future__ import annotations


def trust_lines(r) -> list[str]:
    """The notes a prediction's estimates give: why it is out of domain, and the check's verdict."""
    u = r.uncertainty
    if u is None:
        return []
    out = [f"[yellow]out of domain:[/] {r.name}: {why}" for why in u.reasons]
    score = f"check score {u.check_score_ev:.2f} eV with the gap's ±{u.gap_ev:.2f}" if u.flagged else ""
    if u.flagged and u.check_by == "partner":
        out.append(f"[red]flagged:[/] {r.name}: the check's partner model puts the gap {u.check_partner_gap_diff_ev:+.2f}"
                   f" eV from this one ({score}): its frontier orbitals are likely wrong; run the SCF (--refine)")
    elif u.flagged:
        said = (f"puts the gap's error at {u.check_gap_error_ev:+.2f} eV (predicted − SCF; "
                if u.check_gap_error_ev is not None else
                f"leaves the HOMO and LUMO off F's eigenvectors by {u.check_homo_residual_ev:.2f} and "
                f"{u.check_lumo_residual_ev:.2f} eV and moves the gap by {u.check_gap_first_order_ev:+.2f} eV to first "
                f"order (residual {u.residual_uEh:.0f} µEh; ")
        out.append(f"[red]flagged:[/] {r.name}: one Fock build from the predicted density {said}{score}): its frontier "
                   "orbitals are likely wrong; run the SCF (--refine)")
    return out
