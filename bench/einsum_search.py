"""What e3nn's einsum-order search buys: ``load_model(quick=False)`` (the search, the library default) against
``load_model(quick=True)`` (no search, what ``eqchem predict`` uses for a few structures).

Each mode runs in its own fresh process (``--runs`` times, the modes alternating): imports first (torch,
eqchem, e3nn; not timed), then the timed ``eqchem.load_model(MODEL, quick=...)``, then ``eqchem.predict`` of
one molecule: one warm-up call and the median of ``--repeats`` calls, the network stage on its own
(``eqchem.inference.pipeline.StageTimings``) and the whole call. Printed: load seconds and network / predict
milliseconds per mode (medians over runs), the extra load time of the search and the network-time ratio
quick / search. Threads: ``--threads`` (default 1) for torch and PySCF.

    python bench/einsum_search.py                                   # fast model, glycine, 1 thread (~1 min)
    python bench/einsum_search.py --model accurate --molecule datasets/examples/ethanol.xyz
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

from report import write_report

ROOT = Path(__file__).resolve().parent.parent


def machine() -> dict:
    from eqchem.cpu import processor_name

    cpu = processor_name()
    return {"cpu": cpu, "cores": len(os.sched_getaffinity(0)), "python": platform.python_version()}


def child(model_name: str, quick: bool, molecule: str, repeats: int, threads: int) -> dict:
    """One measurement in this (fresh) process."""
    import warnings

    import torch

    torch.set_num_threads(threads)
    import eqchem
    from eqchem.inference.pipeline import StageTimings
    from eqchem.model.e3nn_setup import import_e3nn

    import_e3nn()
    t0 = time.perf_counter()
    model = eqchem.load_model(model_name, quick=quick)
    load_s = time.perf_counter() - t0
    network, total = [], []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i in range(repeats + 1):
            t = StageTimings()
            t0 = time.perf_counter()
            eqchem.predict(molecule, model=model, timings=t)
            if i:  # the first call is a warm-up
                total.append(time.perf_counter() - t0)
                network.append(t.seconds["network"])
    return {"quick": quick, "load_s": load_s, "network_ms": 1e3 * statistics.median(network),
            "predict_ms": 1e3 * statistics.median(total), "torch": torch.__version__}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="fast", help="a shipped mode or a model file (default fast)")
    p.add_argument("--molecule", default=str(ROOT / "datasets" / "examples" / "glycine.xyz"))
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--runs", type=int, default=2, help="fresh processes per mode")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "einsum_search")
    p.add_argument("--child", choices=("search", "quick"), help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        print(json.dumps(child(a.model, a.child == "quick", a.molecule, a.repeats, a.threads)))
        return

    env = {**os.environ, "OMP_NUM_THREADS": str(a.threads), "MKL_NUM_THREADS": str(a.threads)}
    runs = {"search": [], "quick": []}
    for _ in range(a.runs):
        for mode in ("search", "quick"):
            cmd = [sys.executable, __file__, "--child", mode, "--model", a.model, "--molecule", a.molecule,
                   "--repeats", str(a.repeats), "--threads", str(a.threads)]
            res = subprocess.run(cmd, capture_output=True, text=True, env=env)
            if res.returncode != 0:
                raise SystemExit(f"{mode} run failed:\n{res.stderr[-2000:]}")
            r = json.loads(res.stdout.strip().splitlines()[-1])
            runs[mode].append(r)
            print(f"{mode}: load {r['load_s']:.2f} s, network {r['network_ms']:.1f} ms, "
                  f"predict {r['predict_ms']:.1f} ms", flush=True)
    med = {mode: {k: statistics.median(r[k] for r in rs) for k in ("load_s", "network_ms", "predict_ms")}
           for mode, rs in runs.items()}
    s, q = med["search"], med["quick"]
    extra_load = s["load_s"] - q["load_s"]
    ratio = q["network_ms"] / s["network_ms"]
    table = "\n".join([
        "| load_model | load s | network ms per call | predict ms per call |",
        "|---|---:|---:|---:|",
        f"| quick=False (einsum-order search) | {s['load_s']:.2f} | {s['network_ms']:.1f} | {s['predict_ms']:.1f} |",
        f"| quick=True (no search) | {q['load_s']:.2f} | {q['network_ms']:.1f} | {q['predict_ms']:.1f} |",
    ])
    m = machine()
    footer = (f"Model {a.model}, molecule {Path(a.molecule).name}, one molecule per call, {a.threads} thread(s); "
              f"medians of {a.repeats} calls after a warm-up, then over {a.runs} fresh processes per mode. "
              f"The search costs {extra_load:.2f} s more to load; without it the network takes {ratio:.2f}× as long "
              f"per call. {m['cores']} cores ({m['cpu']}), CPU.")
    info = {"benchmark": "einsum_search", "model": a.model, "molecule": a.molecule, "threads": a.threads,
            "repeats": a.repeats, "runs": runs, "medians": med, "extra_load_s": extra_load,
            "network_ratio_quick_over_search": ratio, "machine": m}
    write_report(a.out, "einsum_search", table, footer, info)


if __name__ == "__main__":
    main()
