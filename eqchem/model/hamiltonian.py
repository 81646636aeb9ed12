"""The E(3)-equivariant Hamiltonian network: geometry -> atom (diagonal) and atom-pair (off-diagonal) blocks."""
from __future__ import annotations

import contextlib

import torch
from .e3nn_setup import import_e3nn

import_e3nn()  # before e3nn's first import: no torch._dynamo (see e3nn_setup)
from e3nn import o3  # noqa: E402
from torch import nn

from ..basis import BasisLayout
from .blocks import BlockAssembler
from .config import ModelConfig
from .graph import pairs_within, reverse_index
from .layers import Interaction, PairTensorProduct, TypedLinear, irreps_from_muls
from .radial import RadialEmbedding


class HamiltonianModel(nn.Module):
    """Predicts padded orbital blocks (e3nn basis) of the Kohn–Sham matrix (or density matrix).

    Inputs (a batch of molecules, atoms of one molecule contiguous):
        numbers (N,) atomic numbers; pos (N, 3) Å; batch (N,) molecule index;
        pair_index (2, E) ordered pairs i != j of the same molecule (default: all within pair_cutoff).
    Outputs dict:
        ``diag`` (N, P, P) and ``offd`` (E, P, P) blocks, symmetric by construction
        (``diag[i] = diag[i].T``, ``offd[(i,j)] = offd[(j,i)].T``), and ``pair_index``.
    Equivariance: for an orthogonal R, blocks of ``pos @ R.T`` equal ``D B Dᵀ`` with D the padded
    block-diagonal e3nn Wigner matrices of the slots; atom permutations permute blocks.
    """

    READOUT_PREFIXES = ("diag_readout.", "pair_head.readout.")
    """Names of the parameters that :meth:`refit_readouts` solves."""

    def __init__(self, layout: BasisLayout, config: ModelConfig, avg_neighbors: float = 8.0):
        super().__init__()
        self.layout = layout
        self.config = config
        elements = list(layout.elements)
        table = torch.full((119,), -1, dtype=torch.long)
        table[elements] = torch.arange(len(elements))
        self.register_buffer("species_of_z", table)

        self.irreps = irreps_from_muls(_extend(config.hidden, layout.max_l))
        self.irreps_sh = o3.Irreps.spherical_harmonics(config.lmax_sh)
        self.irreps_pair_sh = o3.Irreps.spherical_harmonics(max(config.lmax_sh, layout.max_l))
        pair_irreps = irreps_from_muls(_extend(config.pair_channels, layout.max_l))
        self.assembler = BlockAssembler(layout)
        out_irreps = self.assembler.irreps_out
        n0 = self.irreps.count((0, 1))

        self.embedding = nn.Embedding(len(elements), n0)
        n_pair = config.pair_num_basis or 2 * config.num_basis
        self.radial = RadialEmbedding(config.cutoff, config.num_basis, config.radial)
        self.pair_radial = RadialEmbedding(config.pair_cutoff, n_pair, config.radial)
        self.layers = nn.ModuleList(
            Interaction(self.irreps, self.irreps_sh, config.num_basis, config.radial_hidden, avg_neighbors)
            for _ in range(config.num_layers)
        )
        # what the heads see: one-hot element + atom features
        n_el = len(elements)
        self.head_irreps = (o3.Irreps(f"{n_el}x0e") + self.irreps).simplify()
        # diagonal head: self tensor product of a reduced copy of the atom's features, then a readout
        # (exactly fittable) of [that product, the features themselves]
        diag_hidden = o3.Irreps([(config.diag_channels, ir) for _, ir in out_irreps]).simplify()
        self.diag_reduce = o3.Linear(self.head_irreps, pair_irreps)
        self.diag_tp = o3.FullyConnectedTensorProduct(pair_irreps, pair_irreps, diag_hidden)
        self.diag_readout = TypedLinear(diag_hidden + self.head_irreps, out_irreps)
        # off-diagonal head
        self.pair_head = PairTensorProduct(self.head_irreps, pair_irreps, self.irreps_pair_sh, out_irreps,
                                           n_pair, config.radial_hidden)
        # output statistics in irreps space (set from training data): scale per irrep copy, per-element
        # mean of the invariant (0e) part of diagonal blocks
        dim = out_irreps.dim
        self.register_buffer("diag_scale", torch.ones(dim))
        self.register_buffer("offd_scale", torch.ones(dim))
        self.register_buffer("diag_shift", torch.zeros(len(elements), dim))

    # ------------------------------------------------------------------------------------------
    def species(self, numbers: torch.Tensor) -> torch.Tensor:
        s = self.species_of_z[numbers]
        if (s < 0).any():
            bad = sorted(set(numbers[s < 0].tolist()))
            raise ValueError(f"elements {bad} are not covered by this model")
        return s

    def node_features(self, numbers, pos, batch) -> torch.Tensor:
        """Atom features (N, irreps.dim) after message passing."""
        species = self.species(numbers)
        x0 = self.embedding(species)
        x = torch.zeros(len(numbers), self.irreps.dim, dtype=pos.dtype, device=pos.device)
        x[:, : x0.shape[1]] = x0  # irreps are sorted: the 0e channels come first
        edges = pairs_within(pos, batch, self.config.cutoff)
        dst, src = edges
        vec = pos[src] - pos[dst]
        sh = o3.spherical_harmonics(self.irreps_sh, vec, normalize=True, normalization="component")
        radial = self.radial(vec.norm(dim=1))
        for layer in self.layers:
            x = layer(x, torch.stack([src, dst]), sh, radial)
        return x

    def head_features(self, numbers: torch.Tensor, pos: torch.Tensor, batch: torch.Tensor | None = None,
                      pair_index: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Inputs of the two readouts: ``diag`` (N, ·), ``offd`` (E, ·), plus ``species``, ``pair_index``."""
        if batch is None:
            batch = torch.zeros_like(numbers)
        if pair_index is None:
            pair_index = pairs_within(pos, batch, self.config.pair_cutoff)
        species = self.species(numbers)
        x = self.node_features(numbers, pos, batch)
        onehot = torch.nn.functional.one_hot(species, len(self.layout.elements)).to(x.dtype)
        x = torch.cat([onehot, x], dim=1)  # scalars first: matches head_irreps
        a = self.diag_reduce(x)
        i, j = pair_index
        vec = pos[j] - pos[i]
        sh = o3.spherical_harmonics(self.irreps_pair_sh, vec, normalize=True, normalization="component")
        offd = self.pair_head.features(x[i], x[j], sh, self.pair_radial(vec.norm(dim=1)))
        return {"diag": torch.cat([self.diag_tp(a, a), x], dim=1), "offd": offd, "species": species,
                "pair_index": pair_index}

    def forward(self, numbers: torch.Tensor, pos: torch.Tensor, batch: torch.Tensor | None = None,
                pair_index: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        return self.readout_blocks(self.head_features(numbers, pos, batch, pair_index))

    def readout_blocks(self, f: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The readouts of :meth:`head_features`: on-site blocks ``diag`` (N, P, P) and pair blocks ``offd``
        (E, P, P) in the padded e3nn basis, and the ``pair_index`` (2, E) they belong to."""
        d_irreps = self.diag_readout(f["diag"]) * self.diag_scale + self.diag_shift[f["species"]]
        diag = self.assembler(d_irreps)
        diag = 0.5 * (diag + diag.transpose(-1, -2))
        offd = self.assembler(self.pair_head.readout(f["offd"]) * self.offd_scale)
        rev = reverse_index(f["pair_index"], len(f["species"]))
        offd = 0.5 * (offd + offd[rev].transpose(-1, -2))
        return {"diag": diag, "offd": offd, "pair_index": f["pair_index"]}

    @torch.no_grad()
    def refit_readouts(self, batches, ridge: float = 1e-8) -> None:
        """Solve both readouts exactly (ridge least squares) for the current features on ``batches``.

        ``batches`` yields dicts with numbers, pos, batch, pair_index and target blocks/masks
        (``diag``, ``offd``, ``diag_mask``, ``offd_mask``) in the padded e3nn basis, as collated for
        training. Components of padded (absent) shells are left out of the fit.
        """
        acc_d = self.diag_readout.normal_equations()
        acc_o = self.pair_head.readout.normal_equations()
        w_abs = self.assembler.w.abs()
        for b in batches:
            f = self.head_features(b["numbers"], b["pos"], b["batch"], b["pair_index"])
            for part, readout, acc in (("diag", self.diag_readout, acc_d), ("offd", self.pair_head.readout, acc_o)):
                target = self.assembler.decompose(b[part].to(self.diag_scale.dtype))
                if part == "diag":
                    target = (target - self.diag_shift[f["species"]]) / self.diag_scale
                else:
                    target = target / self.offd_scale
                bad = (~b[f"{part}_mask"]).reshape(len(target), -1).to(w_abs.dtype) @ w_abs
                readout.accumulate(acc, f[part], target, bad < 1e-12)
        self.diag_readout.solve(acc_d, ridge)
        self.pair_head.readout.solve(acc_o, ridge)

    @torch.no_grad()
    def set_output_statistics(self, diag_blocks: torch.Tensor, diag_species: torch.Tensor,
                              offd_blocks: torch.Tensor) -> None:
        """Set scales and shifts from target blocks (padded e3nn basis): (N, P, P), (N,), (E, P, P).

        Scales are RMS values per irrep copy (shared by its 2L+1 components, so equivariance holds);
        shifts are per-element means of the invariant (0e) components of diagonal blocks.
        """
        irreps = self.assembler.irreps_out
        d = self.assembler.decompose(diag_blocks.to(self.diag_scale.dtype))
        o = self.assembler.decompose(offd_blocks.to(self.diag_scale.dtype))
        scalar = torch.zeros(irreps.dim, dtype=torch.bool)
        for sl, (mul, ir) in zip(irreps.slices(), irreps):
            if ir.l == 0 and ir.p == 1:
                scalar[sl] = True
        shift = torch.zeros_like(self.diag_shift)
        for s in range(shift.shape[0]):
            sel = diag_species == s
            if sel.any():
                shift[s] = torch.where(scalar, d[sel].mean(0), torch.zeros(()))
        resid = d - shift[diag_species]
        self.diag_shift.copy_(shift)
        self.diag_scale.copy_(_rms_per_irrep(resid, irreps))
        if len(o):
            self.offd_scale.copy_(_rms_per_irrep(o, irreps))


@contextlib.contextmanager
def default_dtype(dtype: torch.dtype):
    """Build modules under this default dtype: e3nn's Clebsch–Gordan constants and the block map are
    created in it, so float64 models are exact to float64 round-off (``.double()`` of a float32
    model keeps float32-accurate constants)."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(old)


def build_model(layout: BasisLayout, config: ModelConfig, avg_neighbors: float = 8.0,
                dtype: torch.dtype = torch.float32) -> "HamiltonianModel":
    """A HamiltonianModel whose parameters and constants are all in ``dtype``."""
    with default_dtype(dtype):
        return HamiltonianModel(layout, config, avg_neighbors=avg_neighbors).to(dtype)


def portable_state_dict(net: nn.Module) -> dict:
    """State dict without e3nn's code-generation constants (rebuilt on construction; absent after
    ``copy.deepcopy``), so weights move between instances and versions of the same architecture."""
    return {k: v for k, v in net.state_dict().items() if "_compiled_main" not in k}


def load_portable_state_dict(net: nn.Module, state: dict) -> None:
    """Load a :func:`portable_state_dict`; every non-constant parameter and buffer must be present. Buffers
    the network rebuilds on construction (non-persistent; older files stored some) are ignored."""
    rebuilt = set(dict(net.named_buffers())) - set(net.state_dict())
    result = net.load_state_dict({k: v for k, v in state.items() if k not in rebuilt}, strict=False)
    missing = [k for k in result.missing_keys if "_compiled_main" not in k]
    unexpected = [k for k in result.unexpected_keys if "_compiled_main" not in k]
    if missing or unexpected:
        raise RuntimeError(f"state dict mismatch: missing {missing[:5]}, unexpected {unexpected[:5]}")


def _extend(muls: str, lmax: int) -> str:
    """Multiplicities "m0,m1,..." extended (repeating the last) so they reach l = lmax."""
    m = [x.strip() for x in muls.split(",") if x.strip()]
    while len(m) < lmax + 1:
        m.append(m[-1])
    return ",".join(m)


def _rms_per_irrep(x: torch.Tensor, irreps: o3.Irreps, floor: float = 1e-6) -> torch.Tensor:
    """(dim,) RMS over samples and the 2L+1 components of each irrep copy of x (S, dim)."""
    out = torch.ones(irreps.dim, dtype=x.dtype)
    start = 0
    for mul, ir in irreps:
        for _ in range(mul):
            sl = slice(start, start + ir.dim)
            out[sl] = x[:, sl].pow(2).mean().sqrt().clamp_min(floor)
            start += ir.dim
    return out
