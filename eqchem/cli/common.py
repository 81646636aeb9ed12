"""Shared CLI plumbing: one-line errors, the console, progress that also works in batch logs."""
from __future__ import annotations

import functools
import os
import sys
import time

import typer
from rich.console import Console

console = Console(soft_wrap=True)  # lines are never cut or wrapped; tables still fit the width
err_console = Console(stderr=True)


def fail(message: str, code: int = 2) -> None:
    """Print one clear error line and exit non-zero."""
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def user_errors(func):
    """Turn EqchemError (and a few common OS errors) into one line + exit code; --debug shows tracebacks."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        from ..errors import EqchemError

        try:
            return func(*args, **kwargs)
        except typer.Exit:
            raise
        except EqchemError as exc:
            if os.environ.get("EQCHEM_DEBUG"):
                raise
            fail(str(exc), exc.exit_code)
        except (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError, FileExistsError) as exc:
            if os.environ.get("EQCHEM_DEBUG"):
                raise
            fail(f"{exc.strerror}: {exc.filename}")
        except KeyboardInterrupt:
            fail("interrupted", 130)
        except Exception as exc:  # noqa: BLE001 - a bug: still one line, traceback with --debug
            if os.environ.get("EQCHEM_DEBUG"):
                raise
            if isinstance(exc, ImportError) and str(getattr(exc, "name", "") or "").startswith("pyscf"):
                fail("this command needs PySCF (its integrals and DFT), which cannot be imported here: "
                     "pip install 'pyscf>=2.3'", 3)
            fail(f"internal error: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''} "
                 f"(run with --debug for the traceback)", 3)

    return wrapper


def print_table(table, max_width: int | None = None) -> None:
    """Print a rich table; into a pipe or file as wide as its content needs, so no cell is cut, or, with
    ``max_width`` (characters), at most that wide with long cells wrapped over several lines (nothing cut)."""
    if console.is_terminal:
        console.print(table)
        return
    from rich.measure import Measurement

    width = Measurement.get(console, console.options.update(width=10_000), table).maximum
    if max_width:
        width = min(width, max_width)
    old = console.width
    console.width = max(old, width)
    try:
        console.print(table)
    finally:
        console.width = old


class ProgressReporter:
    """A rich progress bar on a terminal; plain periodic lines in batch logs (Slurm, CI)."""

    def __init__(self, description: str, total: int, interval: float = 30.0):
        self.total = total
        self.count = 0
        self.description = description
        self.interval = interval
        self._last = 0.0
        self._t0 = time.monotonic()
        self._progress = None
        if console.is_terminal:
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                                       TimeElapsedColumn, TimeRemainingColumn)

            self._progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                      TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                                      TextColumn("{task.fields[status]}"), console=console)
            self._task = self._progress.add_task(description, total=total, status="")

    def __enter__(self):
        if self._progress:
            self._progress.start()
        return self

    def __exit__(self, *exc):
        if self._progress:
            self._progress.stop()
        return False

    def advance(self, status: str = "") -> None:
        self.count += 1
        if self._progress:
            self._progress.update(self._task, advance=1, status=status)
            return
        now = time.monotonic()
        if now - self._last >= self.interval or self.count == self.total:
            self._last = now
            el = now - self._t0
            eta = el / self.count * (self.total - self.count) if self.count else 0.0
            print(f"{self.description}: {self.count}/{self.total} elapsed {el:.0f}s eta {eta:.0f}s {status}",
                  file=sys.stdout, flush=True)

    def log(self, message: str) -> None:
        (self._progress.console if self._progress else console).print(message, highlight=False)
