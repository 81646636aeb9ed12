"""Fitted atomic exchange–correlation potentials: the grid-free part of the ``core-jx`` guess beyond ``core-j``.

``core-j`` (T + V_nuc + J of superposed neutral atomic densities) leaves out exchange and correlation, which
on QM9 molecules at B3LYP/def2-SVP is ~17,000 µEh MAE of the converged Kohn–Sham matrix. ``core-jx`` adds a
superposition of spherical atomic potentials, one per element,

    v_Z(r) = Σ_k c_Zk g_k(r),     V_μν = Σ_A <μ| v_{Z_A}(|r − R_A|) |ν>,

with g_k normalised s Gaussians of fixed even-tempered exponents (:data:`EXPONENTS`) and the coefficients
c_Zk solved by linear least squares so that T + V_nuc + J + V is closest to the reference matrices of the
training structures (:func:`fit_atomic_potentials`; a few dozen numbers for H, C, N, O, F). It is the idea of
a superposition of atomic potentials (SAP, Lehtola 2019), fitted to the molecular Kohn–Sham matrices of the
functional at hand instead of to atoms: the average exchange–correlation potential an element's electrons
feel in the training molecules. In a molecule each atom becomes one contracted s function, so V costs one
three-centre overlap integral per AO pair and atom (libcint, no DFT grid, no density fitting), and s functions
are rotation invariant: V is exactly equivariant. On QM9 it takes the guess from ~17,000 to ~2,000 µEh
(``bench/baselines.py``), below PySCF's one-shot F[P_minao] (~3,900 µEh) that costs a grid and a Fock build.

Units: exponents bohr⁻², coefficients Eh (per normalised Gaussian), matrices Eh. A fit travels as JSON-able
``{str(Z): [[exponents...], [coefficients...]]}`` in guess files and model files (``baseline_params``).
"""
from __future__ import annotations

import functools
from typing import Callable, Iterable

import numpy as np

from ..errors import DataError
from ..io.elements import symbol
from .atomic_density import ghost_mole

EXPONENTS = tuple(0.05 * 4.0 ** k for k in range(8))
"""Exponents (bohr⁻²) of every element's potential: 0.05 … 819, spacing ×4. Measured on 30 QM9 molecules,
the fitted guess errs 2,719 µEh with these 8, 2,656 with 10 (×3 from 0.03) and 2,712 with 16 (×2 from
0.02): more functions buy nothing, and the three-centre integrals cost in proportion to them."""

RIDGE = 1e-10
"""Relative ridge of the least-squares fit (columns scaled to unit norm)."""

PotentialFit = dict[str, list[list[float]]]


def potential_design(mol, elements: tuple[int, ...], exponents=EXPONENTS) -> np.ndarray:
    """(nao, nao, len(elements) · len(exponents)) matrices <μ| Σ_{A of element Z} g_k(r − R_A) |ν> of ``mol``
    (a PySCF Mole), column (Z, k) at ``elements.index(Z) · len(exponents) + k``: V = design @ coefficients."""
    numbers = [int(z) for z in mol.atom_charges()]
    missing = sorted(set(numbers) - set(elements))
    if missing:
        raise DataError(f"no atomic potential fitted for {', '.join(symbol(z) for z in missing)}")
    n_k = len(exponents)
    basis = {symbol(z): [[0, [float(a), 1.0]] for a in exponents] for z in set(numbers)}
    aux = ghost_mole([(symbol(z), r) for z, r in zip(numbers, mol.atom_coords())], basis)
    from pyscf import df

    per_atom = df.incore.aux_e2(mol, aux, "int3c1e", aosym="s1").reshape(mol.nao, mol.nao, len(numbers), n_k)
    out = np.zeros((mol.nao, mol.nao, len(elements) * n_k))
    for a, z in enumerate(numbers):
        col = elements.index(z) * n_k
        out[:, :, col:col + n_k] += per_atom[:, :, a]
    return out


def fit_atomic_potentials(samples: Iterable[tuple[object, np.ndarray]], exponents=EXPONENTS,
                          ridge: float = RIDGE, n_check: int = 10) -> tuple[PotentialFit, dict]:
    """Least-squares coefficients of every element's potential from ``samples``: (Mole, residual) pairs, the
    residual (nao, nao) Eh being what the potential should add (reference − T − V_nuc − J). One pass, normal
    equations only (memory independent of the number of samples).

    Returns the fit and a summary: ``structures``, ``elements``, and ``mae_before_uEh`` / ``mae_after_uEh``:
    the residual's MAE without and with the fitted potential, averaged over the first ``n_check`` samples.
    """
    gram: dict[tuple[int, int], np.ndarray] = {}
    cross: dict[int, np.ndarray] = {}
    kept, count = [], 0
    for mol, residual in samples:  # elements may appear late: one block of the equations per element pair
        numbers = tuple(sorted({int(z) for z in mol.atom_charges() if z > 0}))
        x = potential_design(mol, numbers, exponents).reshape(-1, len(numbers), len(exponents))
        r = np.asarray(residual).reshape(-1)
        for i, zi in enumerate(numbers):
            cross[zi] = cross.get(zi, 0.0) + x[:, i].T @ r
            for j, zj in enumerate(numbers):
                gram[(zi, zj)] = gram.get((zi, zj), 0.0) + x[:, i].T @ x[:, j]
        if len(kept) < n_check:
            kept.append((mol, residual))
        count += 1
    if not count:
        raise DataError("no structures to fit atomic potentials on")
    elements = tuple(sorted(cross))
    n_k = len(exponents)
    g = np.zeros((len(elements) * n_k,) * 2)
    for (zi, zj), block in gram.items():
        i, j = elements.index(zi) * n_k, elements.index(zj) * n_k
        g[i:i + n_k, j:j + n_k] = block
    c = np.concatenate([cross[z] for z in elements])
    scale = np.sqrt(np.diag(g)).clip(1e-300)
    coef = np.linalg.solve(g / np.outer(scale, scale) + ridge * np.eye(len(c)), c / scale) / scale
    fit = {str(z): [[float(a) for a in exponents], [float(v) for v in coef[i * n_k:(i + 1) * n_k]]]
           for i, z in enumerate(elements)}
    after = [np.abs(np.asarray(r) - superposed_potential(mol, fit)).mean() for mol, r in kept]
    summary = {"structures": count, "elements": list(elements),
               "mae_before_uEh": 1e6 * float(np.mean([np.abs(r).mean() for _, r in kept])),
               "mae_after_uEh": 1e6 * float(np.mean(after))}
    return fit, summary


def superposed_potential(mol, fit: PotentialFit) -> np.ndarray:
    """(nao, nao) matrix (Eh) of the superposed atomic potentials ``fit`` in ``mol`` (a PySCF Mole; ghost
    atoms carry none): one contracted s function per atom, one three-centre overlap integral per AO pair."""
    from pyscf import df, lib

    numbers = [int(z) for z in mol.atom_charges()]
    real = [i for i, z in enumerate(numbers) if z > 0]
    missing = sorted({numbers[i] for i in real} - {int(z) for z in fit})
    if missing:
        raise DataError(f"no atomic potential fitted for {', '.join(symbol(z) for z in missing)}")
    coords = mol.atom_coords()
    elements = sorted({numbers[i] for i in real})
    basis = {symbol(z): [[0] + [[a, c] for a, c in zip(*fit[str(z)])]] for z in elements}
    aux = ghost_mole([(symbol(numbers[i]), coords[i]) for i in real], basis)
    # PySCF normalises each contracted function; the potential is ‖Σ c_k g_k‖ times it
    norms = np.array([_norm(tuple(fit[str(numbers[i])][0]), tuple(fit[str(numbers[i])][1])) for i in real])
    v = lib.unpack_tril(df.incore.aux_e2(mol, aux, "int3c1e", aosym="s2ij") @ norms)
    return 0.5 * (v + v.T)


@functools.lru_cache(maxsize=None)
def _norm(exponents: tuple[float, ...], coefs: tuple[float, ...]) -> float:
    """‖Σ_k c_k g_k‖ (L2) for normalised s Gaussians g_k of ``exponents`` (bohr⁻²)."""
    a = np.asarray(exponents)
    s = (2.0 * np.sqrt(np.outer(a, a)) / (a[:, None] + a[None, :])) ** 1.5  # <g_k|g_l>
    c = np.asarray(coefs)
    return float(np.sqrt(max(c @ s @ c, 0.0)))


def fit_structures(paths, keys: Iterable[str] | None = None, max_structures: int = 400,
                   seed: int = 0) -> list[tuple[object, str]]:
    """(dataset, key) of the structures :func:`fit_on_data` fits on: those of eqchem data files ``paths``
    (``keys``: only these, e.g. a split's training keys; default all), a seeded sample of at most
    ``max_structures`` (the fit has a few dozen coefficients) plus one structure of every element it misses."""
    from ..data.reader import H5Dataset

    wanted = None if keys is None else set(keys)
    found = [(ds, k) for ds in (H5Dataset(p) for p in paths) for k in sorted(ds.keys())
             if wanted is None or k in wanted]
    if len(found) > max_structures:
        pick = set(np.random.default_rng(seed).choice(len(found), max_structures, replace=False).tolist())
        covered = {int(z) for i in pick for z in found[i][0].numbers(found[i][1])}
        for i, (ds, key) in enumerate(found):
            new = {int(z) for z in ds.numbers(key)} - covered
            if new:
                pick.add(i)
                covered |= new
        found = [found[i] for i in sorted(pick)]
    return found


def fit_on_data(structures: list[tuple[object, str]],
                on_done: Callable[[str], None] | None = None) -> tuple[PotentialFit, dict]:
    """:func:`fit_atomic_potentials` on ``structures`` (:func:`fit_structures`); the residual is the stored
    Kohn–Sham matrix minus the ``core-j`` guess. ``on_done(key)`` after each structure."""
    from ..io.structure import Structure
    from .guess import analytic_guess
    from .runner import build_mole

    def samples():
        for ds, key in structures:
            rec = ds[key]
            if rec.hamiltonian.ndim != 2:
                raise DataError(f"{ds.path}:{key}: atomic potentials are fitted on restricted (RKS) data only")
            mol = build_mole(Structure(rec.numbers, rec.positions, charge=rec.charge), ds.basis,
                             spin=int(rec.attrs.get("spin", 0)))
            yield mol, rec.hamiltonian - analytic_guess(mol, ds.basis, "core-j", rec.n_electrons)
            if on_done:
                on_done(key)

    return fit_atomic_potentials(samples())
