"""Equivariant building blocks: irreps helpers, the NequIP-style interaction layer, gated nonlinearity."""
from __future__ import annotations

import torch
from .e3nn_setup import import_e3nn

import_e3nn()  # before e3nn's first import: no torch._dynamo (see e3nn_setup)
from e3nn import nn as enn  # noqa: E402
from e3nn import o3  # noqa: E402
from torch import nn


def irreps_from_muls(muls: str | list[int], both_parities: bool = True) -> o3.Irreps:
    """``"32,16,8"`` -> ``32x0e + 16x1o + 16x1e + 8x2e + 8x2o`` (both parities for l > 0)."""
    if isinstance(muls, str):
        muls = [int(m) for m in muls.split(",") if m.strip()]
    out = []
    for l, m in enumerate(muls):
        if m <= 0:
            continue
        if l == 0:
            out.append((m, (0, 1)))
        else:
            out.append((m, (l, (-1) ** l)))
            if both_parities:
                out.append((m, (l, -((-1) ** l))))
    return o3.Irreps(out).sort().irreps.simplify()


def edge_tensor_product(irreps_in: o3.Irreps, irreps_sh: o3.Irreps, targets: o3.Irreps) -> o3.TensorProduct:
    """Channel-wise ("uvu") tensor product of features with spherical harmonics, keeping only output
    irreps present in ``targets``; weights are given per edge (``weight_numel`` of them)."""
    wanted = {ir for _, ir in targets}
    mid, instructions = [], []
    for i, (mul, ir_in) in enumerate(irreps_in):
        for j, (_, ir_sh) in enumerate(irreps_sh):
            for ir_out in ir_in * ir_sh:
                if ir_out in wanted:
                    instructions.append((i, j, len(mid), "uvu", True))
                    mid.append((mul, ir_out))
    return o3.TensorProduct(irreps_in, irreps_sh, o3.Irreps(mid), instructions,
                            shared_weights=False, internal_weights=False)


class Interaction(nn.Module):
    """One message-passing layer: x_i <- x_i + Gate(Linear(Σ_j TP(Linear(x_j), Y(r̂_ij); R(|r_ij|)))).

    Shapes: node features (N, irreps.dim), edge SH (E, irreps_sh.dim), edge radial (E, num_basis).
    """

    def __init__(self, irreps: o3.Irreps, irreps_sh: o3.Irreps, num_basis: int, radial_hidden: int,
                 avg_neighbors: float):
        super().__init__()
        self.irreps = irreps
        self.avg_neighbors = avg_neighbors
        self.lin_in = o3.Linear(irreps, irreps)
        self.tp = edge_tensor_product(irreps, irreps_sh, irreps)
        irreps_mid = self.tp.irreps_out
        self.radial = enn.FullyConnectedNet([num_basis, radial_hidden, radial_hidden, self.tp.weight_numel],
                                            torch.nn.functional.silu)
        scalars = o3.Irreps([(m, ir) for m, ir in irreps if ir.l == 0])
        gated = o3.Irreps([(m, ir) for m, ir in irreps if ir.l > 0])
        gates = o3.Irreps([(m, (0, 1)) for m, _ in gated])
        self.gate = enn.Gate(scalars, [torch.nn.functional.silu] * len(scalars),
                             gates, [torch.sigmoid] * len(gates), gated)
        self.lin_out = o3.Linear(irreps_mid, self.gate.irreps_in)
        self.self_connection = o3.Linear(irreps, irreps)

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor, edge_sh: torch.Tensor,
                edge_radial: torch.Tensor) -> torch.Tensor:
        src, dst = edge_index
        msg = self.tp(self.lin_in(x)[src], edge_sh, self.radial(edge_radial))
        agg = torch.zeros(x.shape[0], msg.shape[1], dtype=x.dtype, device=x.device)
        agg.index_add_(0, dst, msg)
        agg = agg / self.avg_neighbors ** 0.5
        return self.self_connection(x) + self.gate(self.lin_out(agg))


class PairTensorProduct(nn.Module):
    """Features of an ordered atom pair (i, j) from both atoms, the pair direction and the distance.

    ``y_ij = Readout(TP([A x_i, B x_j], Y(r̂_ij); w_ij))`` with per-pair weights
    ``w_ij = MLP(R(|r_ij|), s_i, s_j)`` (s: invariant features of the atoms); the readout is a
    :class:`TypedLinear`.
    Shapes: x_i, x_j (E, irreps.dim); sh (E, irreps_sh.dim); radial (E, num_basis) -> (E, irreps_out.dim).
    """

    def __init__(self, irreps: o3.Irreps, pair_irreps: o3.Irreps, irreps_sh: o3.Irreps, irreps_out: o3.Irreps,
                 num_basis: int, radial_hidden: int):
        super().__init__()
        self.lin_a = o3.Linear(irreps, pair_irreps)
        self.lin_b = o3.Linear(irreps, pair_irreps)
        both = (pair_irreps + pair_irreps).sort().irreps.simplify()
        self.n_scalar = irreps.count((0, 1))
        self.both = both
        self.tp = edge_tensor_product(both, irreps_sh, irreps_out)
        self.weights = enn.FullyConnectedNet([num_basis + 2 * self.n_scalar, radial_hidden, radial_hidden,
                                              self.tp.weight_numel], torch.nn.functional.silu)
        self.readout = TypedLinear(self.tp.irreps_out, irreps_out)
        self._perm = _concat_permutation(pair_irreps, both)

    def features(self, x_i, x_j, sh, radial) -> torch.Tensor:
        """Pair features before the (exactly fittable) readout, (E, tp.irreps_out.dim)."""
        a, b = self.lin_a(x_i), self.lin_b(x_j)
        ab = torch.cat([a, b], dim=1)[:, self._perm]
        w = self.weights(torch.cat([radial, x_i[:, : self.n_scalar], x_j[:, : self.n_scalar]], dim=1))
        return self.tp(ab, sh, w)

    def forward(self, x_i, x_j, sh, radial):
        return self.readout(self.features(x_i, x_j, sh, radial))


def _concat_permutation(irreps: o3.Irreps, both: o3.Irreps) -> torch.Tensor:
    """Index taking ``cat([a, b])`` (each of ``irreps``) to the sorted, simplified ``both`` layout."""
    slices = irreps.slices()
    order = []
    for _, ir in both:
        for k, (mul, ir2) in enumerate(irreps):
            if ir2 == ir:
                order.extend(range(slices[k].start, slices[k].stop))
                order.extend(range(irreps.dim + slices[k].start, irreps.dim + slices[k].stop))
    return torch.tensor(order, dtype=torch.long)



class TypedLinear(nn.Module):
    """Equivariant linear map with one explicit (U_T, V_T) weight matrix per irrep type T.

    Same function class as ``o3.Linear``, but the weights are laid out so that the layer can be fitted
    *exactly* by (masked) ridge regression on fixed input features (:meth:`fit`): the final readouts of
    the Hamiltonian heads are solved, not just descended, which removes the ill-conditioning that makes
    gradient descent slow to resolve small geometric differences.
    Shapes: (..., irreps_in.dim) -> (..., irreps_out.dim); scalars (0e) outputs get a bias.
    """

    def __init__(self, irreps_in: o3.Irreps, irreps_out: o3.Irreps):
        super().__init__()
        self.irreps_in, self.irreps_out = o3.Irreps(irreps_in), o3.Irreps(irreps_out)
        self.types = []  # (irrep, U inputs, V outputs, has bias) per output irrep type
        for t, ir in enumerate(sorted({ir for _, ir in self.irreps_out})):
            idx_in = _type_indices(self.irreps_in, ir)
            idx_out = _type_indices(self.irreps_out, ir)
            u, v = idx_in.shape[0], idx_out.shape[0]
            self.register_buffer(f"in_{t}", idx_in.reshape(-1))
            self.register_buffer(f"out_{t}", idx_out.reshape(-1))
            has_bias = ir.l == 0 and ir.p == 1
            self.types.append((ir, u, v, has_bias))
            if u > 0:  # only parameters that take part in the output (DDP requires it)
                self.register_parameter(f"weight_{t}", nn.Parameter(torch.randn(u, v) / u ** 0.5))
            if has_bias:
                self.register_parameter(f"bias_{t}", nn.Parameter(torch.zeros(v)))
        order = torch.cat([getattr(self, f"out_{t}") for t in range(len(self.types))])
        inverse = torch.empty_like(order)
        inverse[order] = torch.arange(len(order))
        self.register_buffer("out_order", inverse, persistent=False)  # rebuilt from the irreps: not in files

    def type_features(self, x: torch.Tensor, t: int) -> torch.Tensor:
        ir, u = self.types[t][:2]
        return x[..., getattr(self, f"in_{t}")].reshape(*x.shape[:-1], u, ir.dim)

    def design_features(self, x: torch.Tensor, t: int) -> torch.Tensor:
        """Type ``t``'s features with the bias row of the exact fit: (S, U+1, 2l+1), float64 (the row is 1 for
        a type with a bias, 0 for the others)."""
        ir, has_bias = self.types[t][0], self.types[t][3]
        f = self.type_features(x, t).double()
        one = torch.ones(f.shape[0], 1, ir.dim, dtype=f.dtype, device=f.device)
        return torch.cat([f, one if has_bias else 0 * one], dim=1)

    def apply_to_design(self, matrix: torch.Tensor, x: torch.Tensor, t: int) -> torch.Tensor:
        """``matrix`` (K, U+1) applied to type ``t``'s design features (:meth:`design_features`, bias row
        included) of every sample and component: (S, 2l+1, K) in ``matrix``'s dtype, without building the
        float64 design matrix (the bias row is ``matrix``'s last column where the type has a bias)."""
        u, has_bias = self.types[t][1], self.types[t][3]
        out = self.type_features(x, t).transpose(1, 2).to(matrix.dtype) @ matrix[:, :u].T
        return out + matrix[:, u] if has_bias else out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # samples last: each type is one matrix product (V, U) @ (U, m · samples) instead of a batch of small ones
        lead = x.shape[:-1]
        xt = x.reshape(-1, x.shape[-1]).T
        n = xt.shape[1]
        parts = []
        for t, (ir, u, v, has_bias) in enumerate(self.types):
            if u > 0:
                y = getattr(self, f"weight_{t}").T @ xt[getattr(self, f"in_{t}")].reshape(u, ir.dim * n)
            else:
                y = xt.new_zeros(v, ir.dim * n)
            if has_bias:
                y = y + getattr(self, f"bias_{t}")[:, None]
            parts.append(y.reshape(v * ir.dim, n))
        return torch.cat(parts, 0)[self.out_order].T.reshape(*lead, self.irreps_out.dim)

    # -- exact fitting -------------------------------------------------------------------------
    def normal_equations(self) -> list:
        """Zeroed accumulators: per type, Gram (V, U+1, U+1) and cross terms (V, U+1)."""
        dev = getattr(self, "in_0").device
        return [[torch.zeros(v, u + 1, u + 1, dtype=torch.float64, device=dev),
                 torch.zeros(v, u + 1, dtype=torch.float64, device=dev)] for ir, u, v, _ in self.types]

    @torch.no_grad()
    def accumulate(self, acc: list, x: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> None:
        """Add samples: features x (S, in.dim), wanted outputs (S, out.dim), valid-output mask (S, out.dim).

        The Gram matrices Σ_s w_sv f_s f_sᵀ are summed once per distinct mask row (a handful: one per kind
        of atom pair, as absent shells are what is masked) and shared by the outputs v, instead of once per
        output: the same sums, about V times fewer operations."""
        for t, (ir, u, v, has_bias) in enumerate(self.types):
            f = self.design_features(x, t)                                          # (S, U+1, m)
            idx = getattr(self, f"out_{t}")
            y = target[:, idx].reshape(-1, v, ir.dim).double()                     # (S, V, m)
            w = mask[:, idx].reshape(-1, v, ir.dim)[..., 0].double()                # (S, V)
            patterns, which = torch.unique(w, dim=0, return_inverse=True)           # (P, V), (S,)
            for p, row in enumerate(patterns):
                if row.any():
                    fp = f[which == p]
                    acc[t][0] += row[:, None, None] * torch.einsum("sam,sbm->ab", fp, fp)
            acc[t][1] += torch.einsum("sv,sam,svm->va", w, f, y)

    @torch.no_grad()
    def solve(self, acc: list, ridge: float = 1e-8) -> None:
        """Set weights (and biases) to the ridge-regression solution of the accumulated equations."""
        for t, (ir, u, v, has_bias) in enumerate(self.types):
            g, c = acc[t]
            if self.distributed():
                torch.distributed.all_reduce(g)
                torch.distributed.all_reduce(c)
            n = g.shape[-1]
            scale = torch.diagonal(g, dim1=-2, dim2=-1).mean(-1).clamp_min(1e-12)   # (V,)
            reg = g + (ridge * scale)[:, None, None] * torch.eye(n, dtype=g.dtype, device=g.device)
            sol = torch.linalg.solve(reg, c.unsqueeze(-1)).squeeze(-1)               # (V, U+1)
            if u > 0:
                w = getattr(self, f"weight_{t}")
                w.copy_(sol[:, :u].T.to(w.dtype))
            if has_bias:
                b = getattr(self, f"bias_{t}")
                b.copy_(sol[:, u].to(b.dtype))

    @staticmethod
    def distributed() -> bool:
        return torch.distributed.is_available() and torch.distributed.is_initialized()


def _type_indices(irreps: o3.Irreps, ir: o3.Irrep) -> torch.Tensor:
    """(U, 2l+1) feature indices of every copy of ``ir`` in ``irreps`` (in order)."""
    rows = []
    for sl, (mul, ir2) in zip(irreps.slices(), irreps):
        if ir2 == ir:
            for k in range(mul):
                start = sl.start + k * ir.dim
                rows.append(list(range(start, start + ir.dim)))
    return torch.tensor(rows, dtype=torch.long).reshape(len(rows), ir.dim)
