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
"""
from __future__ import annotations

import contextlib
import glob
import json
import os
import re
import secrets
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import h5py
import numpy as np

from .. import __version__, keys
from ..errors import DataError
from .reader import BASIS_SHELLS_ATTR

_KEY_RE = re.compile(r"[^A-Za-z0-9_.+=-]+")

SEGMENT_DIR = ".segments"                  # segments folder: <index name>.segments/<8-digit sequence>-<6 hex>.h5
SEGMENT_TAG = ".seg-"                       # previous layout: <index name>.seg-<6-digit sequence>-<6 hex> beside it
NEXT_SEGMENT_ATTR = "store_next_segment"    # index root attr, int: sequence number of its next segment
DATA_BYTES_ATTR = "store_data_bytes"        # index root attr, int: bytes held by its segments
STORE_ATTRS = (NEXT_SEGMENT_ATTR, DATA_BYTES_ATTR)  # bookkeeping of an index, not part of the data
GROWING_ATTRS = (BASIS_SHELLS_ATTR, keys.AO_CHANGE_OF_BASIS)  # grow with new elements: always updated
GROWTH = 0.25                               # consolidate once the journal holds this fraction of the data


def sanitize_key(name: str) -> str:
    """An HDF5-safe group name from a structure name (no '/', no spaces)."""
    key = _KEY_RE.sub("_", name).strip("_.") or "structure"
    return key[:200]


def journal_dir(out: Path) -> Path:
    return Path(str(out) + ".parts")


def segment_dir(out: Path) -> Path:
    return Path(str(out) + SEGMENT_DIR)


def write_group(group: h5py.Group, record: dict) -> None:
    """Write one structure's arrays (and ``record["attrs"]``) into an HDF5 group."""
    for name, value in record.items():
        if name == "attrs":
            continue
        if name == keys.DENSITY_COEFFICIENTS:
            sub = group.create_group(name)
            for i, c in enumerate(value):
                sub.create_dataset(str(i), data=np.asarray(c, dtype=np.float64))
            continue
        group.create_dataset(name, data=np.asarray(value))
    for k, v in record.get("attrs", {}).items():
        group.attrs[k] = v if v is not None else ""


def _atomic_h5(path: Path):
    """Context manager: an HDF5 file written under a temporary name, renamed to ``path`` on success."""

    class _Ctx:
        def __enter__(self):
            self.tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
            self.f = h5py.File(self.tmp, "w")
            return self.f

        def __exit__(self, exc_type, exc, tb):
            self.f.close()
            if exc_type is None:
                _fsync(self.tmp)
                os.replace(self.tmp, path)
            else:
                self.tmp.unlink(missing_ok=True)
            return False

    return _Ctx()


def _fsync(path: Path) -> None:
    with open(path, "rb+") as fh:
        os.fsync(fh.fileno())


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):  # not every file system lets a directory be opened or synced
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def save_part(out: Path, key: str, record: dict | np.ndarray | None = None, failure: dict | None = None,
              group: str = keys.MOLECULES) -> Path:
    """Atomically write one finished (or failed) structure into the journal of ``out``.

    ``record``: a structure's arrays and attrs (a dict, stored as the group ``/<group>/<key>``) or one
    array (stored as the dataset ``/<group>/<key>``, e.g. a guess Hamiltonian); ``failure``: the attrs
    of ``/failures/<key>``.
    """
    jdir = journal_dir(out)
    path = jdir / f"{key}.h5"
    for attempt in (1, 2):
        jdir.mkdir(parents=True, exist_ok=True)
        try:
            with _atomic_h5(path) as f:
                if isinstance(record, dict):
                    write_group(f.create_group(f"{group}/{key}"), record)
                elif record is not None:
                    f.require_group(group).create_dataset(key, data=np.asarray(record))
                else:
                    g = f.create_group(f"{keys.FAILURES}/{key}")
                    for k, v in (failure or {}).items():
                        g.attrs[k] = v
            return path
        except FileNotFoundError:  # a final consolidation removed the empty journal folder meanwhile
            if attempt == 2:
                raise
    return path


def journal_keys(out: Path, groups: tuple[str, ...] = (keys.MOLECULES, keys.FAILURES)) -> dict[str, str]:
    """Keys in the journal of ``out`` mapped to the group that holds them ('molecules' or 'failures')."""
    found = {}
    jdir = journal_dir(out)
    if not jdir.is_dir():
        return found
    for p in sorted(jdir.glob("*.h5")):
        try:
            with h5py.File(p, "r") as f:
                for grp in groups:
                    if grp in f:
                        for k in f[grp]:
                            found[k] = grp
        except OSError:  # a part from a writer killed before its rename never exists; be lenient anyway
            p.unlink(missing_ok=True)
    return found


def file_keys(out: Path, groups: tuple[str, ...] = (keys.FAILURES, keys.MOLECULES)) -> dict[str, str]:
    """Keys stored in the main file ``out`` mapped to 'molecules' or 'failures' (a later group wins)."""
    found: dict[str, str] = {}
    if not Path(out).exists():
        return found
    with h5py.File(out, "r") as f:
        for grp in groups:  # a success overrides an older failure
            if grp in f:
                for k in f[grp]:
                    found[k] = grp
    return found


def root_attrs(out: Path) -> dict:
    with h5py.File(out, "r") as f:
        return {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}


def check_compatible(existing: dict, wanted: dict, what: str) -> None:
    """Refuse to mix data of different levels of theory (xc, basis, grid, conv_tol, density fitting)."""
    for k in (keys.XC, keys.BASIS, keys.GRIDS_LEVEL, keys.CONV_TOL, keys.DENSITY_FIT):
        if k in existing and k in wanted and str(existing[k]).lower() != str(wanted[k]).lower():
            raise DataError(f"{what} has {k}={existing[k]!r} but this run uses {k}={wanted[k]!r}; "
                            f"write to another file")


# ----------------------------------------------------------------------------------------------
# where the objects of a file are: external links into segments, resolved as HDF5 does
# ----------------------------------------------------------------------------------------------
def resolve_link_file(index: Path, filename: str) -> Path | None:
    """The file an external link of ``index`` names, searched as HDF5 does: an absolute name as is,
    then (its last component for an absolute name) in the index's folder, then in the working directory."""
    name = Path(filename)
    candidates = [name] if name.is_absolute() else []
    rel = Path(name.name) if name.is_absolute() else name
    candidates += [Path(index).parent / rel, rel]
    return next((c for c in candidates if c.is_file()), None)


def locate(index: Path, f: h5py.File, group: str, names: Iterable[str]) -> dict[Path | None, list[tuple[str, str]]]:
    """Where the objects ``/<group>/<name>`` of the open file ``f`` (at ``index``) are stored:
    ``{file: [(name, object path in it)]}``, ``None`` standing for ``f`` itself. Lets a reader of many
    structures open every segment once."""
    out: dict[Path | None, list[tuple[str, str]]] = {}
    g = f[group]
    for name in names:
        link = g.get(name, getlink=True)
        if isinstance(link, h5py.ExternalLink):
            target = resolve_link_file(index, link.filename)
            if target is None:
                raise DataError(f"{index}: '{name}' is stored in {link.filename}, which is missing "
                                f"(keep {Path(index).name} with its {Path(index).name}{SEGMENT_DIR}/ folder)")
            out.setdefault(target, []).append((name, link.path))
        else:
            out.setdefault(None, []).append((name, f"/{group}/{name}"))
    return out


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


def _segment_names(out: Path) -> list[tuple[int, Path]]:
    """(sequence, path) of the finished segment files of ``out``: in its segments folder, and beside it
    (the previous layout)."""
    found = []
    prefix = out.name + SEGMENT_TAG
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir(out.parent):
            if entry.name.startswith(prefix):
                seq = entry.name[len(prefix):].split("-", 1)[0]
                if seq.isdigit():
                    found.append((int(seq), Path(entry.path)))
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir(segment_dir(out)):
            seq = entry.name.split("-", 1)[0]
            if seq.isdigit() and entry.name.endswith(".h5"):
                found.append((int(seq), Path(entry.path)))
    return found


def _read_index(out: Path) -> _Index:
    if not out.exists():
        return _Index(False, False, 1 + max((s for s, _ in _segment_names(out)), default=-1), 0)
    with h5py.File(out, "r") as f:
        if NEXT_SEGMENT_ATTR in f.attrs:
            return _Index(True, True, int(f.attrs[NEXT_SEGMENT_ATTR]), int(f.attrs.get(DATA_BYTES_ATTR, 0)))
    return _Index(True, False, 1 + max((s for s, _ in _segment_names(out)), default=-1), out.stat().st_size)


def _collect_garbage(out: Path, idx: _Index) -> None:
    """Remove what killed consolidations left: temporary files, and segments the index never linked."""
    for pattern in (".tmp-*", SEGMENT_TAG + "*"):
        for tmp in out.parent.glob(glob.escape(f".{out.name}") + pattern):
            tmp.unlink(missing_ok=True)
    for tmp in segment_dir(out).glob(".*.tmp"):
        tmp.unlink(missing_ok=True)
    if idx.is_index:  # only this index's own lineage: sequence numbers it has not reached yet
        for seq, path in _segment_names(out):
            if seq >= idx.next_seq:
                path.unlink(missing_ok=True)


def _remove_orphan_parts(jdir: Path) -> None:
    """Remove the temporary parts of writers killed before their rename (their process is gone)."""
    for tmp in jdir.glob(".*.tmp-*"):
        pid = tmp.name.rsplit("-", 1)[-1]
        if pid.isdigit() and int(pid) != os.getpid():
            try:
                os.kill(int(pid), 0)
            except ProcessLookupError:
                tmp.unlink(missing_ok=True)
            except PermissionError:  # alive, another user's
                pass


@contextlib.contextmanager
def _journal_lock(jdir: Path):
    """Exclusive lock of the journal folder, so that two consolidations of one file never overlap."""
    import fcntl

    while True:
        jdir.mkdir(parents=True, exist_ok=True)
        fd = os.open(jdir, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError:  # no locks on this file system: a single writer per file is then the rule
            break
        try:
            if os.stat(jdir).st_ino == os.fstat(fd).st_ino:
                break
        except FileNotFoundError:
            pass
        os.close(fd)  # the folder was removed (and maybe recreated) while we waited: lock the new one
    try:
        yield
    finally:
        os.close(fd)


def _merged_attrs(existing: dict, attrs: dict) -> dict:
    out = dict(existing)
    for k, v in attrs.items():
        if k not in out or k in GROWING_ATTRS:  # the layout grows with new elements
            out[k] = v
    return out


def _new_segment_path(out: Path, seq: int) -> Path:
    return segment_dir(out) / f"{seq:08d}-{secrets.token_hex(3)}.h5"


def _link_name(out: Path, segment: Path) -> str:
    """The file name an external link of ``out`` stores for ``segment``: relative to the index's folder."""
    return f"{segment_dir(out).name}/{segment.name}"


def _publish(src: Path, dst: Path) -> None:
    """Make the finished file ``src`` also the segment ``dst``: a hard link to the same bytes (a copy,
    fsynced, if the file system has no hard links). ``src`` is never written again."""
    dst.parent.mkdir(exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        tmp = dst.with_name(f".{dst.name}.tmp")
        shutil.copyfile(src, tmp)
        _fsync(tmp)
        os.replace(tmp, dst)


def _base_segment(out: Path, seq: int) -> Path:
    """Turn a self-contained ``out`` into a segment by :func:`_publish`. ``out`` is never written in
    place, so those bytes never change."""
    ino = out.stat().st_ino
    for _, orphan in _segment_names(out):  # hard links made by a conversion killed before its commit
        if orphan.stat().st_ino == ino:
            orphan.unlink()
    base = _new_segment_path(out, seq)
    _publish(out, base)
    _fsync_dir(base.parent)
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
                dst[name] = h5py.ExternalLink(_link_name(out, base), path)
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
            final = _merged_attrs({k: v for k, v in f.attrs.items() if k not in STORE_ATTRS}, attrs)
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
                    seg = _new_segment_path(out, seq)
                    _publish(p, seg)
                    seq += 1
                    data_bytes += seg.stat().st_size
                    added.update(dict.fromkeys(new, seg))
            if added:
                _fsync_dir(segment_dir(out))
            # 2. the new index: links to the new segments, and the bookkeeping
            for k, seg in added.items():
                if fail is not None and k in fail:
                    del fail[k]  # a success replaces a recorded failure
                dst[k] = h5py.ExternalLink(_link_name(out, seg), f"/{group}/{k}")
            for a, v in final.items():
                f.attrs[a] = v
            f.attrs[NEXT_SEGMENT_ATTR] = seq
            f.attrs[DATA_BYTES_ATTR] = data_bytes
        _fsync(tmp)
        os.replace(tmp, out)  # the commit: readers see the old or the new index, both complete
        _fsync_dir(out.parent)
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
    with _journal_lock(jdir):
        _remove_orphan_parts(jdir)
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


def journal_bytes(out: Path) -> int:
    """Bytes waiting in the journal of ``out``."""
    jdir = journal_dir(Path(out))
    total = 0
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir(jdir):
            if entry.name.endswith(".h5"):
                with contextlib.suppress(FileNotFoundError):
                    total += entry.stat().st_size
    return total


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


# ----------------------------------------------------------------------------------------------
# root attributes
# ----------------------------------------------------------------------------------------------
def default_root_attrs(settings_attrs: dict, xc_description: str, pyscf_version: str) -> dict:
    """Root attributes of a new file (format version, level of theory, provenance)."""
    return {
        keys.FORMAT_VERSION_ATTR: keys.FORMAT_VERSION,
        keys.XC: settings_attrs["xc"],
        keys.XC_DESCRIPTION: xc_description,
        keys.BASIS: settings_attrs["basis"].lower(),
        keys.PYSCF_VERSION: pyscf_version,
        keys.AO_CONVENTION: "pyscf",
        keys.GRIDS_LEVEL: int(settings_attrs["grid_level"]),
        keys.CONV_TOL: float(settings_attrs["conv_tol"]),
        keys.DENSITY_FIT: bool(settings_attrs["density_fit"]),
        keys.EQCHEM_VERSION: __version__,
        "settings": json.dumps(settings_attrs),
    }


def layout_attrs(shells: dict, change_of_basis: str | None = None) -> dict:
    """The AO-layout root attributes for per-element shells ``{Z: [l of every shell]}``: ``basis_shells``
    and ``keys.AO_CHANGE_OF_BASIS``, the PySCF<->e3nn change of basis of every l up to the largest present.

    ``change_of_basis``: an ``AO_CHANGE_OF_BASIS`` text already stored (a file's, a shard's), reused when
    it covers those l; otherwise it is computed (:func:`eqchem.basis.change_of_basis_json`, which
    imports PySCF and e3nn). No change of basis if neither is possible.
    """
    shells = {str(z): [int(l) for l in ls] for z, ls in sorted(shells.items(), key=lambda kv: int(kv[0]))}
    out = {BASIS_SHELLS_ATTR: json.dumps(shells)}
    ls = [str(l) for l in range(max((l for v in shells.values() for l in v), default=-1) + 1)]
    if not ls:
        return out
    known = json.loads(change_of_basis) if change_of_basis else {}
    if set(ls) <= set(known):
        out[keys.AO_CHANGE_OF_BASIS] = json.dumps({l: known[l] for l in ls})
        return out
    try:
        from ..basis import change_of_basis_json

        out[keys.AO_CHANGE_OF_BASIS] = change_of_basis_json(int(l) for l in ls)
    except ImportError:  # merging on a machine without PySCF/e3nn: readers fall back to computing it
        pass
    return out
