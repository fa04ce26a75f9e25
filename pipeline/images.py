"""Loading and saving the images stages pass to each other (FITS with a celestial WCS)."""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS, FITSFixedWarning

from alcsdb.errors import InputError


def load_image(path: Path) -> tuple[np.ndarray, fits.Header, WCS]:
    """(data as float64, merged primary+image header, celestial WCS) of the first image HDU."""
    try:
        with fits.open(path, memmap=False) as hdul:
            hdu = next(h for h in hdul if h.is_image and h.data is not None and h.data.ndim == 2)
            header = hdul[0].header.copy()
            header.update(hdu.header)
            data = np.asarray(hdu.data, dtype=np.float64)
    except (OSError, StopIteration, ValueError) as exc:
        raise InputError(f"{path}: cannot read the image ({exc})") from exc
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        wcs = WCS(header, naxis=2)
    return data, header, wcs


def save_image(path: Path, data: np.ndarray, wcs: WCS, cards: dict | None = None, dtype=np.float32) -> Path:
    header = wcs.to_header()
    for key, value in (cards or {}).items():
        header[key] = value
    fits.PrimaryHDU(data=np.asarray(data, dtype=dtype), header=header).writeto(path, overwrite=True)
    return path


def pixscale_arcsec(wcs: WCS) -> float:
    return float(np.sqrt(abs(np.linalg.det(wcs.pixel_scale_matrix))) * 3600.0)


def block_to_grid(sci: np.ndarray, wht: np.ndarray, factor: int) -> tuple[np.ndarray, np.ndarray]:
    """Sum `factor` x `factor` blocks (fluxes add, variances add): a fine grid onto a coarser aligned one."""
    if factor == 1:
        return sci, wht
    ny, nx = sci.shape[0] // factor, sci.shape[1] // factor
    s = sci[: ny * factor, : nx * factor].reshape(ny, factor, nx, factor)
    w = wht[: ny * factor, : nx * factor].reshape(ny, factor, nx, factor)
    good = (w > 0) & np.isfinite(w) & np.isfinite(s)
    var = np.where(good, 1.0 / np.where(good, w, 1.0), 0.0).sum(axis=(1, 3))
    flux = np.where(good, s, 0.0).sum(axis=(1, 3))
    complete = good.all(axis=(1, 3))
    out_w = np.where(complete & (var > 0), 1.0 / np.where(var > 0, var, 1.0), 0.0)
    return np.where(complete, flux, 0.0), out_w
