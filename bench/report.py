"""How the bench scripts hand in their results: the table and its footer printed, and both written with the
run's details as ``<out>/<name>.md`` and ``<out>/<name>.json``."""
from __future__ import annotations

import json
from pathlib import Path


def write_report(out: Path, name: str, table: str, footer: str, info: dict) -> None:
    """Print ``table`` and ``footer``; write them to ``out/name.md`` and ``info`` to ``out/name.json``."""
    print("\n" + table + "\n\n" + footer)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(info, indent=1, default=str))
    (out / f"{name}.md").write_text(table + "\n\n" + footer + "\n")
    print(f"\nwrote {out / f'{name}.json'}, {out / f'{name}.md'}")
