"""Parallel, resumable dataset generation: structures -> PySCF DFT -> eqchem HDF5 file."""
from __future__ import annotations

import concurrent.futures as cf
import multiprocessing as mp
import os
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from .. import keys
from ..cpu import available_cores, spawn_environment
from ..data import store
from ..errors import EqchemError, InputError
from ..io.structure import Structure
from .runner import DFTSettings, run_dft



@dataclass
class GenerateReport:
    """What a generation run did."""

    total: int = 0            # structures in this shard
    skipped: int = 0          # already finished (or failed) before this run
    done: int = 0             # computed now and converged
    failed: int = 0           # computed now and recorded under /failures
    failures: dict = field(default_factory=dict)
    seconds: float = 0.0


def assign_keys(structures: Sequence[Structure]) -> list[str]:
    """Deterministic unique HDF5 keys from structure names (duplicates get ``_2``, ``_3``...)."""
    seen: dict[str, int] = {}
    out = []
    for s in structures:
        base = store.sanitize_key(s.info.get("key") or s.name or s.formula)
        n = seen.get(base, 0) + 1
        seen[base] = n
        out.append(base if n == 1 else f"{base}_{n}")
    return out


def parse_shard(shard: str | None) -> tuple[int, int]:
    """'i/n' (1-based) -> (i, n); None -> (1, 1)."""
    if not shard:
        return 1, 1
    try:
        i, n = (int(x) for x in shard.split("/"))
    except ValueError:
        raise InputError(f"--shard must look like i/n (e.g. 2/8), got '{shard}'") from None
    if not 1 <= i <= n:
        raise InputError(f"--shard {shard}: need 1 <= i <= n")
    return i, n


def _compute(key: str, structure: Structure, settings: DFTSettings, out: str) -> tuple[str, str, str, float]:
    """Worker: run one DFT and journal the outcome. Returns (key, status, reason, seconds)."""
    t0 = time.perf_counter()
    try:
        record = run_dft(structure, settings)
    except EqchemError as exc:
        reason = str(exc)
    except Exception as exc:  # noqa: BLE001 - PySCF rejects structures in many ways; record, go on
        reason = f"{type(exc).__name__}: {exc}".splitlines()[0]
        if os.environ.get("EQCHEM_DEBUG"):
            traceback.print_exc()
    else:
        attrs = record["attrs"]
        if attrs[keys.CONVERGED]:
            store.save_part(Path(out), key, record=record)
            return key, "done", "", time.perf_counter() - t0
        reason = f"SCF not converged in {attrs[keys.SCF_CYCLES]} cycles (max_cycles={settings.max_cycles})"
    store.save_part(Path(out), key, failure={keys.REASON: reason, keys.SOURCE: structure.source or structure.name})
    return key, "failed", reason, time.perf_counter() - t0


def _init_worker(threads: int) -> None:
    from pyscf import lib

    lib.num_threads(threads)


def generate(
    structures: Sequence[Structure],
    out: str | Path,
    settings: DFTSettings,
    workers: int = 1,
    shard: str | None = None,
    retry_failed: bool = False,
    threads: int | None = None,
    consolidate_every: float = 300.0,
    on_start: Callable[[int, int], None] | None = None,
    on_result: Callable[[str, str, str, float], None] | None = None,
) -> GenerateReport:
    """Compute every structure not yet in ``out`` and store it there (see :mod:`eqchem.data.store`).

    Args:
        structures: validated input structures (keys come from their names, in input order).
        out: HDF5 file to create or extend; must hold the same level of theory if it exists.
        settings: level of theory.
        workers: parallel processes; each gets ``cores // workers`` threads.
        shard: 'i/n' to take every n-th structure starting at the i-th (1-based).
        retry_failed: recompute structures recorded under /failures.
        threads: threads per worker (default: available cores // workers).
        consolidate_every: least seconds between absorbing the journal into ``out`` (it is absorbed once
            it holds a quarter of the data already stored, and at the end; see :class:`store.Appender`).
        on_start: called with (n_todo, n_skipped) before computing.
        on_result: called with (key, status, reason, seconds) after each structure.
    """
    from pyscf import __version__ as pyscf_version

    from .runner import check_basis_name, xc_description

    out = Path(out)
    t_start = time.perf_counter()
    for name in (settings.basis, settings.auxbasis):
        if name:
            check_basis_name(name)
    attrs = store.default_root_attrs(settings.to_attrs(), xc_description(settings.xc), pyscf_version)
    attrs.update(label_attrs(settings))
    if out.exists():
        try:
            existing = store.root_attrs(out)
        except OSError:
            raise EqchemError(f"{out} exists but is not a readable HDF5 file; move it away") from None
        store.check_compatible(existing, attrs, str(out))
    out.parent.mkdir(parents=True, exist_ok=True)
    _update_layout(out, structures, settings, attrs)
    store.consolidate(out, attrs)  # absorb what an interrupted run left in the journal

    i, n = parse_shard(shard)
    all_keys = assign_keys(structures)
    mine = [(k, s) for idx, (k, s) in enumerate(zip(all_keys, structures)) if idx % n == i - 1]
    existing = store.file_keys(out)
    todo = [(k, s) for k, s in mine
            if k not in existing or (retry_failed and existing[k] == keys.FAILURES)]
    report = GenerateReport(total=len(mine), skipped=len(mine) - len(todo))
    if on_start:
        on_start(len(todo), report.skipped)

    def record(result):
        key, status, reason, secs = result
        if status == "done":
            report.done += 1
        else:
            report.failed += 1
            report.failures[key] = reason
        if on_result:
            on_result(key, status, reason, secs)

    workers = max(1, min(workers, len(todo) or 1))
    threads = threads or max(1, available_cores() // workers)
    appender = store.Appender(out, attrs, consolidate_every=consolidate_every)
    try:
        if workers == 1:
            _init_worker(threads)
            for k, s in todo:
                record(_compute(k, s, settings, str(out)))
                appender.note()
        else:
            with cf.ProcessPoolExecutor(
                max_workers=workers, mp_context=mp.get_context("spawn"),
                initializer=_init_worker, initargs=(threads,),
            ) as pool:
                with spawn_environment(threads):  # the workers start as the structures are handed out
                    futures = [pool.submit(_compute, k, s, settings, str(out)) for k, s in todo]
                for fut in cf.as_completed(futures):
                    record(fut.result())
                    appender.note()
    finally:
        appender.close()
    report.seconds = time.perf_counter() - t_start
    return report


def label_attrs(settings: DFTSettings) -> dict:
    """Root attributes naming how the labels were computed beyond the level of theory: the auxiliary basis
    of density-fitted J/K (canonical name, ``""`` without) and the preset the settings equal (``""``: none)."""
    return {keys.AUXBASIS: settings.resolved_auxbasis(), keys.LABEL_PRESET: settings.label_preset()}


def _update_layout(out: Path, structures: Sequence[Structure], settings: DFTSettings, attrs: dict) -> None:
    """Record the AO shell layout of every element, and the PySCF<->e3nn change of basis of its l, in
    the root attrs (readers need no PySCF)."""
    import json

    from ..basis import element_shells
    from ..data.reader import BASIS_SHELLS_ATTR

    elements = sorted({int(z) for s in structures for z in s.numbers})
    shells, prev = {}, {}
    if out.exists():
        prev = store.root_attrs(out)
        if prev.get(BASIS_SHELLS_ATTR):
            shells.update(json.loads(prev[BASIS_SHELLS_ATTR]))
    for z in elements:
        try:
            shells[str(z)] = list(element_shells(settings.basis, z))
        except Exception:  # noqa: BLE001 - an element the basis lacks fails per structure later
            continue
    attrs.update(store.layout_attrs(shells, prev.get(keys.AO_CHANGE_OF_BASIS)))
