"""AO conventions: the one place that knows how PySCF orders atomic orbitals and how they rotate.

PySCF real spherical AOs are grouped per atom, per shell (in basis-set order), and inside a shell
ordered (px, py, pz) for l = 1 and m = -l..l for l >= 2. e3nn's real spherical harmonics use another
real basis for l >= 2 (its polar axis differs), so every shell of angular momentum l is related to
e3nn's irrep l by a constant orthogonal matrix ``M_l``:

    Y_pyscf(r) = M_l @ Y_e3nn(r)                       (column vectors of length 2l+1)
    D_pyscf(R) = M_l @ D_e3nn(R) @ M_l.T

``M_l`` is *computed* here (least squares on PySCF AO values and e3nn harmonics at random points on
the unit sphere), never typed in, and cached per l. For l = 1 it comes out as the identity with e3nn
0.6.0; tests check that and the orthogonality of every ``M_l``.

A molecule's Hamiltonian transforms as ``H(R x) = D_ao(R) H(x) D_ao(R).T`` with ``D_ao`` from
:func:`wigner_d_ao` (R may be any orthogonal 3x3 matrix; improper ones apply parity (-1)^l per shell).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

MAX_L = 6
"""Largest shell angular momentum supported by the conventions (bases with l <= 4 are tested)."""


# ----------------------------------------------------------------------------------------------
# Shell layout of a molecule
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Shell:
    """One contracted shell of one atom: angular momentum ``l`` and its AO slice in the molecule."""

    atom: int
    l: int
    start: int
    stop: int

    @property
    def slice(self) -> slice:
        return slice(self.start, self.stop)


def shell_layout(mol) -> list[list[Shell]]:
    """Per atom, the shells of a PySCF ``Mole`` in AO order (spherical AOs)."""
    if mol.cart:
        raise ValueError("eqchem works with spherical AOs (mol.cart=False)")
    offsets = mol.ao_loc_nr()
    shells: list[list[Shell]] = [[] for _ in range(mol.natm)]
    for ib in range(mol.nbas):
        l = int(mol.bas_angular(ib))
        atom = int(mol.bas_atom(ib))
        nctr = int(mol.bas_nctr(ib))
        start = int(offsets[ib])
        for c in range(nctr):  # generally contracted shells give several shells of the same l
            s = start + c * (2 * l + 1)
            shells[atom].append(Shell(atom, l, s, s + 2 * l + 1))
    return shells


def atom_ao_slices(mol) -> list[slice]:
    """AO slice of every atom, shape (natm,)."""
    return [slice(int(a[2]), int(a[3])) for a in mol.aoslice_by_atom()]


def mole_ao_offsets(mol) -> np.ndarray:
    """(natm + 1,) first AO of every atom, then nao, of a PySCF Mole (what
    :func:`eqchem.data.reader.atom_ao_offsets` gives from stored shell layouts)."""
    return np.asarray([int(a[2]) for a in mol.aoslice_by_atom()] + [mol.nao])


def atom_pair_block(matrix: np.ndarray, mol, i: int, j: int) -> np.ndarray:
    """The (nao_i, nao_j) block of an (nao, nao) AO matrix between atoms i and j."""
    sl = atom_ao_slices(mol)
    return matrix[sl[i], sl[j]]


def element_shells(basis: str, z: int) -> tuple[int, ...]:
    """Angular momenta of the shells of element ``z`` in ``basis``, in PySCF order."""
    return tuple(s.l for s in shell_layout(_atom_mole(basis, z))[0])


@functools.lru_cache(maxsize=None)
def _atom_mole(basis: str, z: int):
    from pyscf import gto

    return gto.M(atom=[[int(z), (0.0, 0.0, 0.0)]], basis=basis, spin=int(z) % 2, verbose=0)


# ----------------------------------------------------------------------------------------------
# PySCF <-> e3nn change of basis per l
# ----------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=None)
def change_of_basis(l: int) -> np.ndarray:
    """Orthogonal ``M_l`` (2l+1, 2l+1) with ``Y_pyscf = M_l @ Y_e3nn`` on the unit sphere."""
    if not 0 <= l <= MAX_L:
        raise ValueError(f"angular momentum l={l} outside 0..{MAX_L}")
    import torch
    from e3nn import o3

    rng = np.random.default_rng(1234 + l)
    pts = rng.normal(size=(8 * (2 * l + 1) + 16, 3))
    pts /= np.linalg.norm(pts, axis=1, keepdims=True)
    y_pyscf = _shell_probe(l).eval_gto("GTOval_sph", pts)  # (npts, 2l+1)
    y_e3nn = o3.spherical_harmonics(
        l, torch.from_numpy(pts), normalize=True, normalization="integral"
    ).numpy()  # (npts, 2l+1)
    m_t, *_ = np.linalg.lstsq(y_e3nn, y_pyscf, rcond=None)  # y_pyscf ≈ y_e3nn @ m_t
    m = m_t.T
    scale = np.sqrt(np.mean(np.sum(m * m, axis=1)))
    m = m / scale
    # project onto the nearest orthogonal matrix (removes least-squares round-off)
    u, _, vt = np.linalg.svd(m)
    m = u @ vt
    resid = np.abs(y_e3nn @ m.T * scale - y_pyscf).max() / np.abs(y_pyscf).max()
    if resid > 1e-8:
        raise RuntimeError(f"PySCF l={l} harmonics are not a rotation of e3nn's (residual {resid:.1e})")
    m.setflags(write=False)
    return m


def change_of_basis_json(ls) -> str:
    """The change of basis :func:`change_of_basis` of every angular momentum in ``ls`` as JSON text
    (``keys.AO_CHANGE_OF_BASIS``): stored with data and model files, so that readers need no PySCF."""
    import json

    return json.dumps({str(l): change_of_basis(int(l)).tolist() for l in sorted({int(l) for l in ls})})


def change_of_basis_from_json(text: str) -> dict[int, np.ndarray]:
    """``{l: M_l}`` from :func:`change_of_basis_json` text (read-only float64 arrays)."""
    import json

    out = {}
    for l, rows in json.loads(text).items():
        m = np.asarray(rows, dtype=np.float64)
        m.setflags(write=False)
        out[int(l)] = m
    return out


def change_of_basis_table(ls, stored: dict[int, np.ndarray] | None = None) -> dict[int, np.ndarray]:
    """``{l: M_l}`` for every l in ``ls``: taken from ``stored`` (read from a data or model file,
    :func:`change_of_basis_from_json`) where it holds l, else computed by :func:`change_of_basis`, which
    needs PySCF (ImportError without it). Stored matrices must be orthogonal (2l+1, 2l+1) (ValueError)."""
    out = {}
    for l in sorted({int(l) for l in ls}):
        m = (stored or {}).get(l)
        if m is None:
            out[l] = change_of_basis(l)
            continue
        if m.shape != (2 * l + 1, 2 * l + 1) or not np.allclose(m @ m.T, np.eye(2 * l + 1), atol=1e-10):
            raise ValueError(f"the stored change of basis of l={l} is not an orthogonal {2 * l + 1}x{2 * l + 1} matrix")
        out[l] = m
    return out


def pyscf_to_e3nn(mol) -> np.ndarray:
    """Block-diagonal orthogonal (nao, nao) ``Q`` with ``x_e3nn = Q @ x_pyscf`` for AO vectors.

    Matrices convert as ``A_e3nn = Q A_pyscf Q.T`` and back as ``A_pyscf = Q.T A_e3nn Q``.
    """
    q = np.zeros((mol.nao, mol.nao))
    for atom_shells in shell_layout(mol):
        for s in atom_shells:
            q[s.slice, s.slice] = change_of_basis(s.l).T
    return q


# ----------------------------------------------------------------------------------------------
# Wigner-D matrices
# ----------------------------------------------------------------------------------------------
def wigner_d(l: int, parity: int, rotation: np.ndarray) -> np.ndarray:
    """e3nn's (2l+1, 2l+1) matrix of irrep (l, parity) for an orthogonal 3x3 matrix, in float64.

    Computed from e3nn's spherical harmonics, ``Y(R r) = D Y(r)`` solved on 3(2l+1) points, which is
    exact to round-off (e3nn's own ``D_from_matrix`` carries ~1e-7 error from float32 constants).
    For det(R) = -1 the sign ``(parity * (-1)^l)`` is applied on top of the polynomial's own parity.
    """
    import torch
    from e3nn import o3

    rotation = np.asarray(rotation, dtype=np.float64)
    pts = _sphere_points(l)
    y = o3.spherical_harmonics(l, torch.from_numpy(pts.copy()), normalize=False, normalization="integral").numpy()
    y_rot = o3.spherical_harmonics(l, torch.from_numpy(pts @ rotation.T), normalize=False,
                                   normalization="integral").numpy()
    d_t, *_ = np.linalg.lstsq(y, y_rot, rcond=None)
    d = d_t.T
    if np.linalg.det(rotation) < 0 and parity != (-1) ** l:
        d = -d
    return d


@functools.lru_cache(maxsize=None)
def _sphere_points(l: int) -> np.ndarray:
    pts = np.random.default_rng(99 + l).normal(size=(3 * (2 * l + 1) + 4, 3))
    pts /= np.linalg.norm(pts, axis=1, keepdims=True)
    pts.setflags(write=False)
    return pts


def wigner_d_e3nn(l: int, rotation: np.ndarray) -> np.ndarray:
    """e3nn's (2l+1, 2l+1) representation of an orthogonal 3x3 matrix for an orbital of parity (-1)^l."""
    return wigner_d(l, (-1) ** l, rotation)


def wigner_d_pyscf(l: int, rotation: np.ndarray) -> np.ndarray:
    """(2l+1, 2l+1) rotation of one PySCF shell of angular momentum l, ``M_l D_e3nn M_l.T``.

    Solved from PySCF's own real harmonics, ``φ(R r) = D φ(r)`` on 3(2l+1) + 4 points of the unit sphere
    (exact to round-off, parity (-1)^l included for improper R), so rotating PySCF matrices (the
    principal-axes frames of :mod:`eqchem.dft.frame`) needs neither torch nor e3nn.
    """
    rotation = np.asarray(rotation, dtype=np.float64)
    mol, pts = _shell_probe(l), _sphere_points(l)
    y = mol.eval_gto("GTOval_sph", pts)
    y_rot = mol.eval_gto("GTOval_sph", np.ascontiguousarray(pts @ rotation.T))
    d_t, *_ = np.linalg.lstsq(y, y_rot, rcond=None)
    return d_t.T


@functools.lru_cache(maxsize=None)
def _shell_probe(l: int):
    """A PySCF Mole of one primitive shell of angular momentum l at the origin (its values on the unit
    sphere are PySCF's real harmonics up to one constant)."""
    if not 0 <= l <= MAX_L:
        raise ValueError(f"angular momentum l={l} outside 0..{MAX_L}")
    from pyscf import gto

    return gto.M(atom="He 0 0 0", basis={"He": [[l, [1.0, 1.0]]]}, unit="Bohr", verbose=0)


def wigner_d_ao(mol, rotation: np.ndarray) -> np.ndarray:
    """(nao, nao) ``D_ao`` with ``H(R x) = D_ao H(x) D_ao.T`` for any orthogonal 3x3 ``rotation``.

    The rotated molecule has positions ``x @ rotation.T`` (same atom order, same basis).
    """
    rotation = np.asarray(rotation, dtype=np.float64)
    if not np.allclose(rotation @ rotation.T, np.eye(3), atol=1e-10):
        raise ValueError("rotation must be an orthogonal 3x3 matrix")
    per_l = {}
    d = np.zeros((mol.nao, mol.nao))
    for atom_shells in shell_layout(mol):
        for s in atom_shells:
            if s.l not in per_l:
                per_l[s.l] = wigner_d_pyscf(s.l, rotation)
            d[s.slice, s.slice] = per_l[s.l]
    return d


def random_rotation(rng: np.random.Generator, improper: bool = False) -> np.ndarray:
    """Uniformly random 3x3 rotation (det +1), or an improper one (det -1) if ``improper``."""
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return -q if improper else q


# ----------------------------------------------------------------------------------------------
# Per-element layout for the model: shells padded to a common set of slots
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BasisLayout:
    """Shell structure of a basis for a set of elements, padded to common per-atom slots.

    Every atom gets the same list of *slots* (one per (l, k): the k-th shell of angular momentum l
    that any element has). An element fills the slots it has; ``mask`` marks them. The model predicts
    all slots and the mask keeps the real AOs, so blocks of every element pair share one shape.

    Attributes:
        basis: basis name as given to PySCF.
        elements: sorted atomic numbers.
        shells: per element, tuple of shell l in PySCF order.
        slot_ls: l of every slot, sorted by (l, k).
    """

    basis: str
    elements: tuple[int, ...]
    shells: dict

    @classmethod
    def from_basis(cls, basis: str, elements) -> "BasisLayout":
        els = tuple(sorted({int(z) for z in elements}))
        return cls(basis=basis, elements=els, shells={z: element_shells(basis, z) for z in els})

    @functools.cached_property
    def slot_ls(self) -> tuple[int, ...]:
        counts: dict[int, int] = {}
        for ls in self.shells.values():
            for l in set(ls):
                counts[l] = max(counts.get(l, 0), ls.count(l))
        return tuple(l for l in sorted(counts) for _ in range(counts[l]))

    @functools.cached_property
    def slot_offsets(self) -> tuple[int, ...]:
        return tuple(int(x) for x in np.concatenate([[0], np.cumsum([2 * l + 1 for l in self.slot_ls])]))

    @property
    def padded_dim(self) -> int:
        """Number of padded AOs per atom."""
        return self.slot_offsets[-1]

    @property
    def max_l(self) -> int:
        return max(self.slot_ls)

    def element_index(self, z: int) -> np.ndarray:
        """Padded-AO index of each real AO of element ``z``, in PySCF order, shape (nao_z,)."""
        if z not in self.shells:
            raise KeyError(z)
        seen: dict[int, int] = {}
        idx = []
        for l in self.shells[z]:
            k = seen.get(l, 0)
            seen[l] = k + 1
            slot = [i for i, sl in enumerate(self.slot_ls) if sl == l][k]
            start = self.slot_offsets[slot]
            idx.extend(range(start, start + 2 * l + 1))
        return np.asarray(idx, dtype=np.int64)

    def element_mask(self, z: int) -> np.ndarray:
        """Boolean (padded_dim,) mask of the AOs element ``z`` has."""
        m = np.zeros(self.padded_dim, dtype=bool)
        m[self.element_index(z)] = True
        return m

    def nao(self, z: int) -> int:
        return sum(2 * l + 1 for l in self.shells[z])

    def to_dict(self) -> dict:
        return {"basis": self.basis, "elements": list(self.elements),
                "shells": {str(z): list(ls) for z, ls in self.shells.items()}}

    @classmethod
    def from_dict(cls, d: dict) -> "BasisLayout":
        return cls(basis=d["basis"], elements=tuple(int(z) for z in d["elements"]),
                   shells={int(z): tuple(ls) for z, ls in d["shells"].items()})

    def __hash__(self):
        return hash((self.basis, self.elements))
