"""golfir's dilated segmentation map for the IRAC models (``ImageModeler.watershed_segmentation``).

The detection segments stop at the detection isophote, while IRAC models are built from the
HST light inside each segment; golfir therefore grows the segments before modelling: the HST
image minus its sky median is smoothed with a Gaussian (sigma ``smooth_pix`` HST pixels), its
significance computed with the equally smoothed variance, and a watershed of the smoothed image,
seeded at each source's peak pixel and limited to significance > ``min_sn``, assigns the faint
surroundings to sources. Detection segments keep their pixels; watershed pixels fill the rest.
"""
from __future__ import annotations

import numpy as np
from astropy.convolution import Gaussian2DKernel
from scipy import signal
from skimage.segmentation import watershed


def watershed_segmentation(sci: np.ndarray, wht: np.ndarray, seg: np.ndarray, ids: np.ndarray,
                           xpeak: np.ndarray, ypeak: np.ndarray, *, smooth_pix: float = 5.0,
                           min_sn: float = 1.0) -> np.ndarray:
    """Dilated copy of ``seg`` (see the module docstring).

    ``sci``: HST image (any flux unit); ``wht``: its inverse variance (0 = no data); ``ids``,
    ``xpeak``, ``ypeak``: source ids and zero-indexed peak pixels (markers; those off the image
    are skipped). The variance is floored at the 5th-percentile weight as golfir does.
    """
    kernel = Gaussian2DKernel(smooth_pix).array
    valid = wht > 0
    sky = np.median(sci[valid & (seg == 0)])
    smooth = signal.oaconvolve(np.where(valid, sci - sky, 0.0), kernel, mode="same")
    floor = np.percentile(wht[valid], 5)
    var = 1.0 / np.maximum(wht, floor)
    smooth_var = signal.oaconvolve(var, kernel ** 2, mode="same")
    xi = np.round(np.asarray(xpeak)).astype(int)
    yi = np.round(np.asarray(ypeak)).astype(int)
    inside = (xi >= 0) & (xi < seg.shape[1]) & (yi >= 0) & (yi < seg.shape[0])
    markers = np.zeros(seg.shape, dtype=np.int64)
    markers[yi[inside], xi[inside]] = np.asarray(ids)[inside]
    grown = watershed(-smooth, markers, mask=smooth / np.sqrt(smooth_var) > min_sn)
    return np.where(seg > 0, seg, grown).astype(seg.dtype)
