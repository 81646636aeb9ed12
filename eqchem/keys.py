"""Every field name of the eqchem HDF5 format, once, with its shape and unit.

Data writers, readers, the model, losses and the CLI import these names; nothing else spells them.
See docs/format.md for the full description.
"""
FORMAT_VERSION = "1.0"

# --- root attributes -------------------------------------------------------------------------
FORMAT_VERSION_ATTR = "format_version"  # str, e.g. "1.0"
XC = "xc"                               # str, functional exactly as given to PySCF
XC_DESCRIPTION = "xc_description"       # str, PySCF's parsed functional (libxc ids and weights)
BASIS = "basis"                         # str, AO basis name (lower case)
PYSCF_VERSION = "pyscf_version"         # str
AO_CONVENTION = "ao_convention"         # str, always "pyscf" (real spherical AOs in PySCF order)
GRIDS_LEVEL = "grids_level"             # int
CONV_TOL = "conv_tol"                   # float, Eh
DENSITY_FIT = "density_fit"             # bool
AUXBASIS = "auxbasis"                   # str, density-fitting basis (PySCF name, canonical: "def2-svp-jkfit" -> "def2-universal-jkfit"); "" without density fitting
LABEL_PRESET = "label_preset"           # str, the `eqchem generate --preset` whose numerical settings the data has ("fast-labels", "reference"), "" for none
EQCHEM_VERSION = "eqchem_version"       # str
AO_CHANGE_OF_BASIS = "ao_change_of_basis"  # str, JSON {l: (2l+1, 2l+1) rows}: M_l with Y_pyscf = M_l @ Y_e3nn

# --- groups ----------------------------------------------------------------------------------
MOLECULES = "molecules"                 # /molecules/<key>/ one group per structure
FAILURES = "failures"                   # /failures/<key>/ attrs: reason, source

# --- per-structure datasets ------------------------------------------------------------------
ATOMIC_NUMBERS = "atomic_numbers"       # (n,) int
POSITIONS = "positions"                 # (n, 3) float64, Å
HAMILTONIAN = "hamiltonian"             # (nao, nao) float64, Eh; UKS: (2, nao, nao)
OVERLAP = "overlap"                     # (nao, nao) float64
DENSITY_MATRIX = "density_matrix"       # (nao, nao) float64, total density (alpha + beta)
ORBITAL_ENERGIES = "orbital_energies"   # (nmo,) float64, Eh; UKS: (2, nmo)
ORBITAL_COEFFICIENTS = "orbital_coefficients"  # (nao, nmo) float64; UKS: (2, nao, nmo)
ORBITAL_OCCUPATIONS = "orbital_occupations"    # (nmo,) float64; UKS: (2, nmo)
ENERGY = "energy"                       # () float64, Eh (total DFT energy)
DIPOLE = "dipole"                       # (3,) float64, Debye
FORCES = "forces"                       # (n, 3) float64, Eh/Bohr (optional)
DENSITY_COEFFICIENTS = "density_coefficients"  # group: per-atom (naux_atom,) float64 (optional)

# --- per-structure attributes ----------------------------------------------------------------
CHARGE = "charge"                       # int, total charge
SPIN = "spin"                           # int, 2S = N_alpha - N_beta
CONVERGED = "converged"                 # bool
SCF_CYCLES = "scf_cycles"               # int
SOURCE = "source"                       # str, input file (with frame) or SMILES
NAME = "name"                           # str, structure name from the input (optional)
SECONDS = "seconds"                     # float, wall time of the DFT run
REASON = "reason"                       # str (failures only)

REQUIRED_DATASETS = (ATOMIC_NUMBERS, POSITIONS, HAMILTONIAN, OVERLAP, ENERGY)

# --- guess files (<data>.guess.h5, the baselines of Δ-models; eqchem.data.guess_file) ---------
GUESS_KIND = "guess_kind"               # root attr, str, e.g. "minao-fock"
GUESS_SUFFIX = ".guess.h5"              # file name: data file stem + this suffix
GUESS_HAMILTONIANS = "guess_hamiltonians"  # group: /guess_hamiltonians/<key> (nao, nao) float64, Eh
GUESS_PARAMS = "guess_params"           # root attr, JSON: a fitted guess's parameters (core-jx: {"atomic_potentials": ...})

# --- data index (<data>.index.npz, a cache of per-structure metadata for training; eqchem.training.index) ---
INDEX_SUFFIX = ".index.npz"             # file name: data file name + this suffix (next to it, or in the run dir)
