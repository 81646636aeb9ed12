"""Prediction speed on a shared machine: nothing added against one busy process per core, for the thread policy
of ``eqchem predict`` (one thread per library unless the user chose; :mod:`eqchem.cpu`) and for the old
default (torch, PySCF's OpenMP and OpenBLAS at one thread per core).

For each condition (nothing added; then one busy-loop process, ``python -c "while True: pass"``, per usable
core, started before and killed after its runs) and each policy:

1. in one process: a fresh Python process loads the shipped default model once, predicts every example
   molecule once to warm up, then times ``--repeats`` predictions of each (``eqchem.predict``; median per
   molecule); the table gives the mean over the molecules of those medians (s per molecule). New policy:
   the predictions inside ``eqchem.cpu.limit_threads(eqchem.cpu.inference_threads())``, the count ``eqchem
   predict`` applies (OMP_NUM_THREADS unset); old: OMP_NUM_THREADS=<cores>, the count every library takes by
   default where it is unset (which the policy then leaves as it is);
2. from the shell: a fresh ``eqchem predict ethanol.xyz``, wall time, start-up included, median of
   ``--cli-repeats`` runs, with the same environments: new, its default; old, one thread per core.

The script controls only what it adds: other processes keep running, so the report records the load average
and the running processes (``/proc/loadavg``) before and after each condition, and "idle" means "nothing
added by this script".

    python bench/shared_machine.py [--repeats 5] [--cli-repeats 3] [--out bench/results/shared_machine]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import write_report  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "datasets" / "examples"
MOLECULES = [EXAMPLES / "ethanol.xyz", EXAMPLES / "glycine.xyz", EXAMPLES / "aspirin.sdf"]
CLI_INPUT = EXAMPLES / "ethanol.xyz"
POLICIES = {"new": "one thread per library (eqchem predict's default)",
            "old": "one thread per core per library (the libraries' defaults)"}
FLOOR = 2.0
"""Issue 26: per molecule on a shared machine at most this many times the idle time."""
IDLE_LOAD = 0.5
"""The idle baseline decides the floor only below this 1-minute load average (half a core busy)."""


def policy_env(policy: str, cores: int) -> dict:
    """This environment without the thread variables (a new user's shell); for the old policy with
    OMP_NUM_THREADS=``cores``, the libraries' own default."""
    from eqchem.cpu import THREAD_VARIABLES

    env = {k: v for k, v in os.environ.items() if k not in THREAD_VARIABLES}
    return env if policy == "new" else {**env, "OMP_NUM_THREADS": str(cores)}


def loadavg() -> dict:
    """The 1-minute load average and running / all processes, from /proc/loadavg (the reader itself counted)."""
    fields = Path("/proc/loadavg").read_text().split()
    return {"load_1min": float(fields[0]), "running_processes": fields[3]}


def child(policy: str, repeats: int) -> None:
    """In a fresh process: per molecule the median seconds of ``repeats`` predictions after one warm-up; JSON out."""
    import contextlib

    import eqchem
    from eqchem.cpu import inference_threads, limit_threads, thread_counts
    from eqchem.io.readers import read_structures

    model = eqchem.load_model()
    structures = [s for path in MOLECULES for s in read_structures(path)]
    limit = limit_threads(inference_threads()) if policy == "new" else contextlib.nullcontext()
    out = {}
    with limit:
        for s in structures:
            eqchem.predict(s, model=model)
            times = []
            for _ in range(repeats):
                t = time.perf_counter()
                eqchem.predict(s, model=model)
                times.append(time.perf_counter() - t)
            out[s.label] = {"median_s": statistics.median(times), "runs_s": times}
        threads = thread_counts()
    print(json.dumps({"molecules": out, "threads": threads}))


def in_process(policy: str, repeats: int, cores: int) -> dict:
    """:func:`child` of ``policy`` in a fresh process: its per-molecule medians and their mean."""
    r = subprocess.run([sys.executable, __file__, "--child", policy, "--repeats", str(repeats)],
                       capture_output=True, text=True, env=policy_env(policy, cores))
    if r.returncode != 0:
        sys.exit(f"in-process run ({policy}) failed:\n{r.stdout[-1500:]}\n{r.stderr[-1500:]}")
    res = json.loads(r.stdout.strip().splitlines()[-1])
    res["mean_s_per_molecule"] = statistics.mean(m["median_s"] for m in res["molecules"].values())
    return res


def cli(policy: str, runs: int, cores: int) -> dict:
    """Wall seconds of a fresh ``eqchem predict CLI_INPUT`` (median of ``runs``)."""
    exe = Path(sys.executable).parent / "eqchem"
    cmd = [str(exe), "predict", str(CLI_INPUT)]
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        r = subprocess.run(cmd, capture_output=True, text=True, env=policy_env(policy, cores))
        times.append(time.perf_counter() - t)
        if r.returncode != 0:
            sys.exit(f"{' '.join(cmd)} failed:\n{r.stdout[-1500:]}\n{r.stderr[-1500:]}")
    return {"command": ("OMP_NUM_THREADS=%d " % cores if policy == "old" else "") + "eqchem predict "
            + str(CLI_INPUT.relative_to(ROOT)), "median_s": statistics.median(times), "runs_s": times}


def busy_processes(n: int) -> list[subprocess.Popen]:
    """``n`` processes that keep one core each busy (a Python busy loop)."""
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]


def measure(repeats: int, cli_runs: int, cores: int) -> dict:
    """{condition: {"load_before", "load_after", policy: {"in_process", "cli"}}} for idle, then loaded."""
    results = {}
    for condition in ("idle", "loaded"):
        busy = busy_processes(cores) if condition == "loaded" else []
        try:
            time.sleep(1.0 if busy else 0.0)  # the busy loops running before the first timing
            res = {"load_before": loadavg()}
            for policy in POLICIES:
                print(f"{condition}, {policy} policy ...", flush=True)
                res[policy] = {"in_process": in_process(policy, repeats, cores), "cli": cli(policy, cli_runs, cores)}
            res["load_after"] = loadavg()
        finally:
            for p in busy:
                p.kill()
                p.wait()
        results[condition] = res
    return results


def table(results: dict) -> str:
    rows = ["| policy | threads in the prediction | in one process, s per molecule: idle (nothing added) "
            "| loaded (+ one busy process per core) | loaded / idle "
            f"| `eqchem predict {CLI_INPUT.name}`, s: idle | loaded | loaded / idle |", "|---" * 8 + "|"]
    for policy, words in POLICIES.items():
        idle, loaded = results["idle"][policy], results["loaded"][policy]
        a, b = idle["in_process"]["mean_s_per_molecule"], loaded["in_process"]["mean_s_per_molecule"]
        c, d = idle["cli"]["median_s"], loaded["cli"]["median_s"]
        threads = ", ".join(f"{k} {v}" for k, v in idle["in_process"]["threads"].items() if k in ("torch", "pyscf"))
        rows.append(f"| {policy}: {words} | {threads} | {a:.3f} | {b:.3f} | {b / a:.1f} | {c:.2f} | {d:.2f} "
                    f"| {d / c:.1f} |")
    return "\n".join(rows)


def floor_lines(results: dict, cores: int) -> list[str]:
    """The floor's verdict per policy, and whether the idle baseline was idle enough to give one."""
    load = results["idle"]["load_before"]["load_1min"]
    idle_enough = load < IDLE_LOAD
    out = []
    for policy in POLICIES:
        ratio = (results["loaded"][policy]["in_process"]["mean_s_per_molecule"]
                 / results["idle"][policy]["in_process"]["mean_s_per_molecule"])
        verdict = ("met" if ratio <= FLOOR else "not met") if idle_enough else "not decided (see below)"
        out.append(f"- {policy} policy, per molecule loaded / idle: {ratio:.1f} (≤ {FLOOR:g}): {verdict}")
    for condition in ("idle", "loaded"):
        new, old = (results[condition][p]["in_process"]["mean_s_per_molecule"] for p in ("new", "old"))
        out.append(f"- {condition}: the old policy's time per molecule / the new one's: {old / new:.1f}")
    if not idle_enough:
        out.append(f"- the idle baseline was not idle: load {load:.2f} on {cores} cores before it (other users' "
                   f"processes); the floor compares with an otherwise idle machine (load < {IDLE_LOAD:g}), so "
                   f"these ratios do not decide it")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5, help="timed predictions per molecule (after one warm-up)")
    ap.add_argument("--cli-repeats", type=int, default=3, help="timed fresh `eqchem predict` runs per cell")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "shared_machine")
    ap.add_argument("--child", choices=tuple(POLICIES), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        child(a.child, a.repeats)
        return

    from eqchem.cpu import available_cores, processor_name

    t0 = time.perf_counter()
    cores = available_cores()
    results = measure(a.repeats, a.cli_repeats, cores)
    loads = "; ".join(f"{c}: load {results[c]['load_before']['load_1min']:.2f} -> {results[c]['load_after']['load_1min']:.2f}"
                      f" (running/all processes before {results[c]['load_before']['running_processes']})"
                      for c in results)
    footer = (f"Default model (fast), {len(MOLECULES)} molecules ({', '.join(p.name for p in MOLECULES)}): in one "
              f"process the mean over them of each one's median of {a.repeats} predictions after a warm-up; "
              f"`eqchem predict` median of {a.cli_repeats} fresh processes, start-up included. Loaded: {cores} "
              f"busy-loop processes added, one per usable core. {processor_name()}, {cores} cores; other processes "
              f"were not stopped ({loads}); {time.perf_counter() - t0:.0f} s.\n\n" + "\n".join(floor_lines(results, cores)))
    write_report(a.out, "shared_machine", table(results), footer,
                 {"cores": cores, "cpu": processor_name(), "repeats": a.repeats, "cli_repeats": a.cli_repeats,
                  "molecules": [p.name for p in MOLECULES], "policies": POLICIES, "results": results})


if __name__ == "__main__":
    main()
