"""An RDKit molecule (one conformer) as a :class:`~eqchem.io.structure.Structure`; imports RDKit when called."""
from __future__ import annotations

import numpy as np

from .structure import Structure


def rdkit_mol_to_structure(mol, name: str, source: str, info: dict, conf_id: int = -1) -> Structure:
    """Structure from an RDKit molecule (all atoms, including explicit H) and one conformer (Å)."""
    from rdkit import Chem

    conf = mol.GetConformer(conf_id)
    radicals = sum(a.GetNumRadicalElectrons() for a in mol.GetAtoms())
    return Structure(
        numbers=np.array([a.GetAtomicNum() for a in mol.GetAtoms()]),
        positions=np.array(conf.GetPositions(), dtype=np.float64),
        charge=Chem.GetFormalCharge(mol), spin=radicals or None, name=name, source=source, info=info,
    )
