"""The segments of a data file ``data.h5`` (``data.h5.segments/NNNNNNNN-xxxxxx.h5``, immutable) and the
external links of its index that point into them: naming and listing segments, publishing a finished
file as one, and finding, as HDF5 does, which file holds each entry.
"""
from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from pathlib import Path
from typing import Iterable

import h5py

from ..errors import DataError
from .durable import fsync

SEGMENT_DIR = ".segments"                  # segments folder: <index name>.segments/<8-digit sequence>-<6 hex>.h5
SEGMENT_TAG = ".seg-"                       # previous layout: <index name>.seg-<6-digit sequence>-<6 hex> beside it


def segment_dir(out: Path) -> Path:
    return Path(str(out) + SEGMENT_DIR)


def segment_names(out: Path) -> list[tuple[int, Path]]:
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


def new_segment_path(out: Path, seq: int) -> Path:
    return segment_dir(out) / f"{seq:08d}-{secrets.token_hex(3)}.h5"


def link_name(out: Path, segment: Path) -> str:
    """The file name an external link of ``out`` stores for ``segment``: relative to the index's folder."""
    return f"{segment_dir(out).name}/{segment.name}"


def publish(src: Path, dst: Path) -> None:
    """Make the finished file ``src`` also the segment ``dst``: a hard link to the same bytes (a copy,
    fsynced, if the file system has no hard links). ``src`` is never written again."""
    dst.parent.mkdir(exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        tmp = dst.with_name(f".{dst.name}.tmp")
        shutil.copyfile(src, tmp)
        fsync(tmp)
        os.replace(tmp, dst)


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
