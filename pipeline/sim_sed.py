"""True band fluxes of simulated sources from EAZY templates and filter curves.

Galaxies use the EAZY template set ``templates/fsps_full/tweak_fsps_QSF_12_v3.param``
(``template`` = 0-based index in that file's order) redshifted, attenuated by the
Inoue et al. (2014) IGM model (``eazy.igm.Inoue14``) and integrated through the
``FILTER.RES.latest`` curves of ``pipeline.sim_bands.BANDS``; stars use black bodies.
Band flux densities are photon-weighted means of f_nu,
``<f_nu> = int f_nu T dlam/lam / int T dlam/lam`` (the AB convention of HST and EAZY).
"""
from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from alcsdb.config import eazy_dir
from pipeline.sim_bands import BANDS

TEMPLATE_PARAM = "templates/fsps_full/tweak_fsps_QSF_12_v3.param"
# 0-based template indices: red/quiescent ones (cluster members, BCGs), dusty, star-forming
QUIESCENT_TEMPLATES = (2, 3, 4)
DUSTY_TEMPLATES = (5, 11)
STAR_FORMING_TEMPLATES = (0, 1, 6, 7, 8, 9, 10)
LYMAN_ALPHA_ANGSTROM = 1215.67


def _import_eazy():
    """Import eazy quietly (it prints a warning about an optional package on import)."""
    with contextlib.redirect_stdout(io.StringIO()):
        import eazy.filters
        import eazy.igm
    return eazy


@dataclass(frozen=True)
class FilterCurve:
    wave: np.ndarray  # Angstrom
    throughput: np.ndarray


@lru_cache(maxsize=1)
def filter_curves() -> dict[str, FilterCurve]:
    """The FILTER.RES.latest curve of every band in BANDS."""
    eazy = _import_eazy()
    ff = eazy.filters.FilterFile(str(eazy_dir() / "FILTER.RES.latest"))
    out = {}
    for name, band in BANDS.items():
        f = ff[band.eazy_id]
        out[name] = FilterCurve(np.asarray(f.wave, float), np.asarray(f.throughput, float))
    return out


@lru_cache(maxsize=1)
def templates() -> list[tuple[np.ndarray, np.ndarray]]:
    """The EAZY templates as (rest wavelength [A], f_lambda) pairs, in param-file order."""
    root = eazy_dir()
    out = []
    for line in (root / TEMPLATE_PARAM).read_text().splitlines():
        parts = line.split()
        if len(parts) < 2 or parts[0].startswith("#"):
            continue
        data = np.loadtxt(root / parts[1])
        out.append((data[:, 0], data[:, 1]))
    return out


@lru_cache(maxsize=1)
def _igm():
    return _import_eazy().igm.Inoue14()


@lru_cache(maxsize=1)
def _all_waves() -> tuple[np.ndarray, list[tuple[str, slice]]]:
    """All filter wavelengths concatenated, with each band's slice (one SED evaluation)."""
    parts, slices, start = [], [], 0
    for name, curve in filter_curves().items():
        parts.append(curve.wave)
        slices.append((name, slice(start, start + len(curve.wave))))
        start += len(curve.wave)
    return np.concatenate(parts), slices


def _band_means(fnu_fn, nodes: np.ndarray | None = None) -> dict[str, float]:
    """Photon-weighted mean f_nu of ``fnu_fn`` (a function of observed wavelength) in every band.

    ``nodes``: observed wavelengths where ``fnu_fn`` has structure (a redshifted template's own
    grid); they join each band's integration grid, so narrow emission lines are integrated
    rather than point-sampled on the filter curve's coarser grid (5-50 A: a line falls between
    samples or is weighted by a whole sample interval, up to 30% band errors for line-rich
    templates).
    """
    waves, slices = _all_waves()
    curves = filter_curves()
    out = {}
    if nodes is None:
        fnu_all = fnu_fn(waves)
    for name, sl in slices:
        w = waves[sl]
        if nodes is None:
            f, throughput = fnu_all[sl], curves[name].throughput
        else:
            w = np.union1d(w, nodes[(nodes > w[0]) & (nodes < w[-1])])
            f, throughput = fnu_fn(w), np.interp(w, waves[sl], curves[name].throughput)
        weight = throughput / w
        out[name] = float(np.trapezoid(f * weight, w) / np.trapezoid(weight, w))
    return out


def galaxy_band_fluxes(template: int, z: float) -> dict[str, float]:
    """Relative f_nu in every band of template ``template`` at redshift ``z`` (with IGM).

    Arbitrary common normalisation: scale by ``flux_ref / result[ref_band]``.
    """
    wave, flam = templates()[template]
    igm = _igm()

    def fnu(w_obs):
        rest = w_obs / (1.0 + z)
        f = np.interp(rest, wave, flam, left=0.0, right=0.0) * w_obs ** 2
        blue = rest < LYMAN_ALPHA_ANGSTROM  # the IGM absorbs nothing redward of Lyman alpha
        if blue.any():
            f[blue] *= igm.full_IGM(z, w_obs[blue])
        return f

    return _band_means(fnu, nodes=wave * (1.0 + z))


def blackbody_band_fluxes(teff: float) -> dict[str, float]:
    """Relative f_nu in every band of a black body of temperature ``teff`` (K)."""
    hc_k = 1.4387769e8  # h c / k in Angstrom K

    def fnu(w):
        x = np.clip(hc_k / (w * teff), None, 700.0)
        return 1.0 / (w ** 3 * np.expm1(x))  # B_nu(c / lambda) up to a constant

    return _band_means(fnu)


def ab_mag(flux_ujy):
    """AB magnitude of a flux in microJansky (zeropoint 23.9)."""
    return 23.9 - 2.5 * np.log10(flux_ujy)
