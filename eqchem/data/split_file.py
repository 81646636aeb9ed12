"""JSON split files: {"train": [keys], "val": [keys], "test": [keys]} (``eqchem train --split-file``, the recipes'
``split`` commands); read in one place so that every tool unions and refuses them alike."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

from ..errors import InputError

PARTS = ("train", "val", "test")


def read_split(path: str | Path) -> dict[str, list[str]]:
    """{part: keys} of the split file at ``path`` (parts it lacks: empty); one clear error where it is not a
    readable JSON object of key lists."""
    try:
        split = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"split file {path}: not a readable JSON split ({exc})") from None
    if not isinstance(split, dict) or not all(isinstance(split.get(p, []), list) for p in PARTS):
        raise InputError(f"split file {path}: expected a JSON object with lists of keys under {', '.join(PARTS)}")
    return {p: [str(k) for k in split.get(p, [])] for p in PARTS}


def split_keys(paths: Iterable[str | Path], part: str) -> set[str]:
    """The keys of ``part`` ("train", "val", "test") in any of the split files at ``paths``."""
    if part not in PARTS:
        raise ValueError(f"split part {part!r}: one of {PARTS}")
    return {k for path in paths for k in read_split(path)[part]}
