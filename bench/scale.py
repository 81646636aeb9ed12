"""Scaling benchmark: data sets of 10^3, 10^4 and 10^5 structures.

The structures are the 131 real QM9 molecules of ``shared/data/qm9_b3lyp_def2svp/part-001.h5``
(B3LYP/def2-SVP) **replicated under new keys** (``<key>_rNNNNN``): no new DFT, the same 131 molecules
over and over. For each size it reports:

1. store write rate: N records written through :func:`eqchem.data.store.write_records` (the append path
   ``eqchem generate`` uses: one fsynced journal part per structure, consolidations into segments) into a
   temporary folder, deleted afterwards. 10^5 structures would be ~46 GB on disk: not run (disk). The
   sizes are written ``--write-repeats`` times, interleaved (10^3, 10^4, 10^3, ...), so that the page
   cache and other load hit every size alike; the table gives the median time per structure (and the
   range), and the ratio of the medians at 10^4 and 10^3.
   ``consolidate_every_n`` stands in for the DFT time between records: generate looks at the journal
   every 300 s (``consolidate_every``); at the median DFT time of these records (``seconds`` attribute)
   that is every ``300 / median`` structures, so the benchmark looks every that many records (the
   ``GROWTH`` rule then consolidates only once the journal holds 25 % of the stored data, as in generate).
2. ``eqchem train``: a training file with N structures, built cheaply: the 131 groups copied once, the
   replicas HDF5 hard links to them (shared data on disk and in the page cache: optimistic for reads,
   the loader reads the same 131 groups' bytes again and again), with the root attributes a data file
   needs (``basis_shells``, ``ao_change_of_basis`` from :func:`eqchem.data.store.layout_attrs`).
   ``eqchem train FILE --out m.pt --max-time T --max-epochs 1 --profile --split-file S`` runs in a
   subprocess under ``/usr/bin/time -v``; the split file fixes validation to the 13 original structures
   of 13 held-out molecules at every N (the default 10 % would make validation, not training, the cost
   at 10^5: 10^4 structures, two passes) and trains on all structures of the other 118 molecules.
   Reported: wall time, peak RSS, time to the first optimizer step (includes the data index's one-time
   build, ~0.5 ms per structure), training molecules/s (structures processed per second of training steps,
   from the profile: steps x batch size / step time), data-loader stall per step (the profile's 'data').

Beside QHNet's 0.34 molecules/s (2 CPU cores, the same kind of machine). The "8 GPUs" line is a paper
extrapolation from the CPU per-step cost (see the output).

    python bench/scale.py                       # all sizes
    python bench/scale.py --write-sizes 1000 --train-sizes 1000 10000 --max-time 1
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from eqchem import keys  # noqa: E402
from eqchem.data import store  # noqa: E402
from eqchem.data.reader import H5Dataset  # noqa: E402

SOURCE = ROOT.parent / "shared" / "data" / "qm9_b3lyp_def2svp" / "part-001.h5"
OUT = ROOT / "bench" / "results" / "scale"
QHNET_MOL_PER_S = 0.34
GENERATE_EVERY_S = 300.0  # eqchem generate's consolidate_every
N_VAL_MOLECULES = 13


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ------------------------------------------------------------------------------------------------
# the real records
# ------------------------------------------------------------------------------------------------
def load_records(path: Path) -> list[tuple[str, dict]]:
    """The structures of ``path`` as (key, record dict for store.write_group), read with H5Dataset."""
    ds = H5Dataset(path)
    out = []
    for key in ds.keys():
        r = ds.read(key)
        rec = {keys.ATOMIC_NUMBERS: r.numbers, keys.POSITIONS: r.positions, keys.HAMILTONIAN: r.hamiltonian,
               keys.OVERLAP: r.overlap, keys.ENERGY: np.float64(r.energy)}
        if r.orbital_energies is not None:
            rec[keys.ORBITAL_ENERGIES] = r.orbital_energies
        if r.dipole is not None:
            rec[keys.DIPOLE] = r.dipole
        rec["attrs"] = dict(r.attrs)
        out.append((key, rec))
    return out


def full_root_attrs(path: Path) -> dict:
    """part-001's root attributes plus what a data file written by eqchem carries (AO layout, ...)."""
    ds = H5Dataset(path)
    attrs = dict(ds.attrs)
    attrs.update(store.layout_attrs(ds.basis_shells(), attrs.get(keys.AO_CHANGE_OF_BASIS)))
    attrs.setdefault(keys.FORMAT_VERSION_ATTR, keys.FORMAT_VERSION)
    attrs.setdefault(keys.DENSITY_FIT, False)
    attrs.setdefault(keys.XC_DESCRIPTION, "")
    from eqchem import __version__
    attrs.setdefault(keys.EQCHEM_VERSION, __version__)
    return attrs


def replica_key(key: str, i: int) -> str:
    return key if i == 0 else f"{key}_r{i:05d}"


def replicated_keys(base: list[str], n: int) -> list[tuple[str, str]]:
    """n (new key, source key) pairs: every source key once, then replicas r00001, r00002, ..."""
    return [(replica_key(base[j % len(base)], j // len(base)), base[j % len(base)]) for j in range(n)]


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


# ------------------------------------------------------------------------------------------------
# 1. store write rate
# ------------------------------------------------------------------------------------------------
def bench_write(n: int, records: list[tuple[str, dict]], attrs: dict, every_n: int, tmp: Path) -> dict:
    folder = Path(tempfile.mkdtemp(prefix=f"write{n}-", dir=tmp))
    out = folder / "data.h5"
    by_key = dict(records)
    pairs = replicated_keys([k for k, _ in records], n)
    calls = {"n": 0}
    orig = store.consolidate

    def counting(*a, **kw):
        calls["n"] += 1
        return orig(*a, **kw)

    store.consolidate = counting  # write_records calls it through the module: count the consolidations
    try:
        t0 = time.perf_counter()
        written = store.write_records(out, ((k, by_key[src]) for k, src in pairs), attrs,
                                      consolidate_every_n=every_n)
        seconds = time.perf_counter() - t0
    finally:
        store.consolidate = orig
    size = du(folder)
    with h5py.File(out, "r") as f:
        stored = len(f[keys.MOLECULES])
    shutil.rmtree(folder)
    return {"n": n, "written": written, "stored": stored, "seconds": seconds, "per_s": written / seconds,
            "s_per_structure": seconds / written, "bytes": size, "consolidations": calls["n"],
            "consolidate_every_n": every_n}


# ------------------------------------------------------------------------------------------------
# 2. training
# ------------------------------------------------------------------------------------------------
def build_train_file(n: int, attrs: dict, folder: Path) -> tuple[Path, Path, int, int, float]:
    """data.h5 with n structures (131 copied groups + hard links) and a split file; returns
    (data, split, n_train, n_val, seconds)."""
    t0 = time.perf_counter()
    path = folder / "data.h5"
    with h5py.File(SOURCE, "r") as src, h5py.File(path, "w", libver="latest") as f:
        for k, v in attrs.items():
            f.attrs[k] = v
        g = f.create_group(keys.MOLECULES)
        base = sorted(src[keys.MOLECULES])
        for k in base:
            src.copy(src[keys.MOLECULES][k], g, name=k)
        ident = {k: str(src[keys.MOLECULES][k].attrs.get("smiles", k)) for k in base}
        for k, s in replicated_keys(base, n)[len(base):]:
            g[k] = g[s]  # a hard link: the replica shares the original's data
    rng = np.random.default_rng(0)
    val_src = set(rng.choice(base, N_VAL_MOLECULES, replace=False).tolist())
    val_ident = {ident[k] for k in val_src}
    pairs = replicated_keys(base, n)
    train = [k for k, s in pairs if ident[s] not in val_ident]
    val = sorted(val_src)
    split = folder / "split.json"
    split.write_text(json.dumps({"train": train, "val": val}))
    return path, split, len(train), len(val), time.perf_counter() - t0


_FIRST = re.compile(r"first optimizer step after ([\d.]+) s(?: \(([\d.]+) s since the process started\))?")
_PART = re.compile(r"^\s+(data|forward|backward|optimizer|step)\s+([\d.]+)(?:\s+(\d+)%)?\s*$")
_STEPS = re.compile(r"step profile \((\d+) optimizer steps")
_TRAIN_S = re.compile(r"training steps ([\d.]+) s")
_DATA = re.compile(r"data: (\d+) training / (\d+) validation structures")
_STOP = re.compile(r"stopped: (.*)")


def parse_train_output(text: str) -> dict:
    out: dict = {"ms_per_step": {}}
    for line in text.splitlines():
        if m := _FIRST.search(line):
            out["first_step_s"] = float(m.group(1))
            if m.group(2):
                out["first_step_since_process_s"] = float(m.group(2))
        elif m := _STEPS.search(line):
            out["steps"] = int(m.group(1))
        elif (m := _PART.match(line)) and "steps" in out:
            out["ms_per_step"][m.group(1)] = float(m.group(2))
        elif m := _DATA.search(line):
            out["n_train_reported"], out["n_val_reported"] = int(m.group(1)), int(m.group(2))
        elif m := _STOP.search(line):
            out["stop_reason"] = m.group(1).strip()
        if m := _TRAIN_S.search(line):
            out["train_steps_s"] = float(m.group(1))
    return out


def parse_time_v(text: str) -> dict:
    out = {}
    if m := re.search(r"Maximum resident set size \(kbytes\): (\d+)", text):
        out["peak_rss_mb"] = int(m.group(1)) / 1024
    if m := re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)", text):
        secs = 0.0
        for part in m.group(1).split(":"):
            secs = 60 * secs + float(part)
        out["wall_s"] = secs
    return out


def run_measured(cmd: list[str], env: dict, time_file: Path) -> tuple[int, str, dict]:
    """Run ``cmd``; its output and {peak_rss_mb, wall_s} (GNU time -v, else psutil polling)."""
    gnu_time = "/usr/bin/time" if Path("/usr/bin/time").exists() else None
    t0 = time.perf_counter()
    if gnu_time:
        p = subprocess.run([gnu_time, "-v", "-o", str(time_file)] + cmd, env=env, capture_output=True, text=True)
        meas = parse_time_v(time_file.read_text()) if time_file.exists() else {}
        meas.setdefault("wall_s", time.perf_counter() - t0)
        return p.returncode, p.stdout + p.stderr, meas
    import psutil  # fallback: poll the process tree's RSS

    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    ps, peak, chunks = psutil.Process(proc.pid), 0, []
    import threading

    reader = threading.Thread(target=lambda: chunks.append(proc.stdout.read()))
    reader.start()
    while proc.poll() is None:
        try:
            peak = max(peak, sum(c.memory_info().rss for c in [ps] + ps.children(recursive=True)))
        except psutil.Error:
            pass
        time.sleep(0.2)
    reader.join()
    return proc.returncode, "".join(chunks), {"peak_rss_mb": peak / 2**20, "wall_s": time.perf_counter() - t0}


def bench_train(n: int, attrs: dict, tmp: Path, max_time: float, threads: int, extra: list[str]) -> dict:
    folder = Path(tempfile.mkdtemp(prefix=f"train{n}-", dir=tmp))
    try:
        data, split, n_train, n_val, build_s = build_train_file(n, attrs, folder)
        log(f"  train file: {n} structures ({n_train} train / {n_val} val) built in {build_s:.1f} s, "
            f"{data.stat().st_size / 2**20:.0f} MB")
        env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads),
                   OPENBLAS_NUM_THREADS=str(threads), PYTHONUNBUFFERED="1")
        cmd = [str(Path(sys.executable).with_name("eqchem")), "train", str(data), "--out", str(folder / "m.pt"),
               "--max-time", f"{max_time:g}", "--max-epochs", "1", "--profile", "--split-file", str(split)] + extra
        rc, text, meas = run_measured(cmd, env, folder / "time.txt")
        (OUT / f"train_{n}.log").write_text(" ".join(cmd) + "\n\n" + text)
        res = {"n": n, "n_train": n_train, "n_val": n_val, "build_s": build_s, "rc": rc, **meas,
               **parse_train_output(text)}
        cfg_file = folder / "m_run" / "train_config.yaml"
        bs = 8
        if cfg_file.exists():
            import yaml

            bs = int(yaml.safe_load(cfg_file.read_text()).get("batch_size", 8))
        res["batch_size"] = bs
        ms = res["ms_per_step"]
        if res.get("steps") and ms.get("step"):
            seen = min(res["steps"] * bs, n_train)  # one epoch at most; its last batch may be short
            step_s = res["steps"] * ms["step"] / 1e3
            res["molecules_per_s"] = seen / step_s
            res["compute_molecules_per_s"] = seen / (res["steps"] * (ms["step"] - ms.get("data", 0)) / 1e3)
            res["data_stall_ms_per_step"] = ms.get("data")
        return res
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# ------------------------------------------------------------------------------------------------
# report
# ------------------------------------------------------------------------------------------------
def fmt(v, spec="{:.1f}", missing="–"):
    return missing if v is None else spec.format(v)


def table(write: dict[int, dict | str], train: dict[int, dict | str], sizes: list[int]) -> list[str]:
    lines = ["| structures | store write /s | s per structure | on disk | `eqchem train` wall s | peak RSS MB | "
             "first step s | train molecules/s | data stall ms/step | step ms (fwd+bwd+opt) |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for n in sizes:
        w, t = write.get(n), train.get(n)
        if isinstance(w, dict):
            runs = w.get("runs_s_per_structure", [w["s_per_structure"]])
            wc = [fmt(w["per_s"]), f"{w['s_per_structure']:.4f} ({min(runs):.4f}–{max(runs):.4f})",
                  f"{w['bytes'] / 2**30:.2f} GB"]
        else:
            wc = [w or "not run", "", ""]
        if isinstance(t, dict) and t.get("steps"):
            ms = t["ms_per_step"]
            tc = [fmt(t.get("wall_s"), "{:.0f}"), fmt(t.get("peak_rss_mb"), "{:.0f}"), fmt(t.get("first_step_s")),
                  fmt(t.get("molecules_per_s"), "{:.2f}"), fmt(t.get("data_stall_ms_per_step")),
                  f"{ms['step']:.0f} ({ms.get('forward', 0):.0f}+{ms.get('backward', 0):.0f}+{ms.get('optimizer', 0):.0f})"]
        elif isinstance(t, dict):
            tc = [f"failed rc {t.get('rc')}"] + [""] * 5
        else:
            tc = [t or "not run"] + [""] * 5
        lines.append(f"| {n:,} | " + " | ".join(wc + tc) + " |")
    return lines


def extrapolation(train: dict[int, dict | str]) -> list[str]:
    runs = [t for t in train.values() if isinstance(t, dict) and t.get("compute_molecules_per_s")]
    if not runs:
        return []
    big = max(runs, key=lambda t: t["n"])
    m = big["compute_molecules_per_s"]
    n_train = int(0.9 * 100_000)
    hours = n_train / (m * 8) / 3600
    ms = big["ms_per_step"]
    return [f"On paper, a user with 100k molecules and 8 GPUs: one epoch over ~{n_train:,} training structures "
            f"≈ {n_train:,} / ({m:.2f} molecules/s × 8) = {hours:.2f} h per epoch, if every GPU only matched this "
            f"CPU's per-step forward+backward+optimizer cost ({ms['step'] - ms.get('data', 0):.0f} ms per batch "
            f"of {big['batch_size']}, measured at {big['n']:,} structures). This is an extrapolation, not a "
            f"measurement: no GPU was measured; it assumes linear DDP scaling over 8 devices (no all-reduce cost), "
            f"a data loader that never stalls (num_workers > 0 hiding the reads), the same batch size per device, "
            f"and no validation or refit time; a GPU's real step would be faster by a factor this benchmark does "
            f"not know, which divides the figure."]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--write-sizes", type=int, nargs="*", default=[1000, 10000])
    ap.add_argument("--write-repeats", type=int, default=3, help="times each write size is run (median)")
    ap.add_argument("--train-sizes", type=int, nargs="*", default=[1000, 10000, 100000])
    ap.add_argument("--max-time", type=float, default=1.0, help="eqchem train --max-time (minutes)")
    ap.add_argument("--threads", type=int, default=2, help="OMP/MKL threads of eqchem train")
    ap.add_argument("--tmp", type=Path, default=None, help="scratch folder (default: system temp)")
    ap.add_argument("--train-args", default="", help="extra eqchem train arguments, e.g. '--batch-size 8'")
    args = ap.parse_args()
    t_bench = time.perf_counter()
    OUT.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="eqchem-scale-", dir=args.tmp))
    sizes = sorted(set(args.write_sizes) | set(args.train_sizes) | {1000, 10000, 100000})
    try:
        records = load_records(SOURCE)
        attrs = full_root_attrs(SOURCE)
        dft_s = statistics.median(float(r["attrs"].get(keys.SECONDS, 0.0)) for _, r in records)
        every_n = max(1, round(GENERATE_EVERY_S / dft_s)) if dft_s > 0 else 100
        log(f"{len(records)} real records from {SOURCE}; median DFT time {dft_s:.1f} s -> "
            f"consolidate_every_n = round(300 / {dft_s:.1f}) = {every_n}")
        write: dict[int, dict | str] = {n: "not run (disk)" if n >= 100000 else "not run"
                                        for n in sizes if n not in args.write_sizes}
        runs: dict[int, list[dict]] = {n: [] for n in args.write_sizes}
        for rep in range(args.write_repeats):
            for n in args.write_sizes:
                log(f"write {n} structures (run {rep + 1}/{args.write_repeats}) ...")
                r = bench_write(n, records, attrs, every_n, tmp)
                runs[n].append(r)
                log(f"  {r['per_s']:.1f} structures/s, {r['s_per_structure'] * 1e3:.2f} ms each, "
                    f"{r['bytes'] / 2**30:.2f} GB, {r['consolidations']} consolidations")
        for n, rs in runs.items():
            med = statistics.median(r["s_per_structure"] for r in rs)
            write[n] = {**rs[0], "s_per_structure": med, "per_s": 1.0 / med,
                        "runs_s_per_structure": [r["s_per_structure"] for r in rs]}
        train: dict[int, dict | str] = {}
        for n in sizes:
            if n not in args.train_sizes:
                train[n] = "not run"
                continue
            log(f"train on {n} structures (--max-time {args.max_time:g}) ...")
            train[n] = bench_train(n, attrs, tmp, args.max_time, args.threads, args.train_args.split())
            t = train[n]
            log(f"  rc {t['rc']}, wall {t.get('wall_s', 0):.0f} s, peak RSS {t.get('peak_rss_mb', 0):.0f} MB, "
                f"first step {t.get('first_step_s')} s, {t.get('steps')} steps, "
                f"{t.get('molecules_per_s', float('nan')):.2f} molecules/s")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    wall = time.perf_counter() - t_bench
    import torch

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    md = ["# eqchem at 10^3-10^5 structures", "",
          f"Real molecules replicated: the {len(records)} QM9 molecules of part-001.h5 (B3LYP/def2-SVP) under new keys "
          f"(no new DFT). Training files share the replicas' data by HDF5 hard links (optimistic for reads: page "
          f"cache). {cores} CPU cores, eqchem train with {args.threads} thread(s), CPU only, --max-time "
          f"{args.max_time:g} min, --max-epochs 1, batch size {next((t['batch_size'] for t in train.values() if isinstance(t, dict)), 8)}, "
          f"validation fixed at {N_VAL_MOLECULES} structures (--split-file). QHNet: {QHNET_MOL_PER_S} molecules/s "
          f"on 2 CPU cores (same kind of machine).", ""]
    md += table(write, train, sizes)
    ratio = ""
    if isinstance(write.get(1000), dict) and isinstance(write.get(10000), dict):
        ratio = (f"Time per structure at 10^4 / at 10^3: {write[10000]['s_per_structure'] / write[1000]['s_per_structure']:.2f} "
                 f"(medians). ")
    md += ["", f"Store writes: write_records with consolidate_every_n = {every_n} (generate's 300 s journal look "
           f"at the median {dft_s:.1f} s DFT time per structure), {args.write_repeats} interleaved runs per size, "
           f"median (range) per structure; the temporary store is deleted afterwards. {ratio}"
           f"train molecules/s = steps × batch size / time in training steps (data wait included); "
           f"first step includes the one-time data index build. Bench wall time {wall:.0f} s.", ""]
    md += extrapolation(train)
    text = "\n".join(md) + "\n"
    (OUT / "scale.md").write_text(text)
    (OUT / "scale.json").write_text(json.dumps({
        "source": str(SOURCE), "records": len(records), "median_dft_s": dft_s, "consolidate_every_n": every_n,
        "threads": args.threads, "cores": cores, "torch": torch.__version__, "max_time_min": args.max_time,
        "qhnet_molecules_per_s": QHNET_MOL_PER_S, "bench_wall_s": wall, "write_repeats": args.write_repeats,
        "write": {str(k): v for k, v in write.items()}, "train": {str(k): v for k, v in train.items()},
    }, indent=1, default=float))
    print(text)


if __name__ == "__main__":
    main()
