"""The text of a structure file, with the one-line :class:`~eqchem.errors.InputError` every reader gives
for a missing, unreadable, binary or empty file."""
from __future__ import annotations

from pathlib import Path

from ..errors import InputError


def read_text(path: Path) -> str:
    """Whole file as text; InputError if missing, unreadable, binary or empty."""
    if not path.exists():
        raise InputError(f"file not found: {path}")
    if path.is_dir():
        raise InputError(f"{path}: is a directory, expected a structure file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise InputError(f"{path}: not a UTF-8 text file") from None
    except OSError as e:
        raise InputError(f"{path}: cannot read file ({e.strerror or e})") from None
    if not text.strip():
        raise InputError(f"{path}: file is empty")
    return text
