"""Crash-safe, append-only writing of the eqchem HDF5 format.

HDF5 cannot add groups to a file in place safely (a process killed mid-write can leave it unreadable;
SWMR only appends to existing datasets), and copying the whole file for every addition costs O(N) per
write. So a data file ``data.h5`` that eqchem writes is an *index* over immutable *segment* files:

* ``data.h5`` (the index): the root attributes, ``/failures/<key>`` (small groups, stored in it) and, for
  every structure, an HDF5 external link ``/molecules/<key>`` to ``/molecules/<key>`` of a segment.
  HDF5 follows external links on its own, so every reader (h5py, :class:`~eqchem.data.reader.H5Dataset`,
  h5dump) sees an ordinary file holding everything.
* ``data.h5.segments/NNNNNNNN-xxxxxx.h5`` (segments): the structures themselves, one HDF5 file per journal
  part (one structure each), or a whole older file. Never changed or deleted. Links name them relative
  to the index's folder (``data.h5.segments/...``), so the index keeps working when its folder is moved
  as a whole; keep ``data.h5`` and ``data.h5.segments/`` together (``eqchem merge`` packs them into
  one self-contained file).
* ``data.h5.parts/<key>.h5`` (the journal): each finished structure first goes here, one small file
  written under a temporary name, fsynced and renamed (atomic).

:func:`consolidate` absorbs the journal: every new part becomes a segment by a hard link (its bytes are
written once, when the structure finishes, and never copied; a copy only on file systems without hard
links), then a new index (a copy of the old one, ~100-200 bytes per structure, plus the new links) is
written under a temporary name and renamed over ``data.h5``, and the absorbed parts are unlinked.
:class:`Appender` consolidates only once the journal holds ``GROWTH`` times the data already stored
(and at most every few minutes), so the index copies add O(1) per structure too. A ``kill -9`` at any
moment leaves ``data.h5`` as the old or the new index (both complete and readable) and every finished
structure in the journal or a linked segment; the next consolidation removes the segments the killed
one made but never linked (their parts are still in the journal) and absorbs the journal. Files written
by older eqchem versions (or by ``eqchem merge``), which hold their data themselves, become the first
segment of their index by a hard link too. Segments of the previous layout (``data.h5.seg-*`` next to
the index, several structures each, linked by absolute path) stay readable.

This module holds the consolidation and the append path (:class:`Appender`, :func:`write_records`) and
re-exports the pieces they are built from: :mod:`~eqchem.data.journal` (writing and listing parts),
:mod:`~eqchem.data.segments` (segment files and the links into them), :mod:`~eqchem.data.file_info`
(a file's keys and root attributes), :mod:`~eqchem.data.names` (keys from structure names) and
:mod:`~eqchem.data.durable` (fsync, atomic renames).
"""
from __future__ import annotations

import contextlib
import glob
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import h5py
import numpy as np

from .. import keys
from .durable import fsync, fsync_dir
from .file_info import (GROWING_ATTRS, check_compatible, default_root_attrs, file_keys, layout_attrs, merged_attrs,
                        root_attrs)
from .journal import journal_bytes, journal_dir, journal_keys, journal_lock, remove_orphan_parts, save_part, write_group
from .names import sanitize_key
from .segments import (SEGMENT_DIR, SEGMENT_TAG, link_name, locate, new_segment_path, publish, resolve_link_file,
                       segment_dir, segment_names)

__all__ = [
    "SEGMENT_DIR", "SEGMENT_TAG", "NEXT_SEGMENT_ATTR", "DATA_BYTES_ATTR", "STORE_ATTRS", "GROWING_ATTRS", "GROWTH",
    "sanitize_key", "journal_dir", "segment_dir", "write_group", "save_part", "journal_keys", "journal_bytes",
    "file_keys", "root_attrs", "check_compatible", "default_root_attrs", "layout_attrs", "resolve_link_file",
    "locate", "consolidate", "stored_bytes", "Appender", "write_records",
]

NEXT_SEGMENT_ATTR = "store_next_segment"    # index root attr, int: sequence number of its next segment
DATA_BYTES_ATTR = "store_data_bytes"        # index root attr, int: bytes held by its segments
STORE_ATTRS = (NEXT_SEGMENT_ATTR, DATA_BYTES_ATTR)  # bookkeeping of an index, not part of the data
GROWTH = 0.25                               # consolidate once the journal holds this fraction of the data


# ----------------------------------------------------------------------------------------------
# consolidation: journal -> new segment + new index, renamed over the old one
# ----------------------------------------------------------------------------------------------
@dataclass
class _Index:
    """What consolidation needs to know of the current main file."""

    exists: bool
    is_index: bool          # written by this store (data in segments) rather than self-contained
    next_seq: int
    data_bytes: int


def _read_index(out: Path) -> _Index:
    if not out.exists():
        return _Index(False, False, 1 + max((s for s, _ in segment_names(out)), default=-1), 0)
    with h5py.File(out, "r") as f:
        if NEXT_SEGMENT_ATTR in f.attrs:
            return _Index(True, True, int(f.attrs[NEXT_SEGMENT_ATTR]), int(f.attrs.get(DATA_BYTES_ATTR, 0)))
    return _Index(True, False, 1 + max((s for s, _ in segment_names(out)), default=-1), out.stat().st_size)


def _collect_garbage(out: Path, idx: _Index) -> None:
    """Remove what killed consolidations left: temporary files, and segments the index never linked."""
    for pattern in (".tmp-*", SEGMENT_TAG + "*"):
        for tmp in out.parent.glob(glob.escape(f".{out.name}") + pattern):
            tmp.unlink(missing_ok=True)
    for tmp in segment_dir(out).glob(".*.tmp"):
        tmp.unlink(missing_ok=True)
    if idx.is_index:  # only this index's own lineage: sequence numbers it has not reached yet
        for seq, path in segment_names(out):
            if seq >= idx.next_seq:
                path.unlink(missing_ok=True)


def _base_segment(out: Path, seq: int) -> Path:
    """Turn a self-contained ``out`` into a segment by :func:`publish`. ``out`` is never written in
    place, so those bytes never change."""
    ino = out.stat().st_ino
    for _, orphan in segment_names(out):  # hard links made by a conversion killed before its commit
        if orphan.stat().st_ino == ino:
            orphan.unlink()
    base = new_segment_path(out, seq)
    publish(out, base)
    fsync_dir(base.parent)
    return base


def _index_from_file(out: Path, tmp: Path, base: Path, group: str, failures: str | None) -> None:
    """A new index at ``tmp`` for the self-contained file ``out``, whose bytes are also ``base``."""
    with h5py.File(out, "r") as src, h5py.File(tmp, "w") as f:
        for k, v in src.attrs.items():
            f.attrs[k] = v
        dst = f.create_group(group)
        for name in src.get(group, {}):
            link = src[group].get(name, getlink=True)
            if isinstance(link, h5py.ExternalLink):
                dst[name] = h5py.ExternalLink(link.filename, link.path)
            else:
                path = link.path if isinstance(link, h5py.SoftLink) else f"/{group}/{name}"
                dst[name] = h5py.ExternalLink(link_name(out, base), path)
        if failures and failures in src:
            src.copy(src[failures], f, name=failures)


def _commit(out: Path, attrs: dict, parts: list[Path], group: str, failures: str | None) -> None:
    idx = _read_index(out)
    _collect_garbage(out, idx)
    seq, data_bytes = idx.next_seq, idx.data_bytes
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    try:
        if idx.exists and not idx.is_index:
            base = _base_segment(out, seq)
            seq += 1
            _index_from_file(out, tmp, base, group, failures)
        elif idx.exists:
            shutil.copyfile(out, tmp)  # the index: ~100-200 bytes per structure, no data
        with h5py.File(tmp, "a") as f:
            final = merged_attrs({k: v for k, v in f.attrs.items() if k not in STORE_ATTRS}, attrs)
            dst = f.require_group(group)
            fail = f.require_group(failures) if failures else None
            # 1. every part with a new structure becomes a segment (no copy); failures go into the index
            added: dict[str, Path] = {}
            for p in parts:
                with h5py.File(p, "r") as part:
                    new = [k for k in part.get(group, {}) if k not in added and k not in dst]
                    if fail is not None and failures in part:
                        for k in part[failures]:
                            if k in added or k in dst:
                                continue  # never overwrite a finished structure
                            if k in fail:
                                del fail[k]  # a retried failure: the new outcome wins
                            part.copy(part[failures][k], fail, name=k)
                if new:
                    seg = new_segment_path(out, seq)
                    publish(p, seg)
                    seq += 1
                    data_bytes += seg.stat().st_size
                    added.update(dict.fromkeys(new, seg))
            if added:
                fsync_dir(segment_dir(out))
            # 2. the new index: links to the new segments, and the bookkeeping
            for k, seg in added.items():
                if fail is not None and k in fail:
                    del fail[k]  # a success replaces a recorded failure
                dst[k] = h5py.ExternalLink(link_name(out, seg), f"/{group}/{k}")
            for a, v in final.items():
                f.attrs[a] = v
            f.attrs[NEXT_SEGMENT_ATTR] = seq
            f.attrs[DATA_BYTES_ATTR] = data_bytes
        fsync(tmp)
        os.replace(tmp, out)  # the commit: readers see the old or the new index, both complete
        fsync_dir(out.parent)
    finally:
        tmp.unlink(missing_ok=True)


def consolidate(out: Path, attrs: dict, group: str = keys.MOLECULES, failures: str | None = keys.FAILURES,
                keep_journal: bool = False) -> int:
    """Absorb the journal of ``out`` into ``out`` atomically (creating ``out`` if needed); return the
    number of journal entries absorbed.

    Args:
        attrs: root attributes; those ``out`` lacks are added, ``basis_shells`` and the change of basis
            are replaced (they grow with new elements).
        group: the group of the finished entries (``molecules``; ``guess_hamiltonians`` for guess files).
        failures: the group of failed entries, or None.
        keep_journal: leave the (empty) journal folder in place: workers may be writing parts into it.
    """
    out = Path(out)
    jdir = journal_dir(out)
    if out.exists() and not jdir.is_dir():
        return 0
    with journal_lock(jdir):
        remove_orphan_parts(jdir)
        parts = sorted(jdir.glob("*.h5"))
        if parts or not out.exists():
            _commit(out, attrs, parts, group, failures)
            for p in parts:
                p.unlink(missing_ok=True)
        if not keep_journal:
            with contextlib.suppress(OSError):  # not empty: a part arrived meanwhile
                jdir.rmdir()
    return len(parts)


def stored_bytes(out: Path) -> int:
    """Bytes of data ``out`` holds (its segments, or the file itself if self-contained)."""
    out = Path(out)
    return _read_index(out).data_bytes if out.exists() else 0


class Appender:
    """Appends finished entries to ``out`` through its journal and consolidates at a cadence that costs
    O(1) per entry: at most every ``consolidate_every`` seconds (or every ``consolidate_every_n``
    entries, if given), and only once the journal holds ``growth`` times the data already stored; then
    once more at :meth:`close`. Parts written by other processes (workers) are announced with
    :meth:`note`.
    """

    def __init__(self, out: str | Path, attrs: dict, group: str = keys.MOLECULES,
                 failures: str | None = keys.FAILURES, consolidate_every: float = 300.0,
                 consolidate_every_n: int | None = None, growth: float = GROWTH):
        self.out, self.attrs, self.group, self.failures = Path(out), attrs, group, failures
        self.every_s, self.every_n, self.growth = consolidate_every, consolidate_every_n, growth
        self._last, self._since = time.monotonic(), 0
        self._stored = stored_bytes(self.out)
        self._journal: int | None = journal_bytes(self.out)  # None: parts of unknown size arrived
        self.consolidations = 0

    def add(self, key: str, record: dict | np.ndarray | None = None, failure: dict | None = None) -> bool:
        """Journal one finished (or failed) entry; True if the journal was consolidated."""
        path = save_part(self.out, key, record=record, failure=failure, group=self.group)
        return self.note(path.stat().st_size)

    def note(self, nbytes: int | None = None) -> bool:
        """One more part (of ``nbytes``, when known) is in the journal; consolidate if due. True if it
        consolidated. Known sizes are summed, so a due look costs O(1); an unknown one makes the next due
        look measure the journal (O(journal), once a period)."""
        self._journal = None if nbytes is None or self._journal is None else self._journal + int(nbytes)
        self._since += 1
        due = (self._since >= self.every_n) if self.every_n else (time.monotonic() - self._last >= self.every_s)
        if not due:
            return False
        self._last, self._since = time.monotonic(), 0  # the next look at the journal: one period on
        journal = self._journal if self._journal is not None else journal_bytes(self.out)
        if journal < self.growth * self._stored:
            self._journal = journal
            return False
        consolidate(self.out, self.attrs, self.group, self.failures, keep_journal=True)
        self._stored = stored_bytes(self.out)
        self._journal = journal_bytes(self.out)
        self.consolidations += 1
        return True

    def close(self) -> int:
        """Absorb the whole journal (and remove it); the number of entries absorbed."""
        n = consolidate(self.out, self.attrs, self.group, self.failures)
        self.consolidations += 1
        return n

    def __enter__(self) -> "Appender":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def write_records(out: str | Path, records: Iterable[tuple[str, dict | np.ndarray]], attrs: dict,
                  group: str = keys.MOLECULES, failures: str | None = keys.FAILURES,
                  consolidate_every: float = 300.0, consolidate_every_n: int | None = None) -> int:
    """Append ``(key, record)`` pairs to ``out`` the way ``eqchem generate`` stores finished structures:
    the journal of a killed earlier run is absorbed first, keys already in ``out`` are skipped, every
    record is journaled as it comes and the journal consolidated by :class:`Appender`'s cadence (pass
    ``consolidate_every_n`` to stand in for the time DFT takes between records). Returns the number of
    records written. ``record``: a dict as :func:`write_group` takes (arrays named by :mod:`eqchem.keys`,
    ``attrs``), or an array for dataset groups such as ``guess_hamiltonians``.
    """
    out = Path(out)
    consolidate(out, attrs, group, failures)
    present = set(file_keys(out, (group,)))
    n = 0
    with Appender(out, attrs, group, failures, consolidate_every, consolidate_every_n) as app:
        for key, record in records:
            if key in present:
                continue
            app.add(key, record)
            present.add(key)
            n += 1
    return n
