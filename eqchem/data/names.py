"""HDF5-safe group names for structures: what a structure's name becomes as a key of a data file."""
from __future__ import annotations

import re

_KEY_RE = re.compile(r"[^A-Za-z0-9_.+=-]+")


def sanitize_key(name: str) -> str:
    """An HDF5-safe group name from a structure name (no '/', no spaces)."""
    key = _KEY_RE.sub("_", name).strip("_.") or "structure"
    return key[:200]
