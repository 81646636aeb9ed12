"""Structure input/output: readers for xyz/extxyz, SDF/MOL, SMILES; xyz writer; off-equilibrium sampling."""
from __future__ import annotations

from .readers import read_sdf, read_smiles, read_smiles_file, read_structures, read_xyz, write_xyz
from .sampling import gaussian_jitter, normal_mode_samples
from .structure import Structure

__all__ = [
    "Structure",
    "read_structures",
    "read_xyz",
    "read_sdf",
    "read_smiles",
    "read_smiles_file",
    "write_xyz",
    "gaussian_jitter",
    "normal_mode_samples",
]
