"""Streaming training data: structures are read and converted per item (also in DataLoader workers) and give
exactly the samples of the eager path; statistics from one streaming pass equal the in-memory ones; the
data index is cached and invalidated; the cache is bounded; training needs no PySCF when the data carry the
AO change of basis."""
from __future__ import annotations

import os
import subprocess
import sys

import h5py
import numpy as np
import pytest
import torch

from eqchem import keys
from eqchem.basis import BasisLayout, change_of_basis_json
from eqchem.data.merge import merge
from eqchem.data.reader import H5Dataset
from eqchem.model.blocks import AOConverter
from eqchem.training.data import BlockDataset, SpectralSettings, collate, make_sample

from .conftest import generate_water_set

TINY = "model: {hidden: '16,8,4', pair_channels: '4,2,2', diag_channels: 4}\n"


@pytest.fixture(scope="module")
def water(tmp_path_factory):
    """Water + 9 jittered frames (PBE/STO-3G) whose file carries the AO change of basis."""
    d = tmp_path_factory.mktemp("streaming")
    path = generate_water_set(d, samples=9, seed=5)
    with h5py.File(path, "a") as f:
        if keys.AO_CHANGE_OF_BASIS not in f.attrs:
            f.attrs[keys.AO_CHANGE_OF_BASIS] = change_of_basis_json(range(3))
    (d / "tiny.yaml").write_text(TINY)
    return path


def _layout(ds: H5Dataset) -> BasisLayout:
    shells = ds.basis_shells()
    return BasisLayout(basis=ds.basis, elements=tuple(sorted(shells)), shells={z: tuple(v) for z, v in shells.items()})


def _equal(a, b) -> None:
    assert a.key == b.key
    for f in ("numbers", "pos", "pair_index", "diag", "offd", "diag_mask", "offd_mask"):
        x, y = getattr(a, f), getattr(b, f)
        assert x.dtype == y.dtype and np.array_equal(x, y), f
    if a.spectral is not None:
        for f in ("y", "a", "eps"):
            assert np.array_equal(getattr(a.spectral, f), getattr(b.spectral, f)), f


@pytest.mark.parametrize("spectral", [None, SpectralSettings(1, 0.0)])
def test_streamed_samples_are_exactly_the_eager_ones(water, spectral):
    ds = H5Dataset(water)
    layout = _layout(ds)
    eager_conv = AOConverter(layout)  # the change of basis computed with PySCF, records read whole
    eager = [make_sample(ds[k], eager_conv, 20.0, "hamiltonian", None, spectral) for k in ds.keys()]
    streamed = BlockDataset([(ds, k) for k in ds.keys()], layout, 20.0, cache_mb=0, spectral=spectral,
                            change_of_basis=ds.change_of_basis())
    assert len(streamed) == len(eager)
    for i, s in enumerate(eager):
        _equal(streamed[i], s)
    assert not streamed.cache  # cache_mb=0 keeps nothing
    # the same batches through DataLoader workers (each opens the file itself)
    loader = torch.utils.data.DataLoader(streamed, batch_size=3, collate_fn=collate, num_workers=2)
    for b, batch in enumerate(loader):
        ref = collate(eager[3 * b:3 * b + 3])
        for k, v in ref.items():
            if torch.is_tensor(v):
                assert torch.equal(batch[k], v), k


def test_cache_is_bounded(water):
    ds = H5Dataset(water)
    layout = _layout(ds)
    full = BlockDataset([(ds, k) for k in ds.keys()], layout, 20.0, cache_mb=None)
    for i in range(len(full)):
        full[i]
    assert len(full.cache) == len(ds)
    budget = 2.5 * full._cached_bytes / len(ds) / 2**20  # room for about two samples
    small = BlockDataset([(ds, k) for k in ds.keys()], layout, 20.0, cache_mb=budget)
    for i in range(len(small)):
        small[i]
    assert 1 <= len(small.cache) <= 3 and small._cached_bytes <= budget * 2**20
    _equal(small[len(ds) - 1], full[len(ds) - 1])  # a miss reads the file again


def test_streamed_statistics_equal_the_in_memory_ones(water):
    from eqchem.model.config import ModelConfig
    from eqchem.model.hamiltonian import build_model
    from eqchem.training.stats import OutputStatistics

    ds = H5Dataset(water)
    layout = _layout(ds)
    samples = list(BlockDataset([(ds, k) for k in ds.keys()], layout, 3.0))  # 3 Å: some pairs left out
    cfg = ModelConfig(hidden="8,4", pair_channels="4,2", diag_channels=2)
    ref, new = build_model(layout, cfg, dtype=torch.float64), build_model(layout, cfg, dtype=torch.float64)
    ref.set_output_statistics(torch.from_numpy(np.concatenate([s.diag for s in samples])),
                              ref.species_of_z[torch.from_numpy(np.concatenate([s.numbers for s in samples]))],
                              torch.from_numpy(np.concatenate([s.offd for s in samples])))
    stats = OutputStatistics(layout, 5.0)
    for s in samples:
        stats.add(s)
    stats.apply(new)
    for name in ("diag_shift", "diag_scale", "offd_scale"):
        assert torch.allclose(getattr(new, name), getattr(ref, name), rtol=1e-10, atol=1e-14), name
    counts = [((np.linalg.norm(s.pos[:, None] - s.pos[None], axis=-1) < 5.0).sum(1) - 1).mean() for s in samples]
    assert stats.avg_neighbors == pytest.approx(max(1.0, np.mean(counts)))


def test_data_index_is_cached_next_to_the_data_and_invalidated(water, tmp_path, monkeypatch):
    from eqchem.training import index as index_mod
    from eqchem.training.data import molecule_identity

    data = tmp_path / "w.h5"
    merge([water], data)  # a self-contained copy (an index alone would lack its segments)
    ds = H5Dataset(data)
    idx, at = index_mod.load_index(ds, tmp_path / "run")
    assert at == tmp_path / ("w.h5" + index_mod.INDEX_SUFFIX) and at.exists()
    with h5py.File(data, "r") as f:
        for i, k in enumerate(ds.keys()):
            g = f[keys.MOLECULES][k]
            attrs = {a: (v.decode() if isinstance(v, bytes) else v) for a, v in g.attrs.items()}
            z = np.asarray(g[keys.ATOMIC_NUMBERS]).astype(np.int64)
            assert idx.keys[i] == k and idx.identity[i] == molecule_identity(attrs, z, k)
            assert np.array_equal(idx.numbers_of(i), z) and idx.charge[i] == int(attrs.get(keys.CHARGE, 0))

    def no_build(ds_):
        raise AssertionError("the cached index should have been used")

    monkeypatch.setattr(index_mod, "build_index", no_build)
    again, _ = index_mod.load_index(H5Dataset(data), tmp_path / "run")
    assert np.array_equal(again.identity, idx.identity)
    st = data.stat()
    os.utime(data, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # the data file changed: rebuilt
    monkeypatch.undo()
    calls = []
    monkeypatch.setattr(index_mod, "build_index", lambda d: calls.append(1) or index_mod.FileIndex(**idx.arrays()))
    index_mod.load_index(H5Dataset(data), tmp_path / "run")
    assert calls == [1]
    # a folder that cannot be written: the index goes to the run directory
    ro = tmp_path / "ro"
    ro.mkdir()
    merge([water], ro / "w.h5")
    ro.chmod(0o555)
    try:
        if os.access(ro, os.W_OK):
            pytest.skip("running as a user that can write anywhere")
        _, at = index_mod.load_index(H5Dataset(ro / "w.h5"), tmp_path / "run")
        assert at is not None and at.parent == tmp_path / "run" / "data_index"
    finally:
        ro.chmod(0o755)


NO_PYSCF = ("import sys; sys.modules['pyscf'] = None\n"
            "from eqchem.cli.main import app\n"
            "app(sys.argv[1:], prog_name='eqchem')\n")


def _run_without_pyscf(*args, cwd=None):
    """The CLI as on a machine without PySCF: in this process and in any it spawns (a ``pyscf`` package
    first on the path that fails to import, as a missing one does)."""
    import tempfile

    with tempfile.TemporaryDirectory() as stub:
        os.mkdir(os.path.join(stub, "pyscf"))
        with open(os.path.join(stub, "pyscf", "__init__.py"), "w") as f:
            f.write("raise ModuleNotFoundError(\"No module named 'pyscf'\", name='pyscf')\n")
        path = os.pathsep.join(p for p in (stub, os.environ.get("PYTHONPATH")) if p)
        return subprocess.run([sys.executable, "-c", NO_PYSCF, *map(str, args)], capture_output=True, text=True,
                              timeout=600, cwd=cwd, env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": path})


def test_training_needs_no_pyscf_when_the_data_carry_the_change_of_basis(water, tmp_path):
    d = water.parent
    res = _run_without_pyscf("train", water, "--out", tmp_path / "m.pt", "--max-epochs", "2", "--batch-size", "4",
                             "--config", d / "tiny.yaml", "--run-dir", tmp_path / "run", "--profile")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    out = res.stdout
    assert "first optimizer step after" in out
    assert "step profile (" in out and "forward" in out and "backward" in out and "optimizer" in out, out
    assert any(ln.startswith("epoch 2/2") and "data " in ln and "backward " in ln for ln in out.splitlines()), out
    blob = torch.load(tmp_path / "m.pt", weights_only=True)
    assert keys.AO_CHANGE_OF_BASIS in blob  # the model file carries the matrices too
    code = ("import sys; sys.modules['pyscf'] = None\nimport numpy as np, eqchem\n"
            f"m = eqchem.load_model({str(tmp_path / 'm.pt')!r})\n"
            "from eqchem.basis import change_of_basis_from_json\n"
            "print(sorted(m.change_of_basis), m.converter.q[8].shape)\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0 and "[0, 1] (5, 5)" in res.stdout, res.stderr[-2000:]


def test_old_data_without_the_change_of_basis_and_without_pyscf_is_one_clear_error(water, tmp_path):
    old = tmp_path / "old.h5"
    merge([water], old)
    with h5py.File(old, "a") as f:
        del f.attrs[keys.AO_CHANGE_OF_BASIS]
    res = _run_without_pyscf("train", old, "--out", tmp_path / "x.pt", "--max-epochs", "1")
    assert res.returncode != 0
    lines = (res.stdout + res.stderr).strip().splitlines()
    assert len(lines) == 1 and keys.AO_CHANGE_OF_BASIS in lines[0] and "PySCF" in lines[0], lines
    assert "Traceback" not in res.stderr and not (tmp_path / "x.pt").exists()


def test_max_time_is_a_budget_for_the_whole_run(water, run_cli, tmp_path):
    """A budget spent before the first step ends: one step, then the validation and refit that follow."""
    code, out = run_cli("train", water, "--out", tmp_path / "b.pt", "--max-epochs", "50", "--max-time", "0.001",
                        "--batch-size", "2", "--config", water.parent / "tiny.yaml", "--run-dir", tmp_path / "run")
    assert code == 0, out
    assert "stopped: reached --max-time 0.001 min" in out and "kept for the last validation and readout refit" in out
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=False, map_location="cpu")
    assert ckpt["global_step"] == 1


def test_predict_without_pyscf_is_one_line_naming_it(tmp_path):
    """Prediction needs PySCF's integrals even in fast mode (S, T, V, the core-j Coulomb matrix): without
    PySCF it stops with one line that says so, and writes nothing."""
    xyz = tmp_path / "w.xyz"
    xyz.write_text("3\n\nO 0 0 0.1173\nH 0 0.7572 -0.4692\nH 0 -0.7572 -0.4692\n")
    res = _run_without_pyscf("predict", "--mode", "fast", xyz, "--out", tmp_path / "r.json")
    lines = (res.stdout + res.stderr).strip().splitlines()
    assert res.returncode != 0 and len(lines) == 1 and "PySCF" in lines[0] and "pip install" in lines[0], lines
    assert not (tmp_path / "r.json").exists()
