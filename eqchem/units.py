"""Physical constants and unit conversions (CODATA values as used by PySCF)."""

BOHR_ANGSTROM = 0.52917721092
"""1 Bohr in Å."""
ANGSTROM_BOHR = 1.0 / BOHR_ANGSTROM
HARTREE_EV = 27.211386245988
"""1 Hartree in eV."""
MICRO_HARTREE = 1e6
"""Multiply an energy in Eh by this to get µEh."""
AU_DEBYE = 2.541746473
"""1 e·Bohr in Debye."""
