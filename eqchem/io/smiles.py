"""3D conformers from SMILES strings and SMILES files: RDKit embedding (ETKDGv3) and force-field relaxation."""
from __future__ import annotations

import os
from pathlib import Path

from ..errors import InputError
from .rdkit_mol import rdkit_mol_to_structure
from .structure import Structure
from .textfile import read_text


def parse_smiles(smiles: str, where: str):
    """An RDKit molecule (no hydrogens added) from a SMILES string; InputError if it does not parse or has '*'."""
    from rdkit import Chem
    from rdkit.rdBase import BlockLogs

    with BlockLogs():
        mol = Chem.MolFromSmiles(smiles) if smiles.strip() else None
    if mol is None or mol.GetNumAtoms() == 0:
        raise InputError(f"{where}: cannot parse SMILES {smiles!r}")
    for atom in mol.GetAtoms():
        if atom.GetAtomicNum() < 1:
            raise InputError(f"{where}: SMILES {smiles!r} contains a dummy atom '*'")
    return mol


def _embed(mol, n_conformers: int, seed: int, where: str) -> list[int]:
    """ETKDGv3 conformers (random coordinates as fallback); InputError when none can be embedded."""
    from rdkit.Chem import AllChem
    from rdkit.rdBase import BlockLogs

    params = AllChem.ETKDGv3()
    params.randomSeed = int(seed)
    with BlockLogs():
        cids = list(AllChem.EmbedMultipleConfs(mol, numConfs=n_conformers, params=params))
        if len(cids) < n_conformers:
            params.useRandomCoords = True
            cids = list(AllChem.EmbedMultipleConfs(mol, numConfs=n_conformers, params=params))
    if not cids:
        raise InputError(f"{where}: 3D embedding failed (ETKDGv3, seed {seed}); try another seed or give coordinates")
    return cids


FRAGMENT_GAP_ANGSTROM = 3.0
"""Gap (Å) between the bounding boxes of disconnected fragments (salts, complexes) before relaxation."""


def _separate_fragments(mol, cids: list[int]) -> None:
    """Line disconnected fragments up along x, FRAGMENT_GAP_ANGSTROM apart (ETKDG stacks them on each other)."""
    from rdkit import Chem

    fragments = Chem.GetMolFrags(mol)
    if len(fragments) < 2:
        return
    for cid in cids:
        conf = mol.GetConformer(cid)
        positions = conf.GetPositions()
        right_edge = None
        for atoms in fragments:
            block = positions[list(atoms)]
            block -= block.mean(axis=0)
            if right_edge is not None:
                block[:, 0] += right_edge + FRAGMENT_GAP_ANGSTROM - block[:, 0].min()
            right_edge = block[:, 0].max()
            positions[list(atoms)] = block
        conf.SetPositions(positions)


def _relax(mol) -> str:
    """Relax all conformers in place with MMFF94, or UFF where MMFF lacks parameters; returns the force field.

    Inter-fragment interactions are kept, so salts and complexes relax to contact distances.
    """
    from rdkit.Chem import AllChem
    from rdkit.rdBase import BlockLogs

    with BlockLogs():
        if AllChem.MMFFHasAllMoleculeParams(mol):
            AllChem.MMFFOptimizeMoleculeConfs(mol, numThreads=1, maxIters=2000, ignoreInterfragInteractions=False)
            return "MMFF94"
        if AllChem.UFFHasAllMoleculeParams(mol):
            AllChem.UFFOptimizeMoleculeConfs(mol, numThreads=1, maxIters=2000, ignoreInterfragInteractions=False)
            return "UFF"
    return "none"


def read_smiles(smiles: str, n_conformers: int = 1, seed: int = 0, name: str | None = None,
                *, where: str | None = None) -> list[Structure]:
    """3D conformers of a SMILES: RDKit AddHs + ETKDGv3 (randomSeed=seed) + MMFF94 (UFF fallback) relaxation.

    Returns up to ``n_conformers`` structures (Å) named ``<name or canonical SMILES>_c<k>``; charge = sum of
    formal charges, spin = radical electrons or None; ``info`` has the canonical SMILES and the force field.
    ``where`` prefixes error messages (e.g. ``"file.smi line 3"``).
    """
    from rdkit import Chem

    where = where or "SMILES"
    if n_conformers < 1:
        raise InputError(f"{where}: n_conformers must be >= 1, got {n_conformers}")
    mol = parse_smiles(smiles, where)
    canonical = Chem.MolToSmiles(mol)
    mol = Chem.AddHs(mol)
    cids = _embed(mol, n_conformers, seed, f"{where} {smiles!r}")
    _separate_fragments(mol, cids)
    force_field = _relax(mol)
    base = name or canonical
    return [
        rdkit_mol_to_structure(
            mol, f"{base}_c{k}", smiles.strip(),
            {"smiles": canonical, "conformer": k, "seed": int(seed), "force_field": force_field}, conf_id=cid,
        )
        for k, cid in enumerate(cids)
    ]


def read_smiles_file(path: str | os.PathLike, n_conformers: int = 1, seed: int = 0) -> list[Structure]:
    """SMILES file: one ``SMILES [name]`` per line; blank lines, ``#`` comments and a ``SMILES`` header skipped."""
    path = Path(path)
    out: list[Structure] = []
    for lineno, line in enumerate(read_text(path).splitlines(), start=1):
        tokens = line.split()
        if not tokens or tokens[0].startswith("#") or (lineno == 1 and tokens[0].lower() == "smiles"):
            continue
        name = tokens[1] if len(tokens) > 1 else None
        structures = read_smiles(tokens[0], n_conformers, seed, name, where=f"{path} line {lineno}")
        for s in structures:
            s.source = f"{path}:{lineno}"
        out += structures
    if not out:
        raise InputError(f"{path}: no SMILES found (only blank or comment lines)")
    return out
