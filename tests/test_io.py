"""Readers, writer and off-equilibrium sampling of eqchem.io."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from eqchem.errors import InputError
from eqchem.io import (
    Structure,
    gaussian_jitter,
    normal_mode_samples,
    read_sdf,
    read_smiles,
    read_smiles_file,
    read_structures,
    read_xyz,
    write_xyz,
)
from eqchem.io.sampling import WAVENUMBER_PER_SQRT_EIGENVALUE, harmonic_modes

EXAMPLES = Path(__file__).resolve().parents[1] / "datasets" / "examples"

WATER = """3
water molecule
O   0.000000   0.000000   0.117300
H   0.000000   0.757200  -0.469200
H   0.000000  -0.757200  -0.469200
"""


def _frame(comment: str, shift: float = 0.0) -> str:
    return WATER.replace("water molecule", comment).replace("0.117300", f"{0.1173 + shift:.6f}")


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _min_distance(positions: np.ndarray) -> float:
    d = np.linalg.norm(positions[:, None] - positions[None], axis=-1)
    return float(d[~np.eye(len(d), dtype=bool)].min())


def _rms_displacement(a: Structure, b: Structure) -> float:
    return float(np.sqrt(((a.positions - b.positions) ** 2).sum(1).mean()))


def _error(func, *args, **kwargs) -> str:
    with pytest.raises(InputError) as info:
        func(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message, "error messages are one line"
    return message


# ----------------------------------------------------------------------------------------------------------------------
# xyz
# ----------------------------------------------------------------------------------------------------------------------

def test_read_xyz_single_frame(tmp_path):
    path = _write(tmp_path, "h2o.xyz", WATER)
    (s,) = read_xyz(path)
    assert s.name == "h2o" and s.source == str(path)
    assert s.numbers.tolist() == [8, 1, 1]
    assert s.positions.shape == (3, 3)
    np.testing.assert_allclose(s.positions[1], [0.0, 0.7572, -0.4692])
    assert s.charge == 0 and s.spin is None
    assert s.info["comment"] == "water molecule"


def test_read_xyz_multi_frame(tmp_path):
    path = _write(tmp_path, "traj.xyz", _frame("a") + "\n" + _frame("b", 0.01) + _frame("c", 0.02) + "\n\n")
    frames = read_xyz(path)
    assert [s.name for s in frames] == ["traj_0", "traj_1", "traj_2"]
    assert [s.source for s in frames] == [f"{path}#{i}" for i in range(3)]
    np.testing.assert_allclose([s.positions[0, 2] for s in frames], [0.1173, 0.1273, 0.1373])


def test_read_extxyz_charge_spin_and_properties(tmp_path):
    text = (
        "3\n"
        'Properties=species:S:1:pos:R:3:forces:R:3 charge=1 spin=1 energy=-76.1 pbc="F F F"\n'
        "O 0.0 0.0 0.1173 0.1 0.2 0.3\n"
        "H 0.0 0.7572 -0.4692 0.0 0.0 0.0\n"
        "H 0.0 -0.7572 -0.4692 0.0 0.0 0.0\n"
    )
    (s,) = read_structures(_write(tmp_path, "cation.extxyz", text))
    assert (s.charge, s.spin) == (1, 1)
    assert s.info["energy"] == "-76.1"
    np.testing.assert_allclose(s.positions[0], [0.0, 0.0, 0.1173])


def test_extxyz_multiplicity_and_column_order(tmp_path):
    text = "3\nProperties=pos:R:3:species:S:1 multiplicity=2 charge=-1\n0 0 0.1173 O\n0 0.7572 -0.4692 H\n0 -0.7572 -0.4692 H\n"
    (s,) = read_structures(_write(tmp_path, "anion.xyz", text))
    assert (s.charge, s.spin) == (-1, 1)
    assert s.numbers.tolist() == [8, 1, 1]


def test_extxyz_written_by_ase(tmp_path):
    ase_io = pytest.importorskip("ase.io")
    from ase import Atoms

    atoms = Atoms("OH2", positions=[[0, 0, 0.1173], [0, 0.7572, -0.4692], [0, -0.7572, -0.4692]])
    atoms.info["charge"] = -1
    atoms.info["spin"] = 1
    path = tmp_path / "ase.extxyz"
    ase_io.write(path, [atoms, atoms], format="extxyz")
    frames = read_structures(path)
    assert len(frames) == 2 and all((s.charge, s.spin) == (-1, 1) for s in frames)
    np.testing.assert_allclose(frames[1].positions, atoms.positions)


def test_qm9_style_exponents(tmp_path):
    text = "2\n\nH 0.0 0.0 -3.7*^-1\nH 0.0 0.0 3.7D-01\n"
    (s,) = read_xyz(_write(tmp_path, "h2.xyz", text))
    np.testing.assert_allclose(s.positions[:, 2], [-0.37, 0.37])


def test_write_xyz_roundtrip(tmp_path):
    structures = [
        Structure([8, 1, 1], [[0, 0, 0.1173], [0, 0.7572, -0.4692], [0, -0.7572, -0.4692]], name="w=1 (a)"),
        Structure([8, 1], [[0, 0, 0], [0, 0, 0.97]], charge=0, spin=1, name="OH"),
    ]
    path = write_xyz(tmp_path / "sub" / "out.xyz", structures)
    assert sorted(p.name for p in path.parent.iterdir()) == ["out.xyz"], "no temp file left behind"
    back = read_structures(path)
    assert [s.name for s in back] == ["w=1 (a)", "OH"]
    assert [(s.charge, s.spin) for s in back] == [(0, None), (0, 1)]
    for a, b in zip(structures, back):
        np.testing.assert_allclose(a.positions, b.positions, atol=1e-9)
        assert a.numbers.tolist() == b.numbers.tolist()
    ase_io = pytest.importorskip("ase.io")
    assert len(ase_io.read(path, index=":")) == 2


# ----------------------------------------------------------------------------------------------------------------------
# SDF
# ----------------------------------------------------------------------------------------------------------------------

def _sdf(tmp_path: Path, smiles_names: list[tuple[str, str]], heavy_only: bool = False) -> Path:
    from rdkit import Chem
    from rdkit.Chem import AllChem

    path = tmp_path / "mols.sdf"
    writer = Chem.SDWriter(str(path))
    for smi, name in smiles_names:
        mol = Chem.AddHs(Chem.MolFromSmiles(smi))
        AllChem.EmbedMolecule(mol, randomSeed=1)
        if heavy_only:
            mol = Chem.RemoveHs(mol)
        mol.SetProp("_Name", name)
        writer.write(mol)
    writer.close()
    return path


def test_read_sdf_records_names_and_charges(tmp_path):
    path = _sdf(tmp_path, [("CC(=O)[O-]", "acetate"), ("C[NH3+]", ""), ("CCO", "ethanol")])
    mols = read_structures(path)
    assert [s.name for s in mols] == ["acetate", "mols_1", "ethanol"]
    assert [s.charge for s in mols] == [-1, 1, 0]
    assert [s.n_atoms for s in mols] == [7, 8, 9]
    assert mols[0].source == f"{path}#0"


def test_read_sdf_example_aspirin():
    (s,) = read_sdf(EXAMPLES / "aspirin.sdf")
    assert s.name == "aspirin" and s.formula == "C9H8O4" and s.charge == 0
    assert _min_distance(s.positions) > 0.9


def test_read_sdf_adds_missing_hydrogens(tmp_path):
    (s,) = read_sdf(_sdf(tmp_path, [("CCO", "ethanol")], heavy_only=True))
    assert s.formula == "C2H6O" and s.info["added_hydrogens"] == 6
    s.validate()


def test_read_sdf_rejects_2d(tmp_path):
    from rdkit import Chem

    mol = Chem.MolFromSmiles("CCO")
    mol.Compute2DCoords()
    path = _write(tmp_path, "flat.sdf", Chem.MolToMolBlock(mol) + "$$$$\n")
    assert "2D" in _error(read_sdf, path)


# ----------------------------------------------------------------------------------------------------------------------
# SMILES
# ----------------------------------------------------------------------------------------------------------------------

def test_read_smiles_conformers_and_seed():
    a = read_smiles("OCCCCO", n_conformers=3, seed=7)
    b = read_smiles("OCCCCO", n_conformers=3, seed=7)
    c = read_smiles("OCCCCO", n_conformers=3, seed=8)
    assert len(a) == 3 and [s.name for s in a] == ["OCCCCO_c0", "OCCCCO_c1", "OCCCCO_c2"]
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x.positions, y.positions)
    assert not np.allclose(a[0].positions, c[0].positions)
    assert a[0].info["smiles"] == "OCCCCO" and a[0].info["force_field"] == "MMFF94"
    assert all(s.formula == "C4H10O2" and _min_distance(s.positions) > 0.9 for s in a)


def test_read_smiles_charge_name_radical():
    (acetate,) = read_smiles("[O-]C(C)=O", name="acetate")
    assert acetate.name == "acetate_c0" and acetate.charge == -1 and acetate.info["smiles"] == "CC(=O)[O-]"
    (methyl,) = read_smiles("[CH3]")
    assert methyl.spin == 1 and methyl.validate() is methyl


def test_read_smiles_salt_fragments_are_separated():
    (salt,) = read_structures("[Na+].[Cl-]")
    assert salt.charge == 0 and 2.0 < np.linalg.norm(salt.positions[0] - salt.positions[1]) < 4.0
    (pair,) = read_structures("CC(=O)[O-].[NH4+]")
    assert _min_distance(pair.positions) > 0.9


def test_read_smiles_file(tmp_path):
    text = "# my molecules\n\nCO methanol\n  c1ccccc1   benzene  extra\nN\n"
    path = _write(tmp_path, "set.smi", text)
    mols = read_smiles_file(path, n_conformers=2, seed=3)
    assert [s.name for s in mols] == ["methanol_c0", "methanol_c1", "benzene_c0", "benzene_c1", "N_c0", "N_c1"]
    assert mols[2].source == f"{path}:4"
    assert len(read_structures(EXAMPLES / "molecules.smi")) == 5


def test_read_structures_smiles_string_and_overrides():
    (s,) = read_structures("CCO")
    assert s.formula == "C2H6O" and s.source == "CCO"
    (cation,) = read_structures("CCO", charge=1, spin=1)
    assert (cation.charge, cation.spin) == (1, 1)
    assert len(read_structures("C", n_conformers=2)) == 2


def test_read_structures_overrides_file_values(tmp_path):
    path = _write(tmp_path, "w.xyz", _frame("charge=1 spin=1"))
    (s,) = read_structures(path, charge=0, spin=0)
    assert (s.charge, s.spin) == (0, 0)


@pytest.mark.parametrize("name", ["water.xyz", "ethanol.xyz", "glycine.xyz", "water_frames.xyz", "aspirin.sdf"])
def test_examples_read(name):
    structures = read_structures(EXAMPLES / name)
    assert len(structures) == (3 if name == "water_frames.xyz" else 1)
    assert all(_min_distance(s.positions) > 0.9 for s in structures)


# ----------------------------------------------------------------------------------------------------------------------
# errors
# ----------------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "text, expected",
    [
        ("", "empty"),
        ("  \n\n", "empty"),
        ("three\nc\nO 0 0 0\n", "line 1"),
        ("0\nc\n", "atom count is 0"),
        ("3\nc\nO 0 0 0\nH 0 0 1\n", "declares 3 atoms"),
        ("2\nc\nO 0 0 0\nH 0 zero 1\n", "line 4: non-numeric"),
        ("2\nc\nO 0 0 0\nH 0 1\n", "line 4: expected an atom line"),
        ("2\nc\nO 0 0 0\nXx 0 0 1\n", "line 4: unknown element symbol 'Xx'"),
        ("2\nc\nO 0 0 0\nH 0 0 nan\n", "non-finite"),
        (WATER + "2\nc\nO 0 0 0\n", "frame 1"),
        ("2\nc\nO 0 0 0\nH 0 0 1\nH 0 0 2\n", "atom count of the previous frame may be wrong"),
        ("2\ncharge=one\nO 0 0 0\nH 0 0 1\n", "not an integer"),
        ("2\nspin=0 multiplicity=2\nO 0 0 0\nH 0 0 1\n", "contradicts"),
    ],
)
def test_xyz_errors(tmp_path, text, expected):
    path = _write(tmp_path, "bad.xyz", text)
    message = _error(read_structures, path)
    assert str(path) in message and expected in message


def test_missing_file_and_unknown_extension(tmp_path):
    assert _error(read_structures, tmp_path / "nope.xyz") == f"file not found: {tmp_path / 'nope.xyz'}"
    assert "file not found" in _error(read_structures, str(tmp_path / "nope.sdf"))
    assert "file not found" in _error(read_xyz, tmp_path / "nope.xyz")
    message = _error(read_structures, _write(tmp_path, "mol.pdb", "ATOM\n"))
    assert "unknown file extension '.pdb'" in message and ".xyz" in message
    assert "neither an existing file nor a valid SMILES" in _error(read_structures, "mol.pdb")
    assert "is a directory" in _error(read_structures, tmp_path)


def test_smiles_errors(tmp_path):
    assert "cannot parse SMILES 'C1CC'" in _error(read_smiles, "C1CC")
    assert "neither an existing file nor a valid SMILES" in _error(read_structures, "C(C")
    path = _write(tmp_path, "bad.smi", "CCO ethanol\n\nC((C bad\n")
    assert f"{path} line 3: cannot parse SMILES 'C((C'" in _error(read_structures, path)
    assert "no SMILES found" in _error(read_structures, _write(tmp_path, "empty.smi", "# nothing\n\n"))
    assert "empty" in _error(read_structures, _write(tmp_path, "blank.smi", ""))


def test_embedding_failure(monkeypatch):
    from rdkit.Chem import AllChem

    monkeypatch.setattr(AllChem, "EmbedMultipleConfs", lambda *a, **k: [])
    assert "embedding failed" in _error(read_structures, "CCO")


def test_sdf_errors(tmp_path):
    assert "empty" in _error(read_sdf, _write(tmp_path, "e.sdf", "\n"))
    bad = _write(tmp_path, "bad.sdf", "x\n  y\n\n  2  1  0  0  0  0  0  0  0  0999 V2000\n garbage\n$$$$\n")
    message = _error(read_structures, bad)
    assert str(bad) in message and "record 0" in message


def test_validation_errors(tmp_path):
    overlap = _write(tmp_path, "overlap.xyz", "2\n\nO 0 0 0\nH 0 0 0.05\n")
    message = _error(read_structures, overlap)
    assert str(overlap) in message and "overlapping" in message
    radical = _write(tmp_path, "oh.xyz", "2\n\nO 0 0 0\nH 0 0 0.97\n")
    assert "odd number of electrons" in _error(read_structures, radical)
    assert read_structures(radical, spin=1)[0].spin == 1


# ----------------------------------------------------------------------------------------------------------------------
# sampling
# ----------------------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def ethanol() -> Structure:
    return read_structures(EXAMPLES / "ethanol.xyz")[0]


def test_gaussian_jitter(ethanol):
    a = gaussian_jitter(ethanol, 0.05, 20, seed=1)
    b = gaussian_jitter(ethanol, 0.05, 20, seed=1)
    c = gaussian_jitter(ethanol, 0.05, 20, seed=2)
    assert [s.name for s in a[:2]] == ["ethanol_j0", "ethanol_j1"]
    assert a[0].info["sampling"] == "gaussian_jitter" and a[0].info["sampling_sigma_angstrom"] == 0.05
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x.positions, y.positions)
    assert not np.allclose(a[0].positions, c[0].positions)
    rms = np.mean([_rms_displacement(s, ethanol) for s in a])
    assert 0.7 * 0.05 * np.sqrt(3) < rms < 1.3 * 0.05 * np.sqrt(3)
    for s in a:
        assert s.numbers.tolist() == ethanol.numbers.tolist() and (s.charge, s.spin) == (ethanol.charge, ethanol.spin)
        assert _min_distance(s.positions) > 0.5
        s.validate()
    assert gaussian_jitter(ethanol, 0.0, 1)[0].positions.tolist() == ethanol.positions.tolist()
    assert "sigma" in _error(gaussian_jitter, ethanol, -0.1, 1)


def test_normal_mode_samples(ethanol):
    a = normal_mode_samples(ethanol, 300.0, 10, seed=5)
    b = normal_mode_samples(ethanol, 300.0, 10, seed=5)
    assert [s.name for s in a[:2]] == ["ethanol_nm0", "ethanol_nm1"]
    info = a[3].info
    assert info["sampling"] == "normal_modes" and info["sampling_temperature_kelvin"] == 300.0
    assert info["sampling_force_field"] == "MMFF94" and info["sampling_seed"] == 5 and info["sampling_index"] == 3
    masses = np.array([{1: 1.008, 6: 12.011, 8: 15.999}[int(z)] for z in ethanol.numbers])
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x.positions, y.positions)
        assert x.numbers.tolist() == ethanol.numbers.tolist()
        assert _rms_displacement(x, ethanol) > 1e-3
        assert _min_distance(x.positions) > 0.5
        # rigid-body motions are projected out: the centre of mass does not move
        shift = (masses[:, None] * (x.positions - ethanol.positions)).sum(0) / masses.sum()
        assert np.abs(shift).max() < 5e-3
        x.validate()


def test_normal_mode_rms_grows_with_temperature(ethanol):
    rms = [np.mean([_rms_displacement(s, ethanol) for s in normal_mode_samples(ethanol, t, 8, seed=0)])
           for t in (50.0, 300.0, 1000.0)]
    assert rms[0] < rms[1] < rms[2]
    assert rms[1] < 0.5, "300 K displacements stay moderate"


def test_harmonic_modes_water_and_linear():
    water = read_structures(EXAMPLES / "water.xyz")[0]
    evals, vecs, masses, ff = harmonic_modes(water)
    wavenumbers = WAVENUMBER_PER_SQRT_EIGENVALUE * np.sqrt(np.abs(evals))
    assert len(evals) == 3 and vecs.shape == (9, 3) and ff == "MMFF94"
    assert 1300 < wavenumbers.min() and wavenumbers.max() < 4200
    co2 = Structure([6, 8, 8], [[0, 0, 0], [0, 0, 1.16], [0, 0, -1.16]], name="co2")
    assert len(harmonic_modes(co2)[0]) == 4


def test_normal_mode_samples_with_mol_and_errors(ethanol):
    from rdkit import Chem

    mol = Chem.AddHs(Chem.MolFromSmiles("CCO"))
    with_mol = normal_mode_samples(ethanol, 300.0, 2, seed=1, mol=mol)
    perceived = normal_mode_samples(ethanol, 300.0, 2, seed=1)
    np.testing.assert_allclose(with_mol[1].positions, perceived[1].positions, atol=1e-6)
    assert "do not match" in _error(normal_mode_samples, ethanol, 300.0, 1, mol=Chem.MolFromSmiles("CCO"))
    assert "temperature" in _error(normal_mode_samples, ethanol, -1.0, 1)
    assert "at least 2 atoms" in _error(normal_mode_samples, Structure([10], [[0, 0, 0]], name="ne"), 300.0, 1)


def test_element_table_is_pyscfs_and_reading_does_not_import_pyscf(tmp_path):
    import subprocess
    import sys

    from pyscf.data.elements import ELEMENTS

    from eqchem.io import elements

    assert [elements.symbol(z) for z in range(1, elements.MAX_Z + 1)] == list(ELEMENTS[1:elements.MAX_Z + 1])
    assert [elements.atomic_number(s) for s in ("h", "HE", "Rn", "8")] == [1, 2, 86, 8]
    path = _write(tmp_path, "w.xyz", WATER)
    code = (f"import sys\nfrom eqchem.io.readers import read_structures\nread_structures({str(path)!r})\n"
            "print('PYSCF', 'pyscf' in sys.modules)\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "PYSCF False" in res.stdout, res.stdout + res.stderr
