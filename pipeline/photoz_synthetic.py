"""Synthetic photometry catalogs for photo-z tests and benchmarks (no images).

Galaxies are drawn as the mock field's background population (``pipeline.sim_sources``:
F160W magnitudes from its number counts, redshifts and EAZY templates from its recipe), their
band fluxes are the mock's (``pipeline.sim_sed.galaxy_band_fluxes``: the template redshifted,
IGM-attenuated and integrated through the filter curves), and each band gets Gaussian noise
of a point source at the band's 5-sigma depth (``pipeline.sim_bands.BANDS``), so a catalog of
any size has the mock's photometry without rendering and measuring images.
"""
from __future__ import annotations

import numpy as np
from astropy.table import Table

from pipeline.sim_bands import BANDS
from pipeline.sim_sed import galaxy_band_fluxes
from pipeline.sim_sources import BG_DENSITY_28, BG_MAG_RANGE, BG_SLOPE, _background


def sigma_ujy(band: str) -> float:
    """1-sigma flux error (uJy) of a point source in ``band`` at its nominal 5-sigma depth."""
    return 10 ** (-0.4 * (BANDS[band].depth - 23.9)) / 5.0


def synthetic_catalog(n: int, seed: int = 0, *, bands: tuple[str, ...] = tuple(BANDS),
                      mag_range: tuple[float, float] = (18.0, 27.0)) -> Table:
    """``n`` galaxies with F160W magnitudes in ``mag_range`` (the mock's counts, so mostly faint):
    ``id`` (1..n), ``z``, ``template``, ``mag_f160w``, true fluxes ``true_{band}`` and measured
    ``flux_{band}`` / ``err_{band}`` (uJy) for every band of ``bands``."""
    if n < 1:
        raise ValueError(f"n = {n}: need at least one source")
    lo, hi = mag_range
    if not BG_MAG_RANGE[0] <= lo < hi <= BG_MAG_RANGE[1]:
        raise ValueError(f"mag_range {mag_range} must lie within the mock's {BG_MAG_RANGE}")
    rng = np.random.default_rng(seed)
    # the mock's background draw over an area holding ~2n sources in mag_range, then n of them
    per_arcmin2 = BG_DENSITY_28 * (10 ** (BG_SLOPE * (hi - 28.0)) - 10 ** (BG_SLOPE * (lo - 28.0)))
    half = 30.0 * np.sqrt(2.0 * n / per_arcmin2)  # arcsec: half the side of a square of 2n / density arcmin2
    drawn = _background(rng, half)
    keep = np.flatnonzero((drawn["mag_f160w"] >= lo) & (drawn["mag_f160w"] < hi))
    while keep.size < n:  # a short Poisson draw: draw a larger area
        half *= 1.2
        drawn = _background(rng, half)
        keep = np.flatnonzero((drawn["mag_f160w"] >= lo) & (drawn["mag_f160w"] < hi))
    keep = keep[:n]
    table = Table()
    table["id"] = np.arange(1, n + 1)
    table["z"] = np.asarray(drawn["z"], float)[keep]
    table["template"] = np.asarray(drawn["template"], np.int16)[keep]
    table["mag_f160w"] = np.asarray(drawn["mag_f160w"], float)[keep]
    true = np.empty((n, len(bands)))
    for i, (template, z, mag) in enumerate(zip(table["template"], table["z"], table["mag_f160w"])):
        rel = galaxy_band_fluxes(int(template), float(z))
        scale = 10 ** (-0.4 * (mag - 23.9)) / rel["f160w"]
        true[i] = [rel[b] * scale for b in bands]
    for j, band in enumerate(bands):
        err = np.full(n, sigma_ujy(band))
        table[f"true_{band}"] = true[:, j]
        table[f"flux_{band}"] = true[:, j] + rng.normal(0.0, 1.0, n) * err
        table[f"err_{band}"] = err
    return table
