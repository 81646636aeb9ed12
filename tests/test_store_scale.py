"""The write path scales: appending never rewrites stored structures (data files and guess files),
``kill -9`` at a random moment loses at most the structure in flight, and merge gives the union.

Synthetic records of the eqchem format, written through the store API: no PySCF runs."""
from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from eqchem import keys
from eqchem.data import store
from eqchem.data.reader import BASIS_SHELLS_ATTR, H5Dataset

NAO = 40  # H and S of 12.8 kB each: records much larger than an index entry (~100 bytes)
ATTRS = {keys.XC: "pbe", keys.BASIS: "sto-3g", keys.GRIDS_LEVEL: 2,
         BASIS_SHELLS_ATTR: json.dumps({"1": [0], "8": [0, 0, 1]}),
         keys.AO_CHANGE_OF_BASIS: json.dumps({"0": [[1.0]], "1": np.eye(3).tolist()})}


def record(key: str, nao: int = NAO, energy_shift: float = 0.0) -> dict:
    """A deterministic synthetic structure: the key seeds every array."""
    rng = np.random.default_rng(int(hashlib.sha256(key.encode()).hexdigest()[:8], 16))
    h = rng.normal(size=(nao, nao))
    return {keys.ATOMIC_NUMBERS: np.array([8, 1, 1]), keys.POSITIONS: rng.normal(size=(3, 3)),
            keys.HAMILTONIAN: h + h.T, keys.OVERLAP: np.eye(nao) + 0.01 * (h @ h.T) / nao,
            keys.ENERGY: float(rng.normal()) + energy_shift, "attrs": {keys.CHARGE: 0, keys.SPIN: 0}}


def records(names):
    return ((k, record(k)) for k in names)


def check_complete(path: Path, expected=record) -> set[str]:
    """Open ``path`` as every reader does; every structure in it is whole and bit-identical to its record."""
    ds = H5Dataset(path)
    for key in ds.keys():
        r, want = ds[key], expected(key)
        assert np.array_equal(r.hamiltonian, want[keys.HAMILTONIAN]) and np.array_equal(r.overlap, want[keys.OVERLAP])
        assert np.array_equal(r.positions, want[keys.POSITIONS]) and r.energy == want[keys.ENERGY], key
    return set(ds.keys())


def segment_files(out: Path) -> dict[Path, tuple]:
    """Every file of ``out``'s segments folder and beside it (but ``out`` itself) with (inode, mtime,
    size, content hash)."""
    files = [p for p in out.parent.iterdir() if p.is_file() and p != out and p.name.startswith(out.name + ".")]
    if store.segment_dir(out).is_dir():
        files += [p for p in store.segment_dir(out).iterdir() if p.is_file()]
    return {p: (p.stat().st_ino, p.stat().st_mtime_ns, p.stat().st_size, hashlib.sha256(p.read_bytes()).hexdigest())
            for p in files}


def link_files(out: Path, group: str = keys.MOLECULES) -> dict[str, Path]:
    """The file that holds each entry of ``out``."""
    with h5py.File(out, "r") as f:
        return {k: (out if s is None else s) for s, items in store.locate(out, f, group, list(f[group])).items()
                for k, _ in items}


@pytest.fixture
def renamed_bytes(monkeypatch):
    """Bytes the store publishes by rename, outside the journal (segments and index versions): what a
    consolidation writes. Journal parts are counted apart."""
    counts = {"store": 0, "journal": 0}
    real = os.replace

    def spy(src, dst):
        counts["journal" if Path(dst).parent.name.endswith(".parts") else "store"] += os.path.getsize(src)
        return real(src, dst)

    monkeypatch.setattr(store.os, "replace", spy)
    return counts


# ------------------------------------------------------------------------------------------------------------
# (a) the I/O per appended structure does not grow with the file
# ------------------------------------------------------------------------------------------------------------

def test_consolidation_writes_only_the_new_structures(tmp_path, renamed_bytes):
    out = tmp_path / "d.h5"
    names = [f"s{i:04d}" for i in range(240)]
    assert store.write_records(out, records(names[:200]), ATTRS, consolidate_every_n=10) == 200
    data = store.stored_bytes(out)
    # every structure's bytes are written once, into its journal part, which becomes its segment by a
    # hard link; consolidations publish only small index versions. Copying the file at every
    # consolidation (the old store) writes ~10x the data here; copying parts into segments, 2x.
    assert renamed_bytes["journal"] < 1.2 * data
    assert renamed_bytes["store"] < 0.05 * data, (renamed_bytes, data)
    before = segment_files(out)
    where = link_files(out)
    assert set(where) == set(names[:200]) and set(where.values()) <= set(before)  # data lives in segments
    assert len(set(where.values())) == 200 and sum(v[2] for v in before.values()) == data
    assert all(p.stat().st_nlink == 1 for p in before)  # the journal's names are gone
    index_size = out.stat().st_size
    assert index_size < 300 * 200 < 0.02 * data  # the index: ~100 bytes per structure, no matrices

    renamed_bytes["store"] = renamed_bytes["journal"] = 0
    assert store.write_records(out, records(names), ATTRS, consolidate_every_n=10) == 40
    after = segment_files(out)
    assert {p: after[p] for p in before} == before  # no stored byte rewritten: same inodes, times, contents
    new = set(after) - set(before)
    assert len(new) == 40  # one new segment per new structure
    new_data = sum(after[p][2] for p in new)
    assert new_data < 1.2 * 40 * 2 * NAO * NAO * 8 + 40 * 5_000
    assert renamed_bytes["journal"] == new_data  # the segments are the journal's parts
    assert renamed_bytes["store"] == out.stat().st_size  # and the new index is all a consolidation writes
    assert link_files(out) == {**where, **{k: p for k, p in link_files(out).items() if k in names[200:]}}
    assert {p.name for k, p in link_files(out).items() if k in names[200:]} == {p.name for p in new}
    assert check_complete(out) == set(names)
    assert not store.journal_dir(out).exists()


def test_a_self_contained_file_becomes_a_segment_without_a_copy(tmp_path, renamed_bytes):
    """Files of older eqchem versions (and merge outputs) hold their data: appending hard-links them."""
    out = tmp_path / "old.h5"
    with h5py.File(out, "w") as f:
        for k, v in ATTRS.items():
            f.attrs[k] = v
        for k in ("a", "b", "c"):
            store.write_group(f.create_group(f"{keys.MOLECULES}/{k}"), record(k))
        f.create_group(f"{keys.FAILURES}/x").attrs[keys.REASON] = "SCF not converged"
    ino, content = out.stat().st_ino, out.read_bytes()
    assert store.write_records(out, records(["d", "x"]), ATTRS) == 2
    base = [p for p in store.segment_dir(out).iterdir() if p.stat().st_ino == ino]
    assert len(base) == 1 and base[0] != out and base[0].read_bytes() == content  # same inode, untouched
    assert renamed_bytes["store"] < 0.5 * len(content)  # the new index only: no copy
    assert check_complete(out) == {"a", "b", "c", "d", "x"}
    assert H5Dataset(out).failures == {}  # the success replaced the failure
    assert {k: p.name for k, p in link_files(out).items() if k in "abc"} == dict.fromkeys("abc", base[0].name)


def test_root_attrs_grow_with_new_elements(tmp_path):
    out = tmp_path / "d.h5"
    store.write_records(out, records(["a"]), ATTRS)
    more = {**ATTRS, BASIS_SHELLS_ATTR: json.dumps({"1": [0], "8": [0, 0, 1], "16": [0, 0, 1, 1, 2]}),
            keys.AO_CHANGE_OF_BASIS: json.dumps({"0": [[1.0]], "1": np.eye(3).tolist(), "2": np.eye(5).tolist()}),
            keys.XC: "b3lyp"}
    store.write_records(out, records(["b"]), more)
    attrs = store.root_attrs(out)
    assert attrs[BASIS_SHELLS_ATTR] == more[BASIS_SHELLS_ATTR]
    assert attrs[keys.AO_CHANGE_OF_BASIS] == more[keys.AO_CHANGE_OF_BASIS]
    assert attrs[keys.XC] == "pbe"  # the level of theory is never overwritten


def test_layout_attrs_reuse_a_stored_change_of_basis_and_compute_a_missing_one():
    from eqchem.basis import change_of_basis_json

    shells = {8: [0, 0, 1, 1, 2], 1: [0, 0, 1]}
    stored = change_of_basis_json(range(4))
    a = store.layout_attrs(shells, stored)
    assert json.loads(a[BASIS_SHELLS_ATTR]) == {"1": [0, 0, 1], "8": [0, 0, 1, 1, 2]}
    assert json.loads(a[keys.AO_CHANGE_OF_BASIS]) == {str(l): v for l, v in json.loads(stored).items() if int(l) <= 2}
    b = store.layout_attrs(shells, change_of_basis_json(range(2)))  # lacks l = 2: computed
    assert json.loads(b[keys.AO_CHANGE_OF_BASIS]) == json.loads(change_of_basis_json(range(3)))


# ------------------------------------------------------------------------------------------------------------
# (b) kill -9 at a random moment of the write path
# ------------------------------------------------------------------------------------------------------------

N_KILL = 400
WRITER = """
import sys
from eqchem.data import store
sys.path.insert(0, {tests!r})
from test_store_scale import ATTRS, record

store.consolidate({out!r}, ATTRS)
present = set(store.file_keys({out!r}))
commit = store._commit

def announced(*a, **k):  # lets the test aim some kills at consolidations
    print("commit", flush=True)
    return commit(*a, **k)

store._commit = announced

def gen():
    for i in range({n}):
        k = f"k{{i:04d}}"
        if k not in present:
            yield k, record(k)
            print(k, flush=True)   # back here: the record was journaled (and consolidated if due)

store.write_records({out!r}, gen(), ATTRS, consolidate_every_n=3)
print("closed", flush=True)
"""


def _writer(out: Path) -> subprocess.Popen:
    code = WRITER.format(tests=str(Path(__file__).parent), n=N_KILL, out=str(out))
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})


def test_kill_9_at_random_moments_loses_at_most_the_structure_in_flight(tmp_path):
    rng = random.Random(7)
    out = tmp_path / "k.h5"
    all_keys = [f"k{i:04d}" for i in range(N_KILL)]
    finished: set[str] = set()
    for trial in range(8):
        proc = _writer(out)
        target = len(finished) + rng.randint(10, 50)
        seen = []
        while len(finished) + sum(k != "commit" for k in seen) < target or (trial % 2 and seen[-1] != "commit"):
            line = proc.stdout.readline()
            assert line, proc.stderr.read()
            seen.append(line.strip())
        # odd trials: a random moment of a consolidation (segment, index, rename, deletions); even: any moment
        time.sleep(rng.uniform(0.0, 0.015 if trial % 2 else 0.03))
        proc.send_signal(signal.SIGKILL)
        rest, _ = proc.communicate()
        finished |= {k for k in seen + rest.split() if k.startswith("k")}
        # the main file is readable and every structure in it complete, whatever the moment
        in_file = check_complete(out) if out.exists() else set()
        journaled = set(store.journal_keys(out))
        assert finished <= in_file | journaled
        # absorbing the journal keeps every finished structure and invents none
        store.consolidate(out, ATTRS)
        stored = check_complete(out)
        n = len(finished)
        assert set(all_keys[:n]) == finished and stored in (set(all_keys[:n]), set(all_keys[:n + 1]))
        finished = stored
    # the resumed writer writes only what is missing, and leaves no debris
    res = _writer(out).communicate(timeout=120)
    assert "closed" in res[0], res[1]
    assert [k for k in res[0].split() if k.startswith("k")] == all_keys[len(finished):]
    assert check_complete(out) == set(all_keys)
    assert not store.journal_dir(out).exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert set(segment_files(out)) == set(link_files(out).values())  # segments of killed consolidations removed


# ------------------------------------------------------------------------------------------------------------
# (c) guess files
# ------------------------------------------------------------------------------------------------------------

def _fake_guess(numbers, positions, basis, xc, kind="minao-fock", params=None):
    return np.full((NAO, NAO), float(np.asarray(positions).sum()))


def test_guess_appends_never_rewrite_stored_guesses(tmp_path, monkeypatch):
    import eqchem.dft.guess as guess
    from eqchem.data.guess_file import GuessFile, guess_path, present_keys
    from eqchem.dft.guess import write_guesses

    calls = []
    monkeypatch.setattr(guess, "guess_hamiltonian", lambda *a, **k: calls.append(a[1]) or _fake_guess(*a, **k))
    data = tmp_path / "d.h5"
    store.write_records(data, records([f"g{i:03d}" for i in range(30)]), ATTRS)
    assert write_guesses(data, "minao-fock") == (30, 0)
    gpath = guess_path(data)
    before = segment_files(gpath)
    where = link_files(gpath, keys.GUESS_HAMILTONIANS)
    assert before and set(where.values()) <= set(before)
    store.write_records(data, records([f"g{i:03d}" for i in range(36)]), ATTRS)
    calls.clear()
    assert write_guesses(data, "minao-fock") == (6, 30)
    assert len(calls) == 6
    after = segment_files(gpath)
    assert {p: after[p] for p in before} == before  # stored guesses untouched
    assert len(set(after) - set(before)) == 6  # one new segment per new guess
    assert {k: link_files(gpath, keys.GUESS_HAMILTONIANS)[k] for k in where} == where
    gf = GuessFile(data, "minao-fock")
    ds = H5Dataset(data)
    for k in ds.keys():
        assert np.array_equal(gf[k], _fake_guess(None, ds[k].positions, None, None))
    assert present_keys(data) == set(ds.keys())
    assert write_guesses(data, "minao-fock") == (0, 36)


# ------------------------------------------------------------------------------------------------------------
# (d) merge
# ------------------------------------------------------------------------------------------------------------

def test_merge_of_shards_gives_the_union_in_one_self_contained_file(tmp_path, monkeypatch):
    from eqchem.data.merge import merge

    a, b, c = tmp_path / "a.h5", tmp_path / "b.h5", tmp_path / "c.h5"
    store.write_records(a, records([f"m{i:02d}" for i in range(10)]), ATTRS, consolidate_every_n=2)
    store.save_part(a, "late", failure={keys.REASON: "SCF not converged", keys.SOURCE: "x.xyz"})
    store.consolidate(a, ATTRS)
    shifted = {f"m{i:02d}": record(f"m{i:02d}", energy_shift=1.0) for i in range(5, 15)}
    b_attrs = {**ATTRS, BASIS_SHELLS_ATTR: json.dumps({"1": [0], "8": [0, 0, 1], "16": [0, 0, 1, 1, 2]}),
               keys.AO_CHANGE_OF_BASIS: json.dumps({"2": np.eye(5).tolist()})}
    store.write_records(b, shifted.items(), b_attrs, consolidate_every_n=3)
    with h5py.File(c, "w") as f:  # a self-contained shard (older eqchem, or a merge output)
        for k, v in ATTRS.items():
            f.attrs[k] = v
        for k in ("late", "n1"):
            store.write_group(f.create_group(f"{keys.MOLECULES}/{k}"), record(k))

    opened = []
    real_file = h5py.File
    monkeypatch.setattr(h5py, "File", lambda name, *a, **k: opened.append(Path(name)) or real_file(name, *a, **k))
    report = merge([a, b, c], tmp_path / "m.h5")
    monkeypatch.undo()
    assert (report.molecules, report.failures, report.duplicates) == (17, 0, 5)
    segments = {p.resolve() for p in {**link_files(b), **link_files(a)}.values()}  # where the kept copies are
    assert sorted(p.resolve() for p in opened if p.parent.name.endswith(store.SEGMENT_DIR)) == sorted(segments)  # each once

    for p in tmp_path.iterdir():  # the result holds everything itself
        if p.is_dir():
            shutil.rmtree(p)
        elif p.name != "m.h5":
            p.unlink()
    expected = {**{f"m{i:02d}": record(f"m{i:02d}") for i in range(10)}, **{f"m{i:02d}": shifted[f"m{i:02d}"]
                for i in range(10, 15)}, "late": record("late"), "n1": record("n1")}
    assert check_complete(tmp_path / "m.h5", expected.__getitem__) == set(expected)
    with h5py.File(tmp_path / "m.h5", "r") as f:
        assert all(isinstance(f[keys.MOLECULES].get(k, getlink=True), h5py.HardLink) for k in f[keys.MOLECULES])
        assert not set(store.STORE_ATTRS) & set(f.attrs)
        assert sorted(json.loads(f.attrs[keys.AO_CHANGE_OF_BASIS]), key=int) == ["0", "1", "2"]
        assert json.loads(f.attrs[BASIS_SHELLS_ATTR])["16"] == [0, 0, 1, 1, 2]
    assert H5Dataset(tmp_path / "m.h5").failures == {}  # the success in c replaced a's failure
