"""Prediction of one batch of checked structures, as named, timed stages in one direction.

The road of ``eqchem.predict(path)``: :mod:`~eqchem.inference.inputs` (anything -> Structures) ->
:mod:`~eqchem.inference.checks` (elements, basis, charge/spin coverage: refusals and warnings, all
before any work) -> :mod:`~eqchem.inference.predict` (batches, in this process or in helper processes,
:mod:`~eqchem.inference.parallel`) -> this pipeline, whose stages run in order for each batch:
``structures`` (pair lists, batched arrays) -> ``network`` (torch forward pass, blocks back to float64)
-> ``blocks`` (each molecule's (nao, nao) matrix; a Δ-model's pair switch) -> ``baseline`` (Δ-models:
guess + filtered correction) -> ``fock_step`` (the damped Fock step, if the model takes one) ->
``result`` (:class:`~eqchem.inference.result.OrbitalResult`: diagonalisation and properties) ->
``uncertainty`` (calibrated error estimates where the model file has them, from the readouts' leverages the
``network`` stage computed: :mod:`~eqchem.inference.uncertainty`) -> ``check`` (``check=True`` only: the
model file's check partner, a second shipped model, predicts the molecule where it covers it; else one cheap
Fock build from the predicted density, or the Fock step's own; and the flag it gives) and ``check_response`` (the
Coulomb potential of the density change that build causes, no grid: :func:`~eqchem.dft.fock_step.coulomb_response`).
Each molecule's PySCF objects (Mole, frame, overlap, guess) live in one
:class:`~eqchem.dft.molecule.MoleculeContext` that the stages share, built on first use and seeded by
integrals computed ahead (:mod:`~eqchem.inference.integrals_ahead`); no stage calls back up the road.

Every stage's wall time (``time.perf_counter``, seconds) accumulates in a :class:`StageTimings`; a stage
that does not apply records 0 s. PySCF and torch are imported only when a stage runs.
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Iterator, Sequence

import numpy as np

from ..dft.molecule import MoleculeContext
from .checks import covers

if TYPE_CHECKING:
    from ..io.structure import Structure
    from .uncertainty import Uncertainty
    from .integrals_ahead import IntegralsAhead
    from .model_file import EqchemModel
    from .result import OrbitalResult

STAGES = ("structures", "network", "blocks", "baseline", "fock_step", "result", "uncertainty", "check",
          "check_response")
"""The pipeline's stages in the order they run."""


def _zero_seconds() -> dict[str, float]:
    return dict.fromkeys(STAGES, 0.0)


@dataclass
class StageTimings:
    """Wall time per stage (seconds, summed over every molecule and batch) and the molecules predicted.

    One object may be handed to several runs (``eqchem.predict(..., timings=t)``, ``evaluate``): it keeps
    adding up.
    """

    seconds: dict[str, float] = field(default_factory=_zero_seconds)
    molecules: int = 0

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Add the wall time of the ``with`` body to stage ``name`` (one of :data:`STAGES`)."""
        if name not in self.seconds:
            raise KeyError(f"unknown prediction stage '{name}' ({', '.join(STAGES)})")
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] += time.perf_counter() - t0

    def add(self, other: "StageTimings") -> None:
        """Add another run's seconds and molecules (a helper process's)."""
        for k, v in other.seconds.items():
            self.seconds[k] += v
        self.molecules += other.molecules

    @property
    def total(self) -> float:
        """Seconds in all stages together."""
        return float(sum(self.seconds.values()))

    def per_molecule(self) -> dict[str, float]:
        """Seconds per molecule of every stage (0 before any molecule)."""
        n = max(1, self.molecules)
        return {k: v / n for k, v in self.seconds.items()}

    def as_dict(self) -> dict:
        """JSON-able: ``{"seconds": {stage: s}, "total_s", "molecules", "per_molecule_s": {stage: s}}``."""
        return {"seconds": dict(self.seconds), "total_s": self.total, "molecules": self.molecules,
                "per_molecule_s": self.per_molecule()}


@dataclass
class Predicted:
    """One molecule's predicted matrix and what its error estimates need."""

    matrix: np.ndarray                  # (nao, nao) Eh, after the baseline and the Fock step
    network_matrix: np.ndarray          # (nao, nao) Eh, before the Fock step (the same array without one)
    fock: np.ndarray | None             # F[P(network_matrix)] where the Fock step built it
    atom_leverage: np.ndarray | None    # (n,) readout leverage of each atom (None: the model has no posterior)
    pair_leverage: np.ndarray | None    # (E,) of each listed atom pair
    pairs: np.ndarray                   # (2, E) atom indices of the pairs within the molecule


@dataclass
class _Batch:
    """The network input of up to ``batch_size`` molecules (atoms of all molecules concatenated)."""

    numbers: list[np.ndarray]   # per molecule (n,) int64
    positions: list[np.ndarray]  # per molecule (n, 3) float64, Å
    pairs: list[np.ndarray]     # per molecule (2, E) int64, atom indices offset into the batch
    batch: np.ndarray           # (N,) molecule index of every atom


class PredictionPipeline:
    """The stages of prediction with a loaded :class:`~eqchem.inference.model_file.EqchemModel`.

    ``batch_size`` molecules per network call on ``device``; ``fock_step=False`` skips the model's damped
    Fock step; the model's :class:`~eqchem.model.settings.PredictionSettings` say how the rest runs.
    ``baseline_stage=False`` skips a Δ-model's baseline stage: its correction as the network gives it.
    ``timings`` (default: a new :class:`StageTimings`) accumulates the stage wall times.
    ``integrals_ahead``: PySCF integrals of some structures computed by a helper while this process
    started (:mod:`eqchem.inference.integrals_ahead`), taken where they fit.
    ``check``: the check of every prediction, in ``result.uncertainty``: the check partner's gap beside this
    one's where the model file names a partner that covers the molecule, else one cheap Fock build (where the
    model takes no Fock step). ``check_both``: the Fock build's shifts as well where the partner runs (for
    calibrations and benches that compare the two).
    """

    def __init__(self, model: "EqchemModel", batch_size: int = 16, device: str = "cpu", fock_step: bool = True,
                 timings: StageTimings | None = None, integrals_ahead: "IntegralsAhead | None" = None,
                 baseline_stage: bool = True, check: bool = False, check_both: bool = False):
        self.model = model
        self.check = check
        self.check_both = check_both
        self._partner: PredictionPipeline | None = None
        self.baseline_stage = baseline_stage
        self.batch_size = batch_size
        self.device = device
        self.fock_step = fock_step
        self.timings = timings if timings is not None else StageTimings()
        self.integrals_ahead = integrals_ahead

    # -- entry points --------------------------------------------------------------------------
    def results(self, structures: Sequence["Structure"], found: Sequence[list[str]]) -> list["OrbitalResult"]:
        """One :class:`OrbitalResult` per structure, already checked (``found``: their warnings).

        ``result.seconds``: the batch's matrix time shared out per structure plus its own ``result`` stage.
        """
        t0 = time.perf_counter()
        molecules = [self._molecule(s.numbers, s.positions, s.charge, int(s.spin or 0)) for s in structures]
        predicted = self._predict(molecules)
        t_net = (time.perf_counter() - t0) / max(1, len(structures))
        out = []
        for s, molecule, pred, warned in zip(structures, molecules, predicted, found):
            t1 = time.perf_counter()
            with self.timings.stage("result"):
                res = self._result(s, molecule, pred.matrix)
            res.uncertainty = self._uncertainty(molecule, pred, res.orbital_coefficients, res.nocc)
            res.warnings = list(warned)
            res.seconds = t_net + time.perf_counter() - t1
            out.append(res)
        return out

    def matrices(self, molecules: Sequence[tuple[np.ndarray, np.ndarray]], charges: Sequence[int] | None = None,
                 spins: Sequence[int] | None = None) -> list[np.ndarray]:
        """(numbers (n,), positions (n, 3) Å) pairs -> (nao, nao) float64 matrices in PySCF AO order.

        ``charges`` (default neutral) and ``spins`` (2S, default 0) set the electron count of a Δ-model's
        guess and the occupations of the Fock step. Stages ``structures`` to ``fock_step``.
        """
        return [p.matrix for p in self._predict(self._contexts(molecules, charges, spins))]

    def estimates(self, molecules: Sequence[tuple[np.ndarray, np.ndarray]], charges: Sequence[int] | None = None
                  ) -> list[tuple[np.ndarray, "Uncertainty | None"]]:
        """:meth:`matrices` with each one's error estimates (None where the model file has none; the check too
        where the pipeline was made with ``check=True``): for evaluations against reference data."""
        from ..orbitals import occupations, solve_generalized

        contexts = self._contexts(molecules, charges, None)
        out = []
        for molecule, pred in zip(contexts, self._predict(contexts)):
            unc = None
            if self.model.uncertainty is not None:
                _, c = solve_generalized(pred.matrix, molecule.overlap)
                nocc = int(np.count_nonzero(occupations(c.shape[1], molecule.n_electrons, molecule.spin)))
                unc = self._uncertainty(molecule, pred, c, nocc)
            out.append((pred.matrix, unc))
        return out

    def _contexts(self, molecules, charges, spins) -> list[MoleculeContext]:
        return [self._molecule(z, r, int(charges[i]) if charges is not None else 0,
                               int(spins[i]) if spins is not None else 0)
                for i, (z, r) in enumerate(molecules)]

    # -- stages --------------------------------------------------------------------------------
    def _molecule(self, numbers, positions, charge: int, spin: int) -> MoleculeContext:
        """The molecule's context, seeded with the helper's integrals of it where it computed them."""
        numbers = np.asarray(numbers, dtype=np.int64)
        positions = np.asarray(positions, dtype=np.float64)
        seed = None
        if self.integrals_ahead is not None:
            seed = self.integrals_ahead.integrals(numbers, positions, int(numbers.sum()) - int(charge))
        return MoleculeContext(numbers, positions, self.model.basis, charge, spin, seed)

    def _predict(self, molecules: Sequence[MoleculeContext]) -> list[Predicted]:
        with self.timings.stage("network"):
            net = self.model.net.to(self.device)
            dtype = next(net.parameters()).dtype
        out: list[Predicted] = []
        for start in range(0, len(molecules), self.batch_size):
            chunk = molecules[start:start + self.batch_size]
            with self.timings.stage("structures"):
                batch = self._batch([(m.numbers, m.positions) for m in chunk], self.pair_cutoff)
            with self.timings.stage("network"):
                diag, offd, features = self._network(net, batch, dtype)
            with self.timings.stage("uncertainty"):
                atom_lev, pair_lev = self._leverages(net, features)
            a0 = e0 = 0
            for molecule, p in zip(chunk, batch.pairs):
                n, e = len(molecule.numbers), p.shape[1]
                with self.timings.stage("blocks"):
                    m = self._blocks(molecule.numbers, molecule.positions, diag[a0:a0 + n], offd[e0:e0 + e], p - a0)
                matrix, network_matrix, fock = self._finish(molecule, m)
                out.append(Predicted(matrix, network_matrix, fock,
                                     None if atom_lev is None else atom_lev[a0:a0 + n],
                                     None if pair_lev is None else pair_lev[e0:e0 + e], p - a0))
                a0 += n
                e0 += e
            self.timings.molecules += len(chunk)
        return out

    @property
    def pair_cutoff(self) -> float:
        """Distance (Å) within which the network predicts atom-pair blocks: the model's pair cutoff, or the
        shorter ``correction_pair_cutoff`` of a Δ-model, beyond which :meth:`_blocks` would zero them anyway."""
        cutoff, switch = self.model.config.pair_cutoff, self.model.settings.correction_pair_cutoff
        if self.model.baseline.is_delta and switch > 0:
            return min(cutoff, switch)
        return cutoff

    def _batch(self, chunk: Sequence[tuple[np.ndarray, np.ndarray]], pair_cutoff: float) -> _Batch:
        """Stage ``structures``: check the elements and build the pair lists of one network call."""
        from ..model.graph import local_pairs

        numbers, pos, batch, pairs = [], [], [], []
        offset = 0
        for b, (z, r) in enumerate(chunk):
            self.model.check_covers(z)
            p = local_pairs(r, pair_cutoff)
            numbers.append(z)
            pos.append(r)
            batch.append(np.full(len(z), b))
            pairs.append(p + offset)
            offset += len(z)
        return _Batch(numbers, pos, pairs, np.concatenate(batch))

    def _network(self, net, batch: _Batch, dtype) -> tuple[np.ndarray, np.ndarray, dict]:
        """Stage ``network``: on-site blocks (N, P, P) and pair blocks (E, P, P), float64 NumPy, and the
        readouts' input features (:meth:`HamiltonianModel.head_features`)."""
        import torch

        device = self.device
        with torch.no_grad():
            features = net.head_features(torch.from_numpy(np.concatenate(batch.numbers)).to(device),
                                         torch.from_numpy(np.concatenate(batch.positions)).to(device=device, dtype=dtype),
                                         torch.from_numpy(batch.batch).to(device),
                                         torch.from_numpy(np.concatenate(batch.pairs, axis=1)).to(device))
            res = net.readout_blocks(features)
            return res["diag"].double().cpu().numpy(), res["offd"].double().cpu().numpy(), features

    def _leverages(self, net, features: dict) -> tuple[np.ndarray | None, np.ndarray | None]:
        """Stage ``uncertainty`` (its first part): the readout leverage of every atom (N,) and pair (E,) of a
        batch where the model file has a posterior (else None, None)."""
        if self.model.uncertainty is None:
            return None, None
        a, p = self.model.uncertainty.posterior.leverages(net, features)
        return a.cpu().numpy(), p.cpu().numpy()

    def _blocks(self, z: np.ndarray, r: np.ndarray, diag: np.ndarray, pair_blocks: np.ndarray,
                pairs: np.ndarray) -> np.ndarray:
        """Stage ``blocks``: one molecule's blocks (n, P, P), (E, P, P) on ``pairs`` (2, E) -> (nao, nao);
        a Δ-model's atom-pair corrections fade out towards ``correction_pair_cutoff`` (Å)."""
        switch = self.model.settings.correction_pair_cutoff
        if self.model.baseline.is_delta and switch > 0:
            from .correction import pair_switch

            dist = np.linalg.norm(r[pairs[1]] - r[pairs[0]], axis=1)
            pair_blocks = pair_blocks * pair_switch(dist, switch)[:, None, None]
        return self.model.converter.to_matrix(diag, pair_blocks, z, pairs)

    def _finish(self, molecule: MoleculeContext, m: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Stages ``baseline`` and ``fock_step`` of one molecule's (nao, nao) network matrix ``m`` (Eh): the final
        matrix, the matrix before the Fock step, and the Fock step's F[P] (None without one)."""
        model = self.model
        if model.baseline.is_delta and self.baseline_stage:
            with self.timings.stage("baseline"):
                from .correction import filter_correction

                guess = molecule.guess(model.baseline.name, model.xc, model.baseline_params)
                m = guess + filter_correction(m, molecule.overlap, model.settings.correction_overlap_cutoff)
        if self.fock_step and model.fock_mixing > 0:
            with self.timings.stage("fock_step"):
                fock = self._fock(molecule, m)
                return m + model.fock_mixing * (fock - m), m, fock
        return m, m, None

    def _fock(self, molecule: MoleculeContext, m: np.ndarray) -> np.ndarray:
        """F[P(m)]: one cheap Fock build from the aufbau density of ``m`` (:mod:`eqchem.dft.fock_step`)."""
        from ..dft.fock_step import fock_of_prediction

        return fock_of_prediction(molecule.numbers, molecule.positions, m, molecule.overlap, molecule.n_electrons,
                                  self.model.basis, self.model.xc, molecule.frame, molecule.spin)

    def _coulomb_response(self, molecule: MoleculeContext, m: np.ndarray, fock: np.ndarray) -> np.ndarray:
        """J[P(F) − P(m)] of the check (:func:`eqchem.dft.fock_step.coulomb_response`; no grid, ~1 % of a build)."""
        from ..dft.fock_step import coulomb_response

        return coulomb_response(molecule.numbers, molecule.positions, m, fock, molecule.overlap, molecule.n_electrons,
                                self.model.basis, self.model.xc, molecule.frame, molecule.spin)

    def _uncertainty(self, molecule: MoleculeContext, pred: Predicted, coefficients: np.ndarray,
                     nocc: int) -> "Uncertainty | None":
        """Stages ``uncertainty`` and ``check`` of one prediction (None: the model file has no estimates)."""
        unc_model = self.model.uncertainty
        if unc_model is None or pred.atom_leverage is None:
            return None
        from .consistency_check import partner_check, self_check
        from .uncertainty import domain_verdict, estimate, raw_statistics

        t0 = time.perf_counter()
        with self.timings.stage("uncertainty"):
            cal, card = unc_model.calibration, self.model.card
            raw = raw_statistics(pred.atom_leverage, pred.pair_leverage, pred.pairs, coefficients, molecule.overlap,
                                 molecule.ao_offsets, nocc)
            ranges = (card.atoms_range or cal.atoms_range, card.heavy_atoms_range or cal.heavy_atoms_range)
            where = domain_verdict(molecule.numbers, molecule.positions, cal, *ranges)
            unc = estimate(replace(raw, size_excess=where.size_excess, geometry_excess=where.geometry_excess), cal,
                           where.reasons)
        if self.check:
            with self.timings.stage("check"):
                partner = self._partner_for(molecule)
            if partner is None or self.check_both:
                with self.timings.stage("check"):  # the Fock step's F[P] where it ran (checks the network's matrix)
                    net_m = pred.network_matrix
                    fock = pred.fock if pred.fock is not None else self._fock(molecule, net_m)
                with self.timings.stage("check_response"):
                    coulomb = self._coulomb_response(molecule, net_m, fock)
                with self.timings.stage("check"):
                    unc = self_check(unc, fock, net_m, molecule.overlap, nocc, cal, coulomb=coulomb,
                                     reported=pred.matrix)
            if partner is not None:
                with self.timings.stage("check"):
                    unc = partner_check(unc, partner.gap_ev(molecule, nocc), _gap_ev(pred.matrix, molecule, nocc), cal)
        return replace(unc, seconds=time.perf_counter() - t0)

    def _partner_for(self, molecule: MoleculeContext) -> "PredictionPipeline | None":
        """The pipeline of the model file's check partner (loaded once; its whole prediction, Fock step
        included), None where the file names none or the partner does not cover this molecule (its elements,
        charge, spin or basis)."""
        if not self.model.uncertainty.calibration.check_partner:
            return None
        if self._partner is None:
            self._partner = PredictionPipeline(self.model.load_check_partner(), batch_size=1, device=self.device)
        covered = covers(self._partner.model, molecule.numbers, molecule.charge, molecule.spin, self.model.basis)
        return self._partner if covered else None

    def gap_ev(self, molecule: MoleculeContext, nocc: int) -> float:
        """This pipeline's predicted HOMO-LUMO gap (eV) of ``molecule`` (another pipeline's context: its own
        is built here, as the two models' guesses differ) with ``nocc`` occupied orbitals."""
        own = self._molecule(molecule.numbers, molecule.positions, molecule.charge, molecule.spin)
        return _gap_ev(self._predict([own])[0].matrix, own, nocc)

    def _result(self, s: "Structure", molecule: MoleculeContext, m: np.ndarray) -> "OrbitalResult":
        """Stage ``result``: the predicted matrix ``m`` (nao, nao) of ``s`` -> its OrbitalResult (a density-
        matrix model's prediction becomes its Kohn–Sham matrix first)."""
        from .result import from_matrix

        model = self.model
        settings = {"grids_level": model.card.grids_level, "conv_tol": model.card.conv_tol}
        if model.target == "density_matrix":
            from ..dft.runner import kohn_sham_of_density

            m = kohn_sham_of_density(molecule.mole, m, model.xc, int(settings["grids_level"] or 3), s.label)
        return from_matrix(s.name, s.numbers, s.positions, m, molecule.overlap, model.basis, model.xc, s.charge,
                           model.name, settings, spin=molecule.spin, molecule=molecule)


def _gap_ev(matrix: np.ndarray, molecule: MoleculeContext, nocc: int) -> float:
    """HOMO-LUMO gap (eV) of ``matrix`` (nao, nao) Eh in ``molecule``'s AOs with ``nocc`` occupied orbitals."""
    from ..orbitals import frontier, solve_generalized
    from ..units import HARTREE_EV

    return float(frontier(solve_generalized(matrix, molecule.overlap)[0], nocc)[2] * HARTREE_EV)
