"""`eqchem generate`: agreement with PySCF, the file format, reruns recompute nothing, resume after kill -9,
failures, bad input."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from eqchem import keys
from eqchem.data.reader import H5Dataset, atom_pair_blocks

from .conftest import WATER, WATER_LEVEL

WATER_XYZ = "3\nname=water\nO 0.0 0.0 0.1173\nH 0.0 0.7572 -0.4692\nH 0.0 -0.7572 -0.4692\n"


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def eqchem_cmd(*args) -> list[str]:
    return [sys.executable, "-m", "eqchem.cli", *map(str, args)]


def test_generate_matches_independent_pyscf(tmp_path, run_cli):
    from pyscf import dft, gto

    xyz = write(tmp_path / "water.xyz", WATER_XYZ)
    code, out = run_cli("generate", xyz, "--out", tmp_path / "d.h5", "--xc", "b3lyp", "--basis", "def2-svp")
    assert code == 0, out
    with h5py.File(tmp_path / "d.h5", "r") as f:
        for attr in (keys.FORMAT_VERSION_ATTR, keys.XC, keys.BASIS, keys.PYSCF_VERSION, keys.AO_CONVENTION):
            assert attr in f.attrs
        assert f.attrs[keys.AO_CONVENTION] == "pyscf" and f.attrs[keys.XC] == "b3lyp"
        # the parsed functional pins down what 'b3lyp' meant: libxc's B3LYP with 20 % exact exchange
        assert f.attrs[keys.XC_DESCRIPTION] == "HYB_GGA_XC_B3LYP (libxc 402) x1; exact exchange 0.2"
        g = f["molecules/water"]
        for name in (keys.ATOMIC_NUMBERS, keys.POSITIONS, keys.HAMILTONIAN, keys.OVERLAP, keys.DENSITY_MATRIX,
                     keys.ORBITAL_ENERGIES, keys.ORBITAL_COEFFICIENTS, keys.ENERGY, keys.DIPOLE):
            assert name in g, name
        for attr in (keys.CHARGE, keys.SPIN, keys.CONVERGED, keys.SCF_CYCLES, keys.SOURCE):
            assert attr in g.attrs, attr
        h, s, p, e = (np.asarray(g[k]) for k in (keys.HAMILTONIAN, keys.OVERLAP, keys.DENSITY_MATRIX, keys.ENERGY))
        assert g[keys.POSITIONS].dtype == np.float64 and np.allclose(g[keys.POSITIONS], WATER[1])
    mol = gto.M(atom=[[z, r] for z, r in zip(*WATER)], basis="def2-svp", unit="Angstrom", verbose=0)
    mf = dft.RKS(mol)
    mf.xc, mf.grids.level, mf.conv_tol = "b3lyp", 3, 1e-10
    mf.kernel()
    assert np.abs(s - mol.intor("int1e_ovlp")).max() < 1e-8
    assert np.abs(h - mf.get_fock()).max() < 1e-6
    assert np.abs(p - mf.make_rdm1()).max() < 1e-6
    assert abs(e - mf.e_tot) < 1e-8
    # the reader cuts matrices into atom-pair blocks
    ds = H5Dataset(tmp_path / "d.h5")
    rec = ds["water"]
    blocks = atom_pair_blocks(rec.hamiltonian, rec.numbers, ds.basis_shells())
    assert blocks[(0, 0)].shape == (14, 14) and blocks[(0, 1)].shape == (14, 5) and blocks[(2, 1)].shape == (5, 5)
    assert np.allclose(blocks[(1, 0)], blocks[(0, 1)].T)
    code, out = run_cli("info", tmp_path / "d.h5")
    assert code == 0 and "b3lyp" in out and "structures" in out


def test_unrestricted_forces_and_density_fit_coefficients(tmp_path, run_cli):
    xyz = write(tmp_path / "oh.xyz", "2\nname=hydroxyl\nO 0 0 0\nH 0 0 0.97\n")
    code, out = run_cli("generate", xyz, "--out", tmp_path / "oh.h5", "--basis", "sto-3g", "--xc", "pbe")
    assert code == 2 and "odd number of electrons" in out and "--spin" in out
    code, out = run_cli("generate", xyz, "--out", tmp_path / "oh.h5", "--basis", "sto-3g", "--xc", "pbe",
                        "--spin", "1", "--conv-tol", "1e-8", "--forces", "--density-coefficients", "def2-universal-jkfit")
    assert code == 0, out
    rec = H5Dataset(tmp_path / "oh.h5")["hydroxyl"]
    assert rec.hamiltonian.shape == (2, 6, 6) and rec.attrs[keys.SPIN] == 1
    with h5py.File(tmp_path / "oh.h5", "r") as f:
        g = f["molecules/hydroxyl"]
        assert g[keys.FORCES].shape == (2, 3)
        assert np.allclose(np.asarray(g[keys.FORCES]).sum(0), 0, atol=1e-3)  # no net force
        assert len(g[keys.DENSITY_COEFFICIENTS]) == 2


def test_failures_are_recorded_and_the_run_goes_on(tmp_path, run_cli):
    frames = (WATER_XYZ + "2\nname=rubidium_hydride\nRb 0 0 0\nH 0 0 2.4\n"
              + "3\nname=bent\nO 0.0 0.0 0.0\nH 0.0 0.8 -0.5\nH 0.0 -0.8 -0.5\n")
    xyz = write(tmp_path / "mix.xyz", frames)
    out_h5 = tmp_path / "mix.h5"
    code, out = run_cli("generate", xyz, "--out", out_h5, "--basis", "6-31g", "--xc", "pbe", "--max-cycles", "2")
    assert code == 1, out
    assert "failed" in out
    ds = H5Dataset(out_h5)
    assert set(ds.failures) == {"water", "rubidium_hydride", "bent"}
    assert "not converged" in ds.failures["water"] and "not converged" not in ds.failures["rubidium_hydride"]
    # retry the failures with enough cycles: water and bent now succeed, RbH (no 6-31G basis) fails again
    code, out = run_cli("generate", xyz, "--out", out_h5, "--basis", "6-31g", "--xc", "pbe", "--retry-failed")
    assert code == 1, out
    ds = H5Dataset(out_h5)
    assert ds.keys() == ["bent", "water"] and list(ds.failures) == ["rubidium_hydride"]


def test_level_of_theory_mismatch_is_refused(tmp_path, run_cli):
    xyz = write(tmp_path / "w.xyz", WATER_XYZ)
    assert run_cli("generate", xyz, "--out", tmp_path / "w.h5", "--basis", "sto-3g", "--xc", "pbe")[0] == 0
    code, out = run_cli("generate", xyz, "--out", tmp_path / "w.h5", "--basis", "def2-svp", "--xc", "pbe")
    assert code == 2 and "basis" in out


def _frames(n: int) -> str:
    rng = np.random.default_rng(3)
    out = []
    for k in range(n):
        pos = np.asarray(WATER[1]) + rng.normal(scale=0.05, size=(3, 3))
        out.append(f"3\nname=w{k:02d}\n" + "".join(f"{s} {x:.6f} {y:.6f} {z:.6f}\n" for s, (x, y, z) in zip("OHH", pos)))
    return "".join(out)


def _summary(out: str) -> dict[str, int]:
    """The counts ``eqchem generate`` prints: structures read, already in the file, computed, skipped, failed."""
    text = re.sub(r"\s+", " ", out)  # the console may wrap long lines
    start = re.search(r"(\d+) structures read; (\d+) already in ", text)
    end = re.search(r"(\d+) computed, (\d+) skipped \(already done\), (\d+) failed", text)
    assert start and end, out
    return dict(zip(("read", "already", "computed", "skipped", "failed"), map(int, start.groups() + end.groups())))


def _stored(path: Path) -> dict[str, tuple]:
    """Per finished structure of a data file (or journal part): its ``seconds`` and the raw bytes of every dataset."""
    out = {}
    with h5py.File(path, "r") as f:
        for key, g in f.get(keys.MOLECULES, {}).items():
            arrays = {name: (g[name].dtype.str, g[name].shape, g[name][()].tobytes())
                      for name in g if isinstance(g[name], h5py.Dataset)}
            out[key] = (float(g.attrs[keys.SECONDS]), arrays)
    return out


@pytest.fixture
def dft_calls(monkeypatch):
    """Names of the structures `eqchem generate` (in-process, one worker) hands to PySCF."""
    import eqchem.dft.generate as gen

    calls: list[str] = []
    real = gen.run_dft

    def spy(structure, settings):
        calls.append(structure.name)
        return real(structure, settings)

    monkeypatch.setattr(gen, "run_dft", spy)
    return calls


def test_rerun_of_the_same_command_recomputes_nothing(tmp_path, run_cli, dft_calls):
    xyz = write(tmp_path / "frames.xyz", _frames(3))
    cmd = ("generate", xyz, "--out", tmp_path / "d.h5", *WATER_LEVEL)
    code, out = run_cli(*cmd)
    assert code == 0, out
    assert _summary(out) == dict(read=3, already=0, computed=3, skipped=0, failed=0)
    assert sorted(dft_calls) == ["w00", "w01", "w02"]
    before = _stored(tmp_path / "d.h5")
    assert sorted(before) == ["w00", "w01", "w02"] and all(sec > 0 for sec, _ in before.values())
    dft_calls.clear()
    code, out = run_cli(*cmd)
    assert code == 0, out
    assert _summary(out) == dict(read=3, already=3, computed=0, skipped=3, failed=0)
    assert dft_calls == []  # PySCF never ran
    assert _stored(tmp_path / "d.h5") == before  # same wall times, bit-identical matrices


def test_rerun_with_more_inputs_computes_only_the_new_ones(tmp_path, run_cli, dft_calls):
    first, more = write(tmp_path / "a.xyz", _frames(3)), write(tmp_path / "b.xyz", _frames(4))
    assert more.read_text().startswith(first.read_text())  # a superset: the same three frames, then w03
    code, out = run_cli("generate", first, "--out", tmp_path / "d.h5", *WATER_LEVEL)
    assert code == 0, out
    before = _stored(tmp_path / "d.h5")
    dft_calls.clear()
    code, out = run_cli("generate", more, "--out", tmp_path / "d.h5", *WATER_LEVEL)
    assert code == 0, out
    assert _summary(out) == dict(read=4, already=3, computed=1, skipped=3, failed=0)
    assert dft_calls == ["w03"]
    after = _stored(tmp_path / "d.h5")
    assert sorted(after) == ["w00", "w01", "w02", "w03"]
    assert {k: after[k] for k in before} == before
    seconds, arrays = after["w03"]
    assert seconds > 0 and keys.HAMILTONIAN in arrays and arrays[keys.HAMILTONIAN][1] == (7, 7)
    assert H5Dataset(tmp_path / "d.h5").keys() == ["w00", "w01", "w02", "w03"]


def test_resume_after_kill_keeps_finished_work(tmp_path):
    xyz = write(tmp_path / "frames.xyz", _frames(12))
    out_h5 = tmp_path / "r.h5"
    args = eqchem_cmd("generate", xyz, "--out", out_h5, "--basis", "def2-svp", "--xc", "b3lyp", "--workers", "1")
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    parts = Path(str(out_h5) + ".parts")
    deadline = time.time() + 120
    while time.time() < deadline and len(list(parts.glob("*.h5"))) < 3:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    finished = {}  # what the killed run finished: journal parts, and whatever reached the main file
    for part in parts.glob("*.h5"):
        finished.update(_stored(part))
    if out_h5.exists():  # whatever state the main file is in, it is readable
        H5Dataset(out_h5)
        finished.update(_stored(out_h5))
    assert len(finished) >= 3
    res = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    n = len(finished)
    assert _summary(res.stdout) == dict(read=12, already=n, computed=12 - n, skipped=n, failed=0)
    ds = H5Dataset(out_h5)
    assert ds.keys() == [f"w{k:02d}" for k in range(12)]
    assert not parts.exists()
    after = _stored(out_h5)  # finished structures were kept as they were, not recomputed
    assert {k: after[k] for k in finished} == finished


def test_shards_and_merge(tmp_path, run_cli):
    xyz = write(tmp_path / "frames.xyz", _frames(5))
    common = ["--basis", "sto-3g", "--xc", "pbe"]
    for i in (1, 2):
        assert run_cli("generate", xyz, "--out", tmp_path / f"s{i}.h5", "--shard", f"{i}/2", *common)[0] == 0
    assert len(H5Dataset(tmp_path / "s1.h5")) == 3 and len(H5Dataset(tmp_path / "s2.h5")) == 2
    code, out = run_cli("merge", tmp_path / "s1.h5", tmp_path / "s2.h5", tmp_path / "s1.h5", "--out", tmp_path / "m.h5")
    assert code == 0, out
    ds = H5Dataset(tmp_path / "m.h5")
    assert ds.keys() == [f"w{k:02d}" for k in range(5)]
    assert "3 duplicate" in out
    # failures are kept by merge
    bad = write(tmp_path / "bad.xyz", "2\nname=rbh\nRb 0 0 0\nH 0 0 2.4\n")
    assert run_cli("generate", bad, "--out", tmp_path / "f.h5", "--basis", "6-31g", "--xc", "pbe")[0] == 1
    assert run_cli("generate", xyz, "--out", tmp_path / "g.h5", "--basis", "6-31g", "--xc", "pbe", "--shard", "1/5")[0] == 0
    code, out = run_cli("merge", tmp_path / "f.h5", tmp_path / "g.h5", "--out", tmp_path / "fm.h5")
    assert code == 0 and list(H5Dataset(tmp_path / "fm.h5").failures) == ["rbh"]
    # mismatched level of theory is refused
    code, out = run_cli("merge", tmp_path / "s1.h5", tmp_path / "g.h5", "--out", tmp_path / "x.h5")
    assert code == 2 and "basis" in out and not (tmp_path / "x.h5").exists()


@pytest.mark.parametrize("content,needle", [
    (None, "file not found"),
    ("3\nwater\nO 0 0 0\nH 0 0 1\n", "line"),                 # too few atom lines
    ("2\nx\nO 0 0 0\nXx 0 0 1\n", "unknown element"),
    ("2\nx\nO 0 0 0\nO 0 0 0.05\n", "overlapping"),
    ("2\nx\nO 0 0 0\nH 0 0 1\n", "odd number of electrons"),
])
def test_bad_input_gives_one_clear_line(tmp_path, run_cli, content, needle):
    path = tmp_path / "in.xyz"
    if content is not None:
        path.write_text(content)
    code, out = run_cli("generate", path, "--out", tmp_path / "o.h5")
    assert code != 0
    assert needle in out.lower()
    assert "Traceback" not in out and len(out.strip().splitlines()) <= 2
    assert not (tmp_path / "o.h5").exists()


def test_unknown_basis_is_one_clear_line(tmp_path, run_cli):
    xyz = write(tmp_path / "w.xyz", WATER_XYZ)
    code, out = run_cli("generate", xyz, "--out", tmp_path / "o.h5", "--basis", "not-a-basis")
    assert code == 2 and "unknown basis" in out and "Traceback" not in out
    assert not (tmp_path / "o.h5").exists()


def test_cli_version_and_help(run_cli):
    code, out = run_cli("--version")
    assert code == 0 and "eqchem" in out
    for cmd in ("generate", "train", "predict", "diagonalize", "evaluate", "merge", "info"):
        code, out = run_cli(cmd, "--help")
        assert code == 0 and "Usage" in out, cmd


def _root(path: Path) -> dict:
    with h5py.File(path, "r") as f:
        return {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}


def _hamiltonian(path: Path, key: str = "water") -> np.ndarray:
    with h5py.File(path, "r") as f:
        return f[f"{keys.MOLECULES}/{key}/{keys.HAMILTONIAN}"][()]


def test_fast_labels_preset_is_its_flags_and_the_shared_data_recipe(tmp_path, run_cli):
    from pyscf import dft, gto

    xyz = write(tmp_path / "water.xyz", WATER_XYZ)
    level = ("--xc", "b3lyp", "--basis", "sto-3g")
    code, out = run_cli("generate", xyz, "--out", tmp_path / "preset.h5", *level, "--preset", "fast-labels")
    assert code == 0 and "fast-labels label settings" in out, out
    # the flags the shared data's README names (PySCF's default auxiliary basis: def2-universal-jkfit here)
    code, out = run_cli("generate", xyz, "--out", tmp_path / "flags.h5", *level, "--density-fit", "--grid-level", "1",
                        "--conv-tol", "1e-8")
    assert code == 0, out
    h = _hamiltonian(tmp_path / "preset.h5")
    assert np.array_equal(h, _hamiltonian(tmp_path / "flags.h5"))  # bit for bit
    for path in ("preset.h5", "flags.h5"):  # the preset's name is recorded either way
        attrs = _root(tmp_path / path)
        assert attrs[keys.LABEL_PRESET] == "fast-labels" and attrs[keys.AUXBASIS] == "def2-universal-jkfit"
        assert attrs[keys.GRIDS_LEVEL] == 1 and attrs[keys.CONV_TOL] == 1e-8 and attrs[keys.DENSITY_FIT]
    mol = gto.M(atom=[[z, r] for z, r in zip(*WATER)], basis="sto-3g", unit="Angstrom", verbose=0)
    mf = dft.RKS(mol).density_fit(auxbasis="def2-universal-jkfit")
    mf.xc, mf.grids.level, mf.conv_tol, mf.max_cycle = "b3lyp", 1, 1e-8, 100
    mf.kernel()
    assert np.abs(h - mf.get_fock()).max() < 1e-7


def test_label_preset_of_data_written_without_one(tmp_path, run_cli):
    xyz = write(tmp_path / "water.xyz", WATER_XYZ)
    assert run_cli("generate", xyz, "--out", tmp_path / "default.h5", "--xc", "pbe", "--basis", "sto-3g")[0] == 0
    assert run_cli("generate", xyz, "--out", tmp_path / "custom.h5", *WATER_LEVEL)[0] == 0
    assert _root(tmp_path / "default.h5")[keys.LABEL_PRESET] == "reference"  # the defaults are the reference preset
    assert _root(tmp_path / "default.h5")[keys.AUXBASIS] == ""
    assert _root(tmp_path / "custom.h5")[keys.LABEL_PRESET] == ""
    # --preset reference and its flags restated add to the default file: the same settings
    code, out = run_cli("generate", xyz, "--out", tmp_path / "default.h5", "--xc", "pbe", "--basis", "sto-3g",
                        "--preset", "reference", "--grid-level", "3")
    assert code == 0 and _summary(out)["already"] == 1, out


@pytest.mark.parametrize("flags,needle", [
    (("--preset", "fast-labels", "--grid-level", "3"), "--preset fast-labels sets --grid-level 1, which --grid-level 3"),
    (("--preset", "fast-labels", "--conv-tol", "1e-10"), "--preset fast-labels sets --conv-tol 1e-08"),
    (("--preset", "fast-labels", "--auxbasis", "def2-universal-jfit"), "--auxbasis def2-universal-jfit contradicts"),
    (("--preset", "reference", "--density-fit"), "--preset reference sets no density fitting, which --density-fit"),
    (("--preset", "reference", "--auxbasis", "weigend"), "--auxbasis weigend contradicts"),
    (("--preset", "fast"), "unknown --preset 'fast' (known: fast-labels, reference)"),
    (("--auxbasis", "weigend"), "--auxbasis weigend needs --density-fit"),
])
def test_flags_contradicting_a_preset_are_one_clear_line(tmp_path, run_cli, flags, needle):
    xyz = write(tmp_path / "water.xyz", WATER_XYZ)
    code, out = run_cli("generate", xyz, "--out", tmp_path / "o.h5", "--basis", "sto-3g", *flags)
    assert code == 2 and needle in re.sub(r"\s+", " ", out), out
    assert len(out.strip().splitlines()) == 1 and not (tmp_path / "o.h5").exists()


def test_unknown_auxiliary_basis_is_one_clear_line(tmp_path, run_cli):
    xyz = write(tmp_path / "w.xyz", WATER_XYZ)
    code, out = run_cli("generate", xyz, "--out", tmp_path / "o.h5", "--basis", "sto-3g", "--density-fit",
                        "--auxbasis", "no-such-jkfit")
    assert code == 2 and "unknown basis set 'no-such-jkfit'" in out and "Traceback" not in out
    assert not (tmp_path / "o.h5").exists()


def test_other_label_settings_are_not_added_to_a_file(tmp_path, run_cli):
    xyz = write(tmp_path / "water.xyz", WATER_XYZ)
    level = ("--xc", "pbe", "--basis", "sto-3g")
    assert run_cli("generate", xyz, "--out", tmp_path / "fast.h5", *level, "--preset", "fast-labels")[0] == 0
    # the same grid, conv_tol and density fitting, another auxiliary basis: refused by generate
    code, out = run_cli("generate", xyz, "--out", tmp_path / "fast.h5", *level, "--density-fit", "--auxbasis",
                        "weigend", "--grid-level", "1", "--conv-tol", "1e-8")
    assert code == 2 and "auxbasis='def2-universal-jkfit'" in out and "auxbasis='def2-universal-jfit'" in out, out
    # and the reference preset's file is not merged with the fast one
    assert run_cli("generate", xyz, "--out", tmp_path / "ref.h5", *level, "--preset", "reference")[0] == 0
    code, out = run_cli("merge", tmp_path / "fast.h5", tmp_path / "ref.h5", "--out", tmp_path / "m.h5")
    assert code == 2 and not (tmp_path / "m.h5").exists(), out


def test_merge_refuses_another_auxiliary_basis(tmp_path, run_cli):
    xyz = write(tmp_path / "water.xyz", WATER_XYZ)
    level = ("--xc", "pbe", "--basis", "sto-3g", "--density-fit", "--grid-level", "1", "--conv-tol", "1e-8")
    assert run_cli("generate", xyz, "--out", tmp_path / "a.h5", *level, "--auxbasis", "def2-universal-jkfit")[0] == 0
    assert run_cli("generate", xyz, "--out", tmp_path / "b.h5", *level, "--auxbasis", "weigend")[0] == 0
    code, out = run_cli("merge", tmp_path / "a.h5", tmp_path / "b.h5", "--out", tmp_path / "m.h5")
    assert code == 2 and "auxbasis" in out
