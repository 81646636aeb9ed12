"""The eqchem HDF5 format: crash-safe writing (store), lazy reading (reader), merging shards (merge)."""
from .reader import H5Dataset, Record, atom_ao_offsets, atom_pair_blocks

__all__ = ["H5Dataset", "Record", "atom_ao_offsets", "atom_pair_blocks"]
