"""Weighted linear least squares for IRAC model photometry, exact and fast.

golfir solves ``min |W^1/2 (A x - y)|`` with a dense ``numpy.linalg.lstsq`` and takes errors from
``inv(A^T W A)``. Here the normal matrix ``A^T W A`` is built from the sparse source columns and
the few dense background columns block by block, Jacobi-scaled and Cholesky-factorised: the same
solution and the exact diagonal of the inverse (not an iterative ``lsqr`` estimate).

golfir's rules are kept: a source column with at most ``min_pixels`` positive weighted pixels in
the fit is unconstrained (flux and error NaN, -99 on export; golfir still fits it but gives it no
error, here it is left out of the fit so that fit and errors agree), and a flux below
``-negative_sigma`` times its error is discarded (NaN) and flagged.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np
import scipy.linalg as la
import scipy.sparse as sp


class IracFlag(enum.IntFlag):
    """Per-source bits of the IRAC measurement."""

    UNCONSTRAINED = 1   # <= min_pixels positive model pixels in the fit: flux, err NaN
    NEGATIVE = 2        # flux < -negative_sigma * err: flux, err NaN (golfir's min_clip)
    BRIGHT = 4          # bright source: its pixels are masked, it stays in the model
    SERSIC = 8          # model column replaced by a fitted Sersic profile
    NOT_MODELLED = 16   # fainter than the last magnitude limit, or no HST flux in its segment
    DEGENERATE = 32     # normal matrix singular: solved with a pseudo-inverse


@dataclass
class Solution:
    """Fit of one design matrix. ``flux``/``err``/``flag`` follow the source columns (uJy when
    the columns have unit sum); ``background``/``background_err`` the background coefficients;
    ``model`` and ``background_model`` are images over all rows of the design matrix (masked
    ones included)."""

    flux: np.ndarray
    err: np.ndarray
    flag: np.ndarray
    background: np.ndarray
    background_err: np.ndarray
    model: np.ndarray
    background_model: np.ndarray


def normal_equations(sources: sp.csr_matrix, background: np.ndarray, y: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray]:
    """``(A^T A, A^T y)`` for ``A = [background | sources]`` (already weighted rows)."""
    nb = background.shape[1]
    n = nb + sources.shape[1]
    normal = np.empty((n, n))
    normal[:nb, :nb] = background.T @ background
    cross = np.asarray(sources.T @ background)
    normal[nb:, :nb] = cross
    normal[:nb, nb:] = cross.T
    normal[nb:, nb:] = (sources.T @ sources).toarray()
    rhs = np.concatenate([background.T @ y, sources.T @ y])
    return normal, rhs


def solve_normal(normal: np.ndarray, rhs: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool]:
    """Solution and diagonal of the inverse of a symmetric positive (semi-)definite system.

    Jacobi scaling then Cholesky (LAPACK potrf/potrs/potri); when the matrix is singular the
    Moore-Penrose pseudo-inverse from an eigen-decomposition is used and the third value is True.
    Unknowns with an all-zero column (no data) get 0 and an infinite variance.
    """
    live = np.diag(normal) > 0
    x = np.zeros(len(rhs))
    var = np.full(len(rhs), np.inf)
    if not live.any():
        return x, var, False
    d = 1.0 / np.sqrt(np.diag(normal)[live])
    scaled = normal[np.ix_(live, live)] * d[:, None] * d[None, :]
    b = rhs[live] * d
    degenerate = False
    try:
        factor = la.cho_factor(scaled, lower=True, check_finite=False)
        sol = la.cho_solve(factor, b, check_finite=False)
        inverse, info = la.lapack.dpotri(factor[0], lower=1)
        if info != 0:
            raise la.LinAlgError(f"dpotri info={info}")
        diag = np.diag(inverse)
    except la.LinAlgError:
        degenerate = True
        values, vectors = la.eigh(scaled)
        good = values > values.max() * len(values) * np.finfo(float).eps
        inv_values = np.where(good, 1.0 / np.where(good, values, 1.0), 0.0)
        sol = vectors @ (inv_values * (vectors.T @ b))
        diag = (vectors ** 2) @ inv_values
    x[live] = sol * d
    var[live] = diag * d * d
    return x, var, degenerate


def solve(sources: sp.spmatrix, data: np.ndarray, weight: np.ndarray, *,
          background: np.ndarray | None = None, min_pixels: int = 5,
          negative_sigma: float = 2.0) -> Solution:
    """Weighted least-squares fit of ``data`` by the source columns plus background terms.

    ``sources``: (npix, nsrc) sparse design matrix; ``background``: (npix, nbg) dense terms;
    ``data``, ``weight``: pixel values and inverse variances (weight 0, or non-finite data, =
    pixel not fit). Errors are ``sqrt(diag(inv(A^T W A)))`` over the fitted columns; background
    terms without data get 0 and an infinite error.
    """
    npix, nsrc = sources.shape
    background = np.zeros((npix, 0)) if background is None else background
    rows = np.flatnonzero((weight > 0) & np.isfinite(data) & np.isfinite(weight))
    sw = np.sqrt(weight[rows])
    src = sp.csr_matrix(sources)[rows]
    src = sp.csr_matrix(src.multiply(sw[:, None]))
    positive = np.asarray((src > 0).sum(axis=0)).ravel()
    fitted = positive > min_pixels
    src = sp.csr_matrix(src[:, np.flatnonzero(fitted)])
    bkg = background[rows] * sw[:, None]
    normal, rhs = normal_equations(src, bkg, data[rows] * sw)
    coeffs, var, degenerate = solve_normal(normal, rhs)
    nb = background.shape[1]
    flux = np.full(nsrc, np.nan)
    err = np.full(nsrc, np.nan)
    flux[fitted] = coeffs[nb:]
    err[fitted] = np.sqrt(var[nb:])
    flag = np.where(fitted, 0, int(IracFlag.UNCONSTRAINED))
    if degenerate:
        flag |= int(IracFlag.DEGENERATE)
    background_model = background @ coeffs[:nb]
    model = background_model + sp.csc_matrix(sources)[:, np.flatnonzero(fitted)] @ coeffs[nb:]
    negative = fitted & (flux < -negative_sigma * err)
    flag[negative] |= int(IracFlag.NEGATIVE)
    flux[negative] = np.nan
    err[negative] = np.nan
    return Solution(flux, err, flag, coeffs[:nb], np.sqrt(var[:nb]), model, background_model)
