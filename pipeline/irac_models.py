"""IRAC model images of HST sources: the columns of the design matrix (golfir's method).

Each source's segmentation-masked HST cutout (uJy per HST pixel) is convolved with a kernel on the
HST grid and sum-binned into the IRAC pixels, then normalised to unit sum so that its coefficient
in the fit is the source's total flux density in uJy.

Speed: golfir convolves every source over the whole patch with an FFT (about 60 ms per source for
a 2' patch). Here only the cutout is convolved and never on the fine grid: binning after a
convolution is a sum over the ``ratio**2`` sub-pixel phases of coarse convolutions, so the
kernel is shifted and box-summed once (``BinnedKernel``) and each source costs ``ratio**2`` small
coarse FFTs. This is the same linear map, exact to rounding.

Grids: an IRAC mosaic aligned to the HST mosaic with an integer pixel ratio (0.5" / 0.1" = 5).
``IracGeometry(ratio, x0, y0)``: IRAC pixel (j, i) (row, column) covers HST pixels
``y0 + ratio*j ... y0 + ratio*j + ratio - 1`` and likewise in x; coordinates are zero-indexed
pixel centres, so ``x_irac = (x_hst + 0.5 - x0) / ratio - 0.5``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import scipy.sparse as sp
from numpy.polynomial import hermite
from scipy import fft, ndimage, signal

from .irac_kernel import pad_to, shift_image


@dataclass(frozen=True)
class IracGeometry:
    """Integer-ratio alignment of an IRAC grid to an HST grid (see the module docstring)."""

    ratio: int = 5
    x0: int = 0
    y0: int = 0

    def hst_to_irac(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        r = self.ratio
        return (np.asarray(x) + 0.5 - self.x0) / r - 0.5, (np.asarray(y) + 0.5 - self.y0) / r - 0.5

    def irac_to_hst(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        r = self.ratio
        return (np.asarray(x) + 0.5) * r + self.x0 - 0.5, (np.asarray(y) + 0.5) * r + self.y0 - 0.5

    def moved(self, dx_hst: int, dy_hst: int) -> IracGeometry:
        """The same IRAC grid seen from an HST array whose pixel 0 is HST pixel (dx, dy)."""
        return IracGeometry(self.ratio, self.x0 - dx_hst, self.y0 - dy_hst)

    @classmethod
    def from_wcs(cls, hst_wcs, irac_wcs, tol: float = 0.01) -> IracGeometry:
        """Geometry of two astropy WCS that share orientation and whose pixel scales have an
        integer ratio with aligned pixel edges (as the ALCS IRAC mosaics, drizzled onto the HST
        grid); raises ValueError otherwise (tolerance ``tol`` IRAC pixels)."""
        xh = np.array([0.0, 1000.0, 0.0])
        yh = np.array([0.0, 0.0, 1000.0])
        xi, yi = irac_wcs.all_world2pix(*hst_wcs.all_pix2world(xh, yh, 0), 0)
        ratio_x = 1000.0 / (xi[1] - xi[0])
        ratio_y = 1000.0 / (yi[2] - yi[0])
        ratio = int(round(ratio_x))
        if (abs(ratio_x - ratio) > tol * ratio or abs(ratio_y - ratio) > tol * ratio
                or abs(yi[1] - yi[0]) > tol or abs(xi[2] - xi[0]) > tol):
            raise ValueError(f"IRAC grid is not an aligned integer subsampling of the HST grid "
                             f"(ratio {ratio_x:.4f} x {ratio_y:.4f})")
        x0 = 0.5 - ratio * (xi[0] + 0.5)
        y0 = 0.5 - ratio * (yi[0] + 0.5)
        if abs(x0 - round(x0)) > tol * ratio or abs(y0 - round(y0)) > tol * ratio:
            raise ValueError(f"IRAC pixel edges fall inside HST pixels (offset {x0:.3f}, {y0:.3f})")
        return cls(ratio, int(round(x0)), int(round(y0)))


@dataclass
class BinnedKernel:
    """A fine-grid kernel, moved by a sub-pixel shift, box-summed over ``ratio`` x ``ratio`` and
    split into its ``ratio**2`` phase kernels on the coarse grid.

    ``phases[ry, rx, my, mx]`` is the binned response at coarse offset ``(m_lo + (my, mx))`` of
    unit flux in the fine pixel with sub-pixel phase ``(ry, rx)`` inside its coarse pixel.
    """

    phases: np.ndarray
    m_lo: tuple[int, int]
    ratio: int
    _ffts: dict = field(default_factory=dict, repr=False)

    def fft(self, shape: tuple[int, int]) -> np.ndarray:
        if shape not in self._ffts:
            self._ffts[shape] = fft.rfft2(self.phases, s=shape, workers=1)
        return self._ffts[shape]


def moved_kernel(kernel: np.ndarray, ratio: int, shift: tuple[float, float] = (0.0, 0.0),
                 blur: float = 0.0) -> tuple[np.ndarray, tuple[int, int]]:
    """``kernel`` (centre pixel (n//2, n//2), fine grid) moved by ``shift = (dx, dy)`` IRAC
    pixels: the fractional fine-pixel part by a Fourier phase ramp on a 2-pixel padded copy, the
    integer part by moving the centre index; convolved with a round Gaussian of variance ``blur``
    (IRAC pixels squared) when it is positive. Returns the array and its centre (row, column)."""
    sx, sy = shift[0] * ratio, shift[1] * ratio
    nx, ny = int(np.round(sx)), int(np.round(sy))
    k = pad_to(np.asarray(kernel, dtype=float), (kernel.shape[0] + 4, kernel.shape[1] + 4))
    if sx != nx or sy != ny:
        k = shift_image(k, sx - nx, sy - ny)
    if blur > 0:
        fy = fft.fftfreq(k.shape[0])[:, None]
        fx = fft.fftfreq(k.shape[1])[None, :]
        k = np.real(fft.ifft2(fft.fft2(k) * np.exp(-2 * np.pi ** 2 * blur * ratio ** 2 * (fx ** 2 + fy ** 2))))
    return k, (k.shape[0] // 2 - ny, k.shape[1] // 2 - nx)


def kernel_gradient(kernel: np.ndarray, centre: tuple[int, int], ratio: int, blur: bool = False
                    ) -> tuple[BinnedKernel, ...]:
    """Phase kernels of the derivatives of a moved kernel with respect to the shift (dx, dy) in
    IRAC pixels: ``-ratio * dK/dx`` and ``-ratio * dK/dy`` (Fourier derivatives); with ``blur``
    also the derivative with respect to the variance of a Gaussian blur in IRAC pixels squared,
    ``ratio**2 / 2 * laplacian(K)`` (the heat equation)."""
    spec = fft.fft2(kernel)
    fy = fft.fftfreq(kernel.shape[0])[:, None]
    fx = fft.fftfreq(kernel.shape[1])[None, :]
    out = [phase_kernels(-ratio * np.real(fft.ifft2(spec * 2j * np.pi * f)), centre, ratio) for f in (fx, fy)]
    if blur:
        lap = np.real(fft.ifft2(spec * -(2 * np.pi) ** 2 * (fx ** 2 + fy ** 2)))
        out.append(phase_kernels(ratio ** 2 / 2 * lap, centre, ratio))
    return tuple(out)


def binned_kernel(kernel: np.ndarray, ratio: int, shift: tuple[float, float] = (0.0, 0.0),
                  blur: float = 0.0) -> BinnedKernel:
    """Phase kernels of ``kernel`` (centre pixel (n//2, n//2), fine grid) for IRAC pixels of
    ``ratio`` fine pixels, with models moved by ``shift = (dx, dy)`` IRAC pixels and blurred by a
    Gaussian of variance ``blur`` IRAC pixels squared."""
    return phase_kernels(*moved_kernel(kernel, ratio, shift, blur), ratio)


def phase_kernels(k: np.ndarray, centre: tuple[int, int], ratio: int) -> BinnedKernel:
    """Box-sum the fine-grid kernel ``k`` (whose zero displacement is at index ``centre``) over
    ``ratio`` x ``ratio`` and split it into its coarse phase kernels."""
    box = signal.convolve2d(k, np.ones((ratio, ratio)), mode="full")
    index, m_lo = [], []
    for axis in range(2):
        c, length = centre[axis], k.shape[axis]
        lo = -((c + ratio - 1) // ratio)                  # ceil((-c - ratio + 1) / ratio)
        hi = (length - 1 + ratio - 1 - c) // ratio
        m = np.arange(lo, hi + 1)
        r = np.arange(ratio)[:, None]
        index.append(ratio * m[None, :] - r + c + ratio - 1)  # (ratio, n_m) rows of `box`
        m_lo.append(lo)
    iy, ix = index
    valid_y = (iy >= 0) & (iy < box.shape[0])
    valid_x = (ix >= 0) & (ix < box.shape[1])
    phases = box[np.clip(iy, 0, box.shape[0] - 1)[:, None, :, None],
                 np.clip(ix, 0, box.shape[1] - 1)[None, :, None, :]]
    phases *= valid_y[:, None, :, None] & valid_x[None, :, None, :]
    return BinnedKernel(phases, (m_lo[0], m_lo[1]), ratio)


def convolve_bin(cutout: np.ndarray, fy: int, fx: int, bk: BinnedKernel
                 ) -> tuple[np.ndarray, int, int]:
    """Convolve a fine-grid ``cutout`` with ``bk``'s kernel and sum-bin it to the coarse grid.

    ``(fy, fx)`` is the fine index of ``cutout[0, 0]`` counted from the first fine pixel of coarse
    pixel (0, 0). Returns the coarse block and the coarse index (row, column) of its pixel [0, 0].
    """
    blocks, jy, jx = convolve_bin_many(cutout, fy, fx, (bk,))
    return blocks[0], jy, jx


def convolve_bin_many(cutout: np.ndarray, fy: int, fx: int, bks: Sequence[BinnedKernel]
                      ) -> tuple[list[np.ndarray], int, int]:
    """``convolve_bin`` with several binned kernels of one shape and ``m_lo`` (the cutout's
    transform is computed once): the blocks and their common coarse index of pixel [0, 0]."""
    r = bks[0].ratio
    qy0, qx0 = fy // r, fx // r
    ay, ax = fy - r * qy0, fx - r * qx0
    nqy = -(-(ay + cutout.shape[0]) // r)
    nqx = -(-(ax + cutout.shape[1]) // r)
    aligned = np.zeros((nqy * r, nqx * r))
    aligned[ay:ay + cutout.shape[0], ax:ax + cutout.shape[1]] = cutout
    sub = aligned.reshape(nqy, r, nqx, r).transpose(1, 3, 0, 2)
    out_shape = (nqy + bks[0].phases.shape[2] - 1, nqx + bks[0].phases.shape[3] - 1)
    shape = (fft.next_fast_len(out_shape[0], real=True), fft.next_fast_len(out_shape[1], real=True))
    spec_sub = fft.rfft2(sub, s=shape, workers=1)
    blocks = []
    for bk in bks:
        if bk.phases.shape != bks[0].phases.shape or bk.m_lo != bks[0].m_lo:
            raise ValueError("convolve_bin_many: binned kernels of different shapes")
        spec = np.einsum("abij,abij->ij", spec_sub, bk.fft(shape))
        blocks.append(fft.irfft2(spec, s=shape, workers=1)[:out_shape[0], :out_shape[1]])
    return blocks, qy0 + bks[0].m_lo[0], qx0 + bks[0].m_lo[1]


@dataclass
class SampledKernels:
    """The models of a drizzled mosaic's sampling (``pipeline.sampling``): per AOR the phase
    kernels of its matching kernel and of that kernel's shift derivatives (``kernel_gradient``),
    and ``maps`` (n_aor, 3, ny, nx): each AOR's weight fraction and mean input-centre offset
    (dx, dy, IRAC pixels) over the patch box whose pixel [0, 0] is coarse (row, column)
    ``origin``. A source's model pixel is ``sum_a f_a (M_a - dx_a G_a,x - dy_a G_a,y)``: the AOR's
    model taken at the input centres (``G`` are derivatives with respect to the model's shift,
    i.e. minus the spatial ones)."""

    kernels: list[tuple[BinnedKernel, BinnedKernel, BinnedKernel]]
    maps: np.ndarray
    origin: tuple[int, int]

    @property
    def ratio(self) -> int:
        return self.kernels[0][0].ratio

    def flat(self) -> list[BinnedKernel]:
        return [bk for triple in self.kernels for bk in triple]

    def combine(self, blocks: Sequence[np.ndarray], jy: int, jx: int) -> np.ndarray:
        """The sampled model from ``flat()``-ordered blocks whose pixel [0, 0] is coarse (jy, jx);
        zero outside the patch box (no map there)."""
        ny, nx = self.maps.shape[2:]
        y0, x0 = self.origin
        out = np.zeros(blocks[0].shape)
        ylo, yhi = max(jy, y0), min(jy + out.shape[0], y0 + ny)
        xlo, xhi = max(jx, x0), min(jx + out.shape[1], x0 + nx)
        if not (ylo < yhi and xlo < xhi):
            return out
        bs = (slice(ylo - jy, yhi - jy), slice(xlo - jx, xhi - jx))
        ms = (slice(ylo - y0, yhi - y0), slice(xlo - x0, xhi - x0))
        for a in range(len(self.kernels)):
            f, dx, dy = self.maps[a, 0][ms], self.maps[a, 1][ms], self.maps[a, 2][ms]
            m, gx, gy = blocks[3 * a][bs], blocks[3 * a + 1][bs], blocks[3 * a + 2][bs]
            out[bs] += f * (m - dx * gx - dy * gy)
        return out


def sampled_kernels(kernels: Sequence[np.ndarray], maps: np.ndarray, origin: tuple[int, int], ratio: int,
                    shift: tuple[float, float] = (0.0, 0.0), blur: float = 0.0) -> SampledKernels:
    """``SampledKernels`` of the per-AOR fine-grid matching ``kernels`` (one shape), moved by
    ``shift`` and blurred by ``blur`` as ``binned_kernel``."""
    if len(kernels) != maps.shape[0]:
        raise ValueError(f"{len(kernels)} AOR kernels for {maps.shape[0]} sampling maps")
    triples = []
    for k in kernels:
        moved, centre = moved_kernel(k, ratio, shift, blur)
        gx, gy = kernel_gradient(moved, centre, ratio)
        triples.append((phase_kernels(moved, centre, ratio), gx, gy))
    return SampledKernels(triples, maps, origin)


@dataclass
class SourceModels:
    """Design-matrix columns of the sources of one patch.

    ``matrix``: (ny*nx, nsrc) CSC, row = pixel of the patch box in row-major order, each column
    normalised to unit sum over its whole (unclipped) support; ``norm``: the un-normalised sum,
    i.e. the HST flux (uJy) inside the segment; ``ids`` the kept ids (sources with norm <= 0 or
    absent from the segmentation map are dropped, as golfir does).
    """

    ids: np.ndarray
    matrix: sp.csc_matrix
    norm: np.ndarray


def place_block(block: np.ndarray, jy: int, jx: int, origin: tuple[int, int],
                shape: tuple[int, int]) -> np.ndarray:
    """A ``shape`` image whose pixel [0, 0] is coarse (row, column) ``origin``, holding the part
    of ``block`` (pixel [0, 0] at coarse (jy, jx)) that falls on it, zeros elsewhere."""
    out = np.zeros(shape)
    y0, x0 = origin
    ylo, yhi = max(jy, y0), min(jy + block.shape[0], y0 + shape[0])
    xlo, xhi = max(jx, x0), min(jx + block.shape[1], x0 + shape[1])
    if ylo < yhi and xlo < xhi:
        out[ylo - y0:yhi - y0, xlo - x0:xhi - x0] = block[ylo - jy:yhi - jy, xlo - jx:xhi - jx]
    return out


def segment_boxes(seg: np.ndarray, ids: np.ndarray) -> list[tuple[slice, slice] | None]:
    """Bounding slices of the segments ``ids`` in ``seg`` (None where absent)."""
    objects = ndimage.find_objects(seg)
    return [objects[i - 1] if 0 < i <= len(objects) else None for i in np.asarray(ids)]


def source_models(hst_ujy: np.ndarray, seg: np.ndarray, ids: np.ndarray,
                  kernel: BinnedKernel | SampledKernels, geometry: IracGeometry,
                  box: tuple[int, int, int, int],
                  boxes: list[tuple[slice, slice] | None] | None = None) -> SourceModels:
    """IRAC model columns of the sources ``ids`` over the IRAC pixel box ``(x0, y0, nx, ny)``.

    ``hst_ujy`` (uJy per HST pixel) and ``seg`` are HST arrays seen through ``geometry``;
    ``kernel`` carries the matching kernel and the HST-to-IRAC shift (``binned_kernel``), or the
    per-AOR kernels and sampling maps of a drizzled mosaic (``sampled_kernels``, its maps over
    this box); ``boxes`` are the segments' bounding slices if already known (``segment_boxes``).
    """
    bx0, by0, bnx, bny = box
    ids = np.asarray(ids)
    if boxes is None:
        boxes = segment_boxes(seg, ids)
    sampled = isinstance(kernel, SampledKernels)
    bks = kernel.flat() if sampled else [kernel]
    data, indices, indptr, kept, norms = [], [], [0], [], []
    for sid, slices in zip(ids, boxes):
        if slices is None:
            continue
        cut = np.where(seg[slices] == sid, hst_ujy[slices], 0.0)
        blocks, jy, jx = convolve_bin_many(cut, slices[0].start - geometry.y0,
                                           slices[1].start - geometry.x0, bks)
        total = blocks[0].sum()
        block = kernel.combine(blocks, jy, jx) if sampled else blocks[0]
        if not total > 0:
            continue
        ylo, yhi = max(jy, by0), min(jy + block.shape[0], by0 + bny)
        xlo, xhi = max(jx, bx0), min(jx + block.shape[1], bx0 + bnx)
        if ylo < yhi and xlo < xhi:
            part = block[ylo - jy:yhi - jy, xlo - jx:xhi - jx] / total
            rows = ((np.arange(ylo, yhi) - by0)[:, None] * bnx
                    + (np.arange(xlo, xhi) - bx0)[None, :])
            data.append(part.ravel())
            indices.append(rows.ravel())
        indptr.append(indptr[-1] + (data[-1].size if ylo < yhi and xlo < xhi else 0))
        kept.append(sid)
        norms.append(total)
    matrix = sp.csc_matrix(
        (np.concatenate(data) if data else np.zeros(0),
         np.concatenate(indices) if indices else np.zeros(0, dtype=int), np.array(indptr)),
        shape=(bnx * bny, len(kept)))
    return SourceModels(np.array(kept, dtype=ids.dtype), matrix, np.array(norms))


def background_terms(shape: tuple[int, int], order_npix: float = 64.0,
                     order_clip: tuple[int, int] = (3, 11)) -> np.ndarray:
    """golfir's background: products of Hermite polynomials H_i(x) H_j(y), i, j < order, on
    x, y in [-1, 1] across the patch, order = clip(round(max(shape) / order_npix), *order_clip)
    (4 for a 240-pixel patch: 16 terms). Returns (ny*nx, order**2), row-major pixels."""
    order = int(np.clip(int(np.round(max(shape) / order_npix)), *order_clip))
    y = np.linspace(-1, 1, shape[0])
    x = np.linspace(-1, 1, shape[1])
    eye = np.eye(order)
    hy = np.array([hermite.hermval(y, eye[i]) for i in range(order)])
    hx = np.array([hermite.hermval(x, eye[i]) for i in range(order)])
    return (hy[:, None, :, None] * hx[None, :, None, :]).reshape(order * order, -1).T * 1e-3
