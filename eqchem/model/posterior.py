"""How far a molecule's readout features lie from the training molecules': the leverage of the linear readouts.

The network's last layers are linear readouts (:class:`~eqchem.model.layers.TypedLinear`) solved by ridge
regression on fixed features φ. For such a readout the Bayesian linear model gives each output the
predictive variance σ² (1 + h) with the leverage h = φᵀ (ΦᵀΦ + λ I)⁻¹ φ (Φ: the training features): small
for features like those it was solved on, growing as they leave them (an atom with more or fewer neighbours
than any training atom, a stretched bond). :class:`GramAccumulator` sums ΦᵀΦ per irrep type of a readout;
:class:`ReadoutPosterior` keeps the whitening factors of both readouts (on-site and atom-pair) and gives
the leverage of every atom and atom pair of a molecule. Leverages are dimensionless. What the model file stores
(``uncertainty.posterior``, float32) is the whitening factor W = L⁻¹ of each regularized Gram A = L Lᵀ (Cholesky):
h = ‖W φ‖², a sum of squares (no cancellation in float32), one matrix product per irrep type.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .layers import TypedLinear

RIDGE = 1e-6
"""Relative ridge λ of the inverse Grams (times the mean diagonal of each Gram): keeps directions no
training feature spans finite without hiding them (their leverage stays ~1/λ larger)."""


class GramAccumulator:
    """ΦᵀΦ of one readout's input features, per irrep type: Σ over samples and the 2l+1 components."""

    def __init__(self, readout: TypedLinear):
        self.readout = readout
        self.grams = [torch.zeros(u + 1, u + 1, dtype=torch.float64) for _, u, _, _ in readout.types]
        self.samples = 0

    @torch.no_grad()
    def add(self, x: torch.Tensor) -> None:
        """Add the readout inputs ``x`` (S, irreps_in.dim) of S samples (atoms or atom pairs)."""
        for t in range(len(self.grams)):
            f = self.readout.design_features(x, t)
            self.grams[t] += torch.einsum("sam,sbm->ab", f, f).cpu()
        self.samples += int(x.shape[0])

    def whitening(self, ridge: float = RIDGE) -> list[torch.Tensor]:
        """W = L⁻¹ with L Lᵀ = ΦᵀΦ + λ·mean(diag)·I, per type, float64 (lower triangular): φᵀA⁻¹φ = ‖Wφ‖²."""
        out = []
        for g in self.grams:
            scale = torch.diagonal(g).mean().clamp_min(1e-12)
            eye = torch.eye(len(g), dtype=g.dtype)
            chol = torch.linalg.cholesky(g + ridge * scale * eye)
            out.append(torch.linalg.solve_triangular(chol, eye, upper=False))
        return out


@torch.no_grad()
def leverage(readout: TypedLinear, whitening: list[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """Leverage of every sample: φᵀ A⁻¹ φ = ‖W φ‖² summed over each type's 2l+1 components and averaged over
    the readout's outputs (every output copy of a type shares its features), (S,) float64; computed in the
    precision of ``whitening``."""
    total = torch.zeros(x.shape[0], dtype=torch.float64, device=x.device)
    weight = 0
    for t, (ir, _, v, _) in enumerate(readout.types):
        g = readout.apply_to_design(whitening[t].to(device=x.device), x, t)  # (S, m, U+1): W φ
        total += v * (g * g).sum(dim=(1, 2)).double()
        weight += v * ir.dim
    return total / weight


@dataclass(frozen=True)
class ReadoutPosterior:
    """Whitening factors (W = L⁻¹ of the regularized Gram, float32) of the on-site (``diag``) and atom-pair
    (``offd``) readouts, per irrep type, and the training molecules their Grams were summed over."""

    diag: tuple
    offd: tuple
    n_molecules: int
    ridge: float = RIDGE

    @classmethod
    def from_accumulators(cls, diag: GramAccumulator, offd: GramAccumulator, n_molecules: int,
                          ridge: float = RIDGE) -> "ReadoutPosterior":
        return cls(tuple(w.float() for w in diag.whitening(ridge)), tuple(w.float() for w in offd.whitening(ridge)),
                   int(n_molecules), float(ridge))

    def leverages(self, net, features: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """Leverage of every atom (N,) and atom pair (E,) from :meth:`HamiltonianModel.head_features`."""
        return (leverage(net.diag_readout, list(self.diag), features["diag"]),
                leverage(net.pair_head.readout, list(self.offd), features["offd"]))

    def to_dict(self) -> dict:
        """What the model file stores (float32 tensors)."""
        return {"whitening_diag": [a.float() for a in self.diag], "whitening_offd": [a.float() for a in self.offd],
                "n_molecules": self.n_molecules, "ridge": self.ridge}

    @classmethod
    def from_dict(cls, d: dict) -> "ReadoutPosterior":
        return cls(tuple(torch.as_tensor(a).float() for a in d["whitening_diag"]),
                   tuple(torch.as_tensor(a).float() for a in d["whitening_offd"]),
                   int(d["n_molecules"]), float(d.get("ridge", RIDGE)))
