"""The simulated bands: one table for filters, detectors, zeropoints, PSFs and noise.

Everything the field simulator (``pipeline.mock``) needs to know about a band lives in
``BANDS`` (name -> :class:`Band`), so the rest of the pipeline can import the same numbers
(e.g. ``BANDS['f160w'].photfnu``).

Conventions
-----------
* HST names are lower case (``f160w``), IRAC channels ``ch1``/``ch2`` (the release's names).
* ``eazy_id`` is the filter number in EAZY's ``FILTER.RES.latest`` (same as
  ``alcsdb/data/filters.csv``); ``photplam`` (Angstrom) is that curve's pivot wavelength.
* ``photfnu`` is in Jy s / electron: ``uJy = e/s * photfnu * 1e6``, equivalently
  ``ZP = -2.5 log10(photfnu) + 8.90``; ``photflam`` (erg/s/cm2/A per e/s) is derived from the
  same zeropoint so that ``-2.5 log10(photflam) - 21.10 - 5 log10(photplam) + 18.6921 = ZP``.
* HST effective PSF (pixel response included) = ``(1 - halo_frac) * core + halo_frac *
  (core (x) halo)``, ``core`` = Airy(pivot, D = 2.4 m, obscuration 0.33) (x) Gaussian(``core_sigma``)
  truncated at ``CORE_TRUNC_ARCSEC``, ``halo`` = Moffat(``halo_beta``, ``halo_fwhm``) truncated
  at ``HALO_TRUNC_ARCSEC``. The four numbers were fitted (least squares, radii >= 0.2", twice
  the weight up to 0.5") to the real encircled-energy curves in ``psf/hst_encircled_energy.fits``
  with the native pixel included, as the mock records it (``sim_psf.effective_psf``; the
  earlier fit, made without the pixel, left the WFC3/IR model 1.5-2% short of the table at
  0.3-0.4" and the 0.7"-aperture totals of IR stars 2-3% low), halo FWHM >= 0.25" so the halo
  kernel is sampled on the native grids: the model EE agrees with the table to < 0.015 beyond
  0.2" and to 0.7% at 0.35" (the minimum Kron radius; table linearly interpolated as the
  photometry does). ``fwhm`` is the resulting effective FWHM (arcsec, pixel included), for
  reference.
* IRAC bands use the real empirical PSFs ``psf/irac_ch{1,2}_warm_psf.fits``; their
  ``fwhm`` is nominal.
* Noise: ``sky`` (HST e/s/pixel, IRAC MJy/sr), ``read_noise`` (e-), ``dark`` (e/s/pixel);
  ``depth`` = default 5-sigma point-source AB depth of the full stack (HST: 0.7" diameter
  aperture; IRAC: PSF-fitting, i.e. noise-equivalent area of the PSF).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CORE_TRUNC_ARCSEC = 0.75
HALO_TRUNC_ARCSEC = 5.0
HST_DIAMETER_M = 2.4
HST_OBSCURATION = 0.33


@dataclass(frozen=True)
class Band:
    """One filter or IRAC channel (see module docstring for units)."""

    name: str
    eazy_id: int
    instrument: str  # 'ACS', 'WFC3' or 'IRAC'
    detector: str  # 'WFC', 'IR' or '' for IRAC
    pixscale: float  # native pixel scale, arcsec
    fwhm: float  # effective PSF FWHM, arcsec
    photplam: float  # pivot wavelength, Angstrom
    zeropoint: float  # AB magnitude of 1 e/s (HST) ; 0 for IRAC
    depth: float  # default 5-sigma AB depth of the stack
    sky: float
    read_noise: float
    dark: float
    core_sigma: float = 0.0
    halo_frac: float = 0.0
    halo_fwhm: float = 0.0
    halo_beta: float = 0.0

    @property
    def is_hst(self) -> bool:
        return self.instrument != "IRAC"

    @property
    def photfnu(self) -> float:
        """Jy s / e (HST only)."""
        return 10 ** (-0.4 * (self.zeropoint - 8.90))

    @property
    def photflam(self) -> float:
        """erg / s / cm2 / A per e/s (HST only), consistent with ``photfnu``."""
        return 10 ** (-0.4 * (self.zeropoint + 21.10 + 5 * np.log10(self.photplam) - 18.6921))

    @property
    def header_filter(self) -> str:
        """Filter name as written in real headers (upper case)."""
        return self.name.upper()


BANDS: dict[str, Band] = {b.name: b for b in [
    # name      eazy  inst    det   pix    fwhm   pivot     ZP      depth sky   RN    dark   core_sig halo_f  halo_fwhm halo_beta
    Band("f435w", 233, "ACS", "WFC", 0.05, 0.124, 4318.9, 25.662, 28.5, 0.020, 4.5, 0.006, 0.0442, 0.1447, 0.25, 1.0639),
    Band("f606w", 236, "ACS", "WFC", 0.05, 0.120, 5921.1, 26.493, 28.5, 0.060, 4.5, 0.006, 0.0402, 0.1222, 0.25, 1.0210),
    Band("f814w", 239, "ACS", "WFC", 0.05, 0.121, 8057.0, 25.947, 28.5, 0.050, 4.5, 0.006, 0.0386, 0.1377, 0.25, 1.0575),
    Band("f105w", 202, "WFC3", "IR", 0.128, 0.156, 10545.0, 26.269, 28.0, 0.90, 12.0, 0.05, 0.0331, 0.1460, 0.66, 1.3203),
    Band("f125w", 203, "WFC3", "IR", 0.128, 0.145, 12471.0, 26.230, 28.0, 0.75, 12.0, 0.05, 0.0168, 0.2054, 0.25, 1.1286),
    Band("f160w", 205, "WFC3", "IR", 0.128, 0.155, 15396.0, 25.946, 28.0, 0.60, 12.0, 0.05, 0.0000, 0.2296, 0.25, 1.1716),
    Band("ch1", 18, "IRAC", "", 1.2233, 1.66, 35569.0, 0.0, 24.5, 0.10, 0.0, 0.0),
    Band("ch2", 19, "IRAC", "", 1.2164, 1.72, 45020.0, 0.0, 24.5, 0.30, 0.0, 0.0),
]}

HST_BANDS: tuple[str, ...] = tuple(n for n, b in BANDS.items() if b.is_hst)
IRAC_BANDS: tuple[str, ...] = tuple(n for n, b in BANDS.items() if not b.is_hst)

# IRAC calibration constants written into BCD headers (warm mission values).
IRAC_FLUXCONV = {"ch1": 0.1257, "ch2": 0.1447}  # (MJy/sr) / (DN/s)
IRAC_GAIN = {"ch1": 3.7, "ch2": 3.71}  # e / DN
IRAC_FRAMTIME = 100.0  # s
IRAC_EXPTIME = 93.6  # s

ARCSEC2_SR = (np.pi / 180.0 / 3600.0) ** 2


def ujy_to_counts(flux_ujy, band: Band):
    """HST: microJansky -> electrons/s (``e/s = uJy / (photfnu * 1e6)``)."""
    return np.asarray(flux_ujy) / (band.photfnu * 1e6)


def ujy_per_pixel_to_mjysr(flux_ujy, pixel_area_arcsec2: float):
    """IRAC: microJansky in one pixel of ``pixel_area_arcsec2`` -> MJy/sr."""
    return np.asarray(flux_ujy) * 1e-12 / (pixel_area_arcsec2 * ARCSEC2_SR)
