"""Fitted effective atomic potentials: the grid-free ``core-jx`` guess.

``core-j`` (T + V_nuc + J of superposed neutral atomic densities) leaves out exchange and correlation, the
largest part of its error against the converged Kohn–Sham matrix, and its J costs a three-centre Coulomb
integral per AO pair and atom. ``core-jx`` is

    H_guess = T + V_nuc + J_lr + V,     J_lr = Σ_A Z_A erf(ω r_A) / r_A,     V = Σ_A v_{Z_A}(r_A),
    v_Z(r) = Σ_k c_Zk g_k(r),

J_lr the Coulomb potential of each atom's electrons spread as one Gaussian of exponent ω² (:data:`OMEGA`),
which carries the long-range part of the neutral atoms' electrostatics (it cancels V_nuc's 1/r tail) and
costs one nuclear-attraction integral with Gaussian nuclei; v_Z a spherical potential per element on normalised
s Gaussians g_k of fixed even-tempered exponents (:data:`EXPONENTS`), whose few dozen coefficients c_Zk are
solved by linear least squares so that H_guess is closest to the reference Kohn–Sham matrices of training
structures (:func:`fit_atomic_potentials`). v_Z thus holds the short-range rest of the atom's electrostatics
and the average exchange–correlation potential its electrons feel in the training molecules: the idea of a
superposition of atomic potentials (SAP, Lehtola 2019), fitted to molecular Kohn–Sham matrices of the
functional at hand instead of to atoms. In a molecule each atom becomes one contracted s function, so V costs
one three-centre overlap integral per AO pair and atom (libcint): no DFT grid, no density fitting, no Coulomb
three-centre integral; s functions are rotation invariant, so the guess is exactly equivariant.

``bench/guess_mae.py`` measures every guess alone against H (QM9 at B3LYP/def2-SVP and distorted water;
results in ``bench/results/guess_mae/``); the fit's own summary (``eqchem guess --kind core-jx``) and
``bench/vs_pyscf.py``'s guess-alone row give it on other molecules.

Units: ω in bohr⁻¹, exponents bohr⁻², coefficients Eh (per normalised Gaussian), matrices Eh. A fit travels as
JSON-able ``{str(Z): [[exponents...], [coefficients...]]}`` in guess files and model files (``baseline_params``).
"""
from __future__ import annotations

import functools
from typing import Callable, Iterable

import numpy as np

from ..errors import DataError
from ..io.elements import symbol
from .atomic_density import ghost_mole

EXPONENTS = tuple(0.05 * 3.0 ** k for k in range(10))
"""Exponents (bohr⁻²) of every element's potential: 0.05 … 984, spacing ×3; the three-centre integrals
cost in proportion to their number (``bench/guess_mae.py`` measures the fit's error with them)."""

OMEGA = 0.5
"""ω (bohr⁻¹) of the long-range Coulomb part J_lr (the fitted potentials take up what it leaves)."""

RIDGE = 1e-10
"""Relative ridge of the least-squares fit (columns scaled to unit norm)."""

PotentialFit = dict[str, list[list[float]]]


def long_range_coulomb(mol, omega: float = OMEGA) -> np.ndarray:
    """(nao, nao) J_lr (Eh): Σ_A Z_A <μ| erf(ω r_A)/r_A |ν>, each atom's nuclear charge as a Gaussian of
    exponent ω² (PySCF's Gaussian nuclear model, one nuclear-attraction integral)."""
    spread = mol.copy()
    for atom in range(spread.natm):
        spread.set_nuc_mod(atom, omega ** 2)
    return -spread.intor_symmetric("int1e_nuc")


def unfitted_part(mol, n_electrons: float | None = None, omega: float = OMEGA) -> np.ndarray:
    """(nao, nao) T + V_nuc + J_lr (Eh) of ``mol``: the core-jx guess without its fitted potentials; J_lr
    (the neutral atoms' electrons) scaled to ``n_electrons`` (default: the neutral count)."""
    j = long_range_coulomb(mol, omega)
    neutral = float(mol.atom_charges().sum())
    if n_electrons is not None and n_electrons != neutral:
        j = j * (n_electrons / neutral)
    return mol.intor_symmetric("int1e_kin") + mol.intor_symmetric("int1e_nuc") + j


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
    residual (nao, nao) Eh being what the potentials should add (reference − :func:`unfitted_part`). One pass,
    normal equations only (memory independent of the number of samples).

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
    Kohn–Sham matrix minus :func:`unfitted_part`. ``on_done(key)`` after each structure."""
    from ..io.structure import Structure
    from .runner import build_mole

    def samples():
        for ds, key in structures:
            rec = ds[key]
            if rec.hamiltonian.ndim != 2:
                raise DataError(f"{ds.path}:{key}: atomic potentials are fitted on restricted (RKS) data only")
            mol = build_mole(Structure(rec.numbers, rec.positions, charge=rec.charge), ds.basis,
                             spin=int(rec.attrs.get("spin", 0)))
            yield mol, rec.hamiltonian - unfitted_part(mol, rec.n_electrons)
            if on_done:
                on_done(key)

    return fit_atomic_potentials(samples())
