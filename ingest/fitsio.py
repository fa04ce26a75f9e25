"""Reading release FITS files with errors that name the file and the problem."""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from astropy.io import fits

from alcsdb.errors import InputError

MISSING = -99.0
#: flux units the release uses; anything else in TUNIT is a units error
FLUX_UNITS = {"", "ujy", "microjy", "microjansky", "µjy", "uJy".lower()}


def read_table(path: Path) -> tuple[fits.FITS_rec, fits.Header, dict[str, str]]:
    """The first binary table of a FITS file, fully read; InputError if truncated or not FITS.

    Returns (data, header, units) with units {column: TUNIT lower-cased}.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", fits.verify.VerifyWarning)
            with fits.open(path, memmap=False, lazy_load_hdus=False) as hdul:
                hdul.verify("exception")
                tables = [h for h in hdul if isinstance(h, fits.BinTableHDU)]
                if not tables:
                    raise InputError(f"{path}: no binary table extension")
                hdu = tables[0]
                data = hdu.data
                if data is None:
                    raise InputError(f"{path}: the table has no rows")
                data = data.copy()  # forces the whole table to be read: truncation shows here
                header = hdu.header.copy()
    except InputError:
        raise
    except (OSError, ValueError, TypeError, IndexError, KeyError, fits.verify.VerifyError, Warning) as exc:
        raise InputError(f"{path}: not a readable FITS table ({_short(exc)})") from exc
    units = {}
    for i, name in enumerate(data.columns.names, start=1):
        units[name] = str(header.get(f"TUNIT{i}", "")).strip().lower()
    return data, header, units


def read_image_header(path: Path) -> tuple[fits.Header, fits.Header, tuple[int, ...]]:
    """(primary header, image header, image shape) of a (possibly gzipped) FITS image."""
    try:
        with fits.open(path, memmap=False) as hdul:
            hdul.verify("exception")
            image = next((h for h in hdul if h.is_image and h.data is not None and h.data.ndim >= 2), None)
            if image is None:
                raise InputError(f"{path}: no image data")
            return hdul[0].header.copy(), image.header.copy(), tuple(image.data.shape)
    except InputError:
        raise
    except (OSError, ValueError, TypeError, IndexError, EOFError, fits.verify.VerifyError) as exc:
        raise InputError(f"{path}: not a readable FITS image ({_short(exc)})") from exc


def _short(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200] or type(exc).__name__


def column(data: fits.FITS_rec, name: str, path: Path, *, ndim: int = 1, width: int | None = None) -> np.ndarray:
    """A column as a float or int array with the expected shape, else InputError naming it."""
    try:
        values = np.asarray(data[name])
    except KeyError:
        raise InputError(f"{path}: missing column {name!r}") from None
    if values.ndim != ndim or (width is not None and values.shape[1] != width):
        expected = "a scalar" if ndim == 1 else f"a vector of {width}"
        raise InputError(f"{path}: column {name!r} has shape {values.shape[1:] or 'scalar'}, expected {expected} "
                         "per row (inconsistent shape)")
    if values.dtype.kind not in "fiub":
        raise InputError(f"{path}: column {name!r} is {values.dtype}, expected numbers")
    return values


def as_float(values: np.ndarray) -> np.ndarray:
    """float64 copy with the release's -99 (and non-finite) as NaN (-> SQL NULL)."""
    out = np.asarray(values, dtype=np.float64).copy()
    out[(out == MISSING) | ~np.isfinite(out)] = np.nan
    return out


def as_int(values: np.ndarray) -> np.ma.MaskedArray:
    """int64 masked where the release wrote -99."""
    arr = np.asarray(values)
    if arr.dtype.kind == "f":
        bad = ~np.isfinite(arr) | (arr == MISSING)
        return np.ma.masked_array(np.where(bad, 0, arr).astype(np.int64), mask=bad)
    return np.ma.masked_array(arr.astype(np.int64), mask=arr == MISSING)
