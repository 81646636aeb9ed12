"""Prediction as one pipeline of named, timed stages: structures in, Kohn–Sham matrices and orbitals out.

Stages, in order (:data:`STAGES`):

``structures``
    reading and checking the structures (elements the model covers, basis, charge/spin coverage), the
    pair lists of the network (:func:`eqchem.model.graph.local_pairs`) and the batched input arrays.
``network``
    the torch forward pass, ``batch_size`` molecules per call, and its blocks back to NumPy (float64).
``blocks``
    one molecule's network blocks -> (nao, nao) matrix (``model.converter.to_matrix``); a Δ-model's pair
    switch (:func:`eqchem.inference.correction.pair_switch`) first.
``baseline``
    Δ-models only: the guess Hamiltonian (:func:`eqchem.dft.guess.guess_and_overlap`) plus the filtered
    correction (:func:`eqchem.inference.correction.filter_correction`).
``fock_step``
    the model's optional damped Fock step (:func:`eqchem.dft.fock_step.fock_step`).
``result``
    :class:`~eqchem.inference.result.OrbitalResult`: overlap, diagonalisation and properties.

Every stage's wall time (``time.perf_counter``, seconds) accumulates in a :class:`StageTimings`; a stage
that does not apply (``baseline`` of a model without one, ``fock_step`` without a step) records 0 s.
PySCF and torch are imported only when a stage runs.

Example::

    run = PredictionPipeline(model).run("mols.xyz")
    run.results          # [OrbitalResult, ...]
    run.timings.seconds  # {"structures": 0.01, "network": 0.2, ..., "result": 0.05}  (s)
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterator, Sequence

import numpy as np

if TYPE_CHECKING:
    from ..io.structure import Structure
    from ..dft.molecule_integrals import MoleculeIntegrals
    from .integrals_ahead import IntegralsAhead
    from .model_file import EqchemModel
    from .result import OrbitalResult

STAGES = ("structures", "network", "blocks", "baseline", "fock_step", "result")
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
class PredictionRun:
    """What :meth:`PredictionPipeline.run` returns: the results in input order and the stage timings."""

    results: list["OrbitalResult"]
    timings: StageTimings


@dataclass
class _Batch:
    """The network input of up to ``batch_size`` molecules (atoms of all molecules concatenated)."""

    numbers: list[np.ndarray]   # per molecule (n,) int64
    positions: list[np.ndarray]  # per molecule (n, 3) float64, Å
    pairs: list[np.ndarray]     # per molecule (2, E) int64, atom indices offset into the batch
    batch: np.ndarray           # (N,) molecule index of every atom


class PredictionPipeline:
    """The one owner of prediction with a loaded :class:`~eqchem.inference.model_file.EqchemModel`.

    ``batch_size`` molecules per network call on ``device``; ``fock_step=False`` skips the model's damped
    Fock step. ``timings`` (default: a new :class:`StageTimings`) accumulates the stage wall times; the
    model's config is read on every call, so edits of ``model.net.config`` take effect at once.
    ``workers`` > 1: runs of more than one batch on the CPU go, batch by batch, to up to ``workers``
    helper processes that load the model from its file (:mod:`eqchem.inference.parallel`; the same
    results, one thread per process). ``integrals_ahead``: PySCF integrals of some structures computed
    by a helper while this process started (:mod:`eqchem.inference.integrals_ahead`), taken where they fit.
    """

    def __init__(self, model: "EqchemModel", batch_size: int = 16, device: str = "cpu", fock_step: bool = True,
                 timings: StageTimings | None = None, workers: int = 1,
                 integrals_ahead: "IntegralsAhead | None" = None):
        self.model = model
        self.batch_size = batch_size
        self.device = device
        self.fock_step = fock_step
        self.timings = timings if timings is not None else StageTimings()
        self.workers = max(1, int(workers))
        self.integrals_ahead = integrals_ahead
        self._moles: dict[tuple, object] | None = None  # during results(): the baseline stage's Moles, for reuse

    # -- whole runs --------------------------------------------------------------------------
    def run(self, source, extrapolate: bool = False) -> PredictionRun:
        """Anything :func:`eqchem.inference.predict.as_structures` reads -> every result and the timings.

        Refuses (ModelError, BasisError, ...) before any prediction when a structure cannot be predicted;
        ``extrapolate`` allows charges and spins outside the model's training data.
        """
        from .predict import as_structures

        with self.timings.stage("structures"):
            structures = as_structures(source)
        found = self.check(structures, extrapolate)
        return PredictionRun(list(self.predictions(structures, found)), self.timings)

    def check(self, structures: Sequence["Structure"], extrapolate: bool = False) -> list[list[str]]:
        """Timed :func:`~eqchem.inference.predict.check_structures`: each structure's extrapolation warnings."""
        from .predict import check_structures

        with self.timings.stage("structures"):
            return check_structures(self.model, structures, extrapolate)

    def predictions(self, structures: Sequence["Structure"], found: Sequence[list[str]]) -> Iterator["OrbitalResult"]:
        """Results one structure at a time, ``batch_size`` per network call (``found``: their warnings)."""
        from .parallel import helper_processes

        if helper_processes(len(structures), self.batch_size, self.workers, self.device, self.model.path):
            from .parallel import parallel_predictions

            yield from parallel_predictions(self, structures, found, self.workers)
            return
        for start in range(0, len(structures), self.batch_size):
            yield from self.results(structures[start:start + self.batch_size], found[start:start + self.batch_size])

    def results(self, structures: Sequence["Structure"], found: Sequence[list[str]]) -> list["OrbitalResult"]:
        """One :class:`OrbitalResult` per structure (already checked; ``found``: their warnings).

        ``result.seconds``: the batch's matrix time shared out per structure plus its own ``result`` stage.
        """
        t0 = time.perf_counter()
        self._moles = {}
        try:
            mats = self.matrices([(s.numbers, s.positions) for s in structures],
                                 charges=[s.charge for s in structures], spins=[int(s.spin or 0) for s in structures])
            t_net = (time.perf_counter() - t0) / max(1, len(structures))
            out = []
            for s, m, warned in zip(structures, mats, found):
                t1 = time.perf_counter()
                with self.timings.stage("result"):
                    res = self._result(s, m)
                res.warnings = list(warned)
                res.seconds = t_net + time.perf_counter() - t1
                out.append(res)
        finally:
            self._moles = None
        return out

    # -- matrices ----------------------------------------------------------------------------
    def matrices(self, molecules: Sequence[tuple[np.ndarray, np.ndarray]], charges: Sequence[int] | None = None,
                 spins: Sequence[int] | None = None) -> list[np.ndarray]:
        """(numbers (n,), positions (n, 3) Å) pairs -> (nao, nao) float64 matrices in PySCF AO order.

        ``charges`` (default neutral) and ``spins`` (2S, default 0) set the electron count of a Δ-model's
        guess and the occupations of the Fock step. Stages ``structures`` to ``fock_step``.
        """
        with self.timings.stage("network"):
            net = self.model.net.to(self.device)
            dtype = next(net.parameters()).dtype
        out: list[np.ndarray] = []
        for start in range(0, len(molecules), self.batch_size):
            with self.timings.stage("structures"):
                batch = self._batch(molecules[start:start + self.batch_size], self._pair_cutoff())
            with self.timings.stage("network"):
                diag, offd = self._network(net, batch, dtype)
            a0 = e0 = 0
            for z, r, p in zip(batch.numbers, batch.positions, batch.pairs):
                n, e = len(z), p.shape[1]
                charge = int(charges[len(out)]) if charges is not None else 0
                spin = int(spins[len(out)]) if spins is not None else 0
                with self.timings.stage("blocks"):
                    m = self._blocks(z, r, diag[a0:a0 + n], offd[e0:e0 + e], p - a0)
                out.append(self._finish(z, r, m, charge, spin))
                a0 += n
                e0 += e
            self.timings.molecules += len(batch.numbers)
        return out

    def _pair_cutoff(self) -> float:
        """Distance (Å) within which the network predicts atom-pair blocks: the model's pair cutoff, or the
        shorter ``correction_pair_cutoff`` of a Δ-model, beyond which :meth:`_blocks` would zero them anyway."""
        cfg = self.model.net.config
        if cfg.baseline != "none" and cfg.correction_pair_cutoff > 0:
            return min(cfg.pair_cutoff, cfg.correction_pair_cutoff)
        return cfg.pair_cutoff

    def _batch(self, chunk: Sequence[tuple[np.ndarray, np.ndarray]], pair_cutoff: float) -> _Batch:
        """Stage ``structures``: check the elements and build the pair lists of one network call."""
        from ..model.graph import local_pairs

        numbers, pos, batch, pairs = [], [], [], []
        offset = 0
        for b, (z, r) in enumerate(chunk):
            z = np.asarray(z, dtype=np.int64)
            r = np.asarray(r, dtype=np.float64)
            self.model.check_covers(z)
            p = local_pairs(r, pair_cutoff)
            numbers.append(z)
            pos.append(r)
            batch.append(np.full(len(z), b))
            pairs.append(p + offset)
            offset += len(z)
        return _Batch(numbers, pos, pairs, np.concatenate(batch))

    def _network(self, net, batch: _Batch, dtype) -> tuple[np.ndarray, np.ndarray]:
        """Stage ``network``: on-site blocks (N, P, P) and pair blocks (E, P, P), float64 NumPy."""
        import torch

        device = self.device
        with torch.no_grad():
            res = net(torch.from_numpy(np.concatenate(batch.numbers)).to(device),
                      torch.from_numpy(np.concatenate(batch.positions)).to(device=device, dtype=dtype),
                      torch.from_numpy(batch.batch).to(device),
                      torch.from_numpy(np.concatenate(batch.pairs, axis=1)).to(device))
            return res["diag"].double().cpu().numpy(), res["offd"].double().cpu().numpy()

    def _blocks(self, z: np.ndarray, r: np.ndarray, diag: np.ndarray, pair_blocks: np.ndarray,
                pairs: np.ndarray) -> np.ndarray:
        """Stage ``blocks``: one molecule's blocks (n, P, P), (E, P, P) on ``pairs`` (2, E) -> (nao, nao);
        a Δ-model's atom-pair corrections fade out towards ``correction_pair_cutoff`` (Å)."""
        cfg = self.model.net.config
        if cfg.baseline != "none" and cfg.correction_pair_cutoff > 0:
            from .correction import pair_switch

            dist = np.linalg.norm(r[pairs[1]] - r[pairs[0]], axis=1)
            pair_blocks = pair_blocks * pair_switch(dist, cfg.correction_pair_cutoff)[:, None, None]
        return self.model.converter.to_matrix(diag, pair_blocks, z, pairs)

    def _finish(self, z: np.ndarray, r: np.ndarray, m: np.ndarray, charge: int, spin: int) -> np.ndarray:
        """Stages ``baseline`` and ``fock_step`` of one molecule's (nao, nao) network matrix ``m`` (Eh)."""
        cfg = self.model.net.config
        step = self.fock_step and self.model.fock_mixing > 0
        if cfg.baseline == "none" and not step:
            return m
        n_electrons = int(z.sum()) - charge
        frame = overlap = None
        if cfg.baseline != "none":
            with self.timings.stage("baseline"):
                m, frame, overlap = self._add_baseline(z, r, m, n_electrons)
        if step:
            with self.timings.stage("fock_step"):
                m = self._fock_step(z, r, m, n_electrons, spin, frame, overlap)
        return m

    def _add_baseline(self, z: np.ndarray, r: np.ndarray, correction: np.ndarray, n_electrons: int):
        """Stage ``baseline``: guess + filtered correction (nao, nao), the principal-axes frame (shared with
        the Fock step) and the overlap (nao, nao)."""
        from ..dft.frame import canonical_mole
        from ..dft.guess import ANALYTIC_BASELINES, analytic_guess, guess_and_overlap
        from ..model.config import FOCK_BUILD_BASELINES
        from .correction import filter_correction

        model, cfg = self.model, self.model.net.config
        step = self.fock_step and model.fock_mixing > 0
        # one principal-axes Mole for the guess and the Fock step; analytic guesses alone need none
        needs_frame = cfg.baseline in FOCK_BUILD_BASELINES or step
        ahead = self._integrals_ahead(z, r, n_electrons)
        if ahead is not None and ahead.guess is not None:  # the helper built the guess: a frame for the step only
            guess, overlap = ahead.guess, ahead.overlap
            frame = canonical_mole(z, r, model.basis) if step else None
        elif cfg.baseline in ANALYTIC_BASELINES and not needs_frame:  # the input's own Mole, kept for the result
            from ..dft.runner import build_mole
            from ..io.structure import Structure

            frame = None
            mol = build_mole(Structure(z, r), model.basis, spin=int(z.sum()) % 2)
            if self._moles is not None:
                self._moles[_geometry(z, r)] = mol
            guess = analytic_guess(mol, model.basis, cfg.baseline, n_electrons, model.baseline_params)
            overlap = mol.intor_symmetric("int1e_ovlp")
        else:
            frame = canonical_mole(z, r, model.basis) if needs_frame else None
            guess, overlap = guess_and_overlap(z, r, model.basis, model.xc, cfg.baseline, frame, n_electrons,
                                               model.baseline_params)
        return guess + filter_correction(correction, overlap, cfg.correction_overlap_cutoff), frame, overlap

    def _fock_step(self, z: np.ndarray, r: np.ndarray, m: np.ndarray, n_electrons: int, spin: int, frame,
                   overlap: np.ndarray | None) -> np.ndarray:
        """Stage ``fock_step``: H + mixing (F[P(H)] - H), (nao, nao) Eh; builds the frame and overlap when no
        baseline stage did."""
        from ..dft.fock_step import fock_step as damped_fock_step

        model = self.model
        if frame is None:
            from ..dft.frame import canonical_mole
            from ..dft.guess import guess_and_overlap

            frame = canonical_mole(z, r, model.basis)
            overlap = guess_and_overlap(z, r, model.basis, model.xc, model.net.config.baseline, frame,
                                        n_electrons, model.baseline_params)[1]
        return damped_fock_step(z, r, m, overlap, n_electrons, model.basis, model.xc, model.fock_mixing, frame, spin)

    def _integrals_ahead(self, z: np.ndarray, r: np.ndarray, n_electrons: int) -> "MoleculeIntegrals | None":
        """The helper's integrals of this molecule, if one computed them."""
        if self.integrals_ahead is None:
            return None
        return self.integrals_ahead.integrals(z, r, n_electrons)

    # -- results -----------------------------------------------------------------------------
    def _result(self, s: "Structure", m: np.ndarray) -> "OrbitalResult":
        """Stage ``result``: the predicted matrix ``m`` (nao, nao) of ``s`` -> its OrbitalResult (a density-
        matrix model's prediction becomes its Kohn–Sham matrix first)."""
        from ..dft.runner import build_mole
        from ..errors import ModelError
        from .result import from_matrix

        model = self.model
        settings = {k: model.metadata.get(k) for k in ("grids_level", "conv_tol")}
        name = model.metadata.get("name") or (model.path.name if model.path else "model")
        spin = int(s.spin or 0)
        ahead = None
        if model.target == "hamiltonian":
            ahead = self._integrals_ahead(s.numbers, s.positions, s.n_electrons)
        if ahead is not None:  # overlap, dipole integrals and AO offsets from the helper; the Mole on demand
            return from_matrix(s.name, s.numbers, s.positions, m, ahead.overlap, model.basis, model.xc, s.charge,
                               name, settings, spin=spin, integrals=ahead)
        mol = self._moles.pop(_geometry(s.numbers, s.positions), None) if self._moles is not None else None
        if mol is None:
            mol = build_mole(s, model.basis, spin=spin)
        else:  # the baseline stage's: the same atoms and basis; this structure's charge and spin
            mol.charge, mol.spin = int(s.charge), spin
        s_ao = mol.intor_symmetric("int1e_ovlp")
        if model.target == "density_matrix":
            from ..dft.runner import DFTSettings, make_scf

            if spin:
                raise ModelError(f"{s.label}: density-matrix models predict closed shells only (spin 0)")
            mf = make_scf(mol, DFTSettings(xc=model.xc, basis=model.basis,
                                           grid_level=int(settings["grids_level"] or 3)))
            m = np.asarray(mf.get_fock(dm=m))
        return from_matrix(s.name, s.numbers, s.positions, m, s_ao, model.basis, model.xc, s.charge, name,
                           settings, mole=mol, spin=spin)


def _geometry(numbers: np.ndarray, positions: np.ndarray) -> tuple:
    """A structure's atoms and positions as a dictionary key."""
    return np.asarray(numbers, dtype=np.int64).tobytes(), np.asarray(positions, dtype=np.float64).tobytes()
