"""Patches tiling an IRAC mosaic for model photometry (golfir's ``generate_patches``).

golfir fits square patches of ``2 * patch_arcmin`` on a side (``patch_arcmin`` is a HALF-width:
the ALCS value 1 gives 2' x 2' = 240 x 240 pixels at 0.5"), spaced so that neighbours overlap by
``overlap_arcmin``. Pixels within ``border`` of a patch edge are not fit (golfir's border is where
the kernel-convolved patch edge exceeds 10% of its peak: about 5 pixels, 2.5", for ch1).

Every source is measured by exactly one patch: the patches' ownership cells partition the plane
(cell boundaries run through the middle of each overlap; the outer cells extend to infinity), and
``border <= overlap / 2`` guarantees that an owned source inside the mosaic lies in its patch's
fitted area. Pixel coordinates are zero-indexed IRAC pixel centres (pixel j spans j-0.5..j+0.5).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FAR = 2 ** 40  # an ownership bound standing for infinity


@dataclass(frozen=True)
class PatchBox:
    """One patch: IRAC pixels ``x0 .. x0+nx-1``, ``y0 .. y0+ny-1`` (may run off the mosaic);
    ``own = (xlo, xhi, ylo, yhi)`` the half-open pixel-index ranges it measures sources in."""

    index: int
    x0: int
    y0: int
    nx: int
    ny: int
    own: tuple[int, int, int, int]
    border: int

    @property
    def centre(self) -> tuple[float, float]:
        return self.x0 + (self.nx - 1) / 2, self.y0 + (self.ny - 1) / 2

    def fit_mask(self) -> np.ndarray:
        """(ny, nx) True where pixels are fit (outside the border zone)."""
        mask = np.zeros((self.ny, self.nx), dtype=bool)
        b = self.border
        mask[b:self.ny - b, b:self.nx - b] = True
        return mask

    def owns(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        px = np.floor(np.asarray(x) + 0.5)
        py = np.floor(np.asarray(y) + 0.5)
        xlo, xhi, ylo, yhi = self.own
        return (px >= xlo) & (px < xhi) & (py >= ylo) & (py < yhi)


@dataclass(frozen=True)
class PatchGrid:
    """Patches of ``size`` pixels starting at ``x_starts`` x ``y_starts``; cell boundaries
    ``x_bounds``/``y_bounds`` (pixel indices between neighbouring cells)."""

    size: int
    overlap: int
    border: int
    x_starts: tuple[int, ...]
    y_starts: tuple[int, ...]

    def _bounds(self, starts: tuple[int, ...]) -> np.ndarray:
        return np.array([s + self.overlap // 2 for s in starts[1:]], dtype=np.int64)

    @property
    def boxes(self) -> list[PatchBox]:
        xb = np.concatenate([[-FAR], self._bounds(self.x_starts), [FAR]])
        yb = np.concatenate([[-FAR], self._bounds(self.y_starts), [FAR]])
        out = []
        for j, y0 in enumerate(self.y_starts):
            for i, x0 in enumerate(self.x_starts):
                own = (int(xb[i]), int(xb[i + 1]), int(yb[j]), int(yb[j + 1]))
                out.append(PatchBox(len(out), x0, y0, self.size, self.size, own, self.border))
        return out


def _starts(n_pix: int, size: int, step: int, overlap: int, border: int) -> tuple[int, ...]:
    """Patch starts along one axis: the fewest patches whose fitted areas cover the mosaic."""
    count = max(1, int(np.ceil((n_pix + 2 * border - overlap) / step)))
    first = (n_pix - (count * step + overlap)) // 2
    return tuple(first + k * step for k in range(count))


def patch_grid(shape_irac: tuple[int, int], irac_scale: float, *, patch_arcmin: float = 1.0,
               overlap_arcmin: float = 0.2, border_arcsec: float = 2.5) -> PatchGrid:
    """Grid of 2*patch_arcmin square patches overlapping by overlap_arcmin, centred on the
    mosaic ``shape_irac = (ny, nx)`` of ``irac_scale`` arcsec pixels, whose fitted areas (inside
    the borders) cover all of it."""
    size = int(round(2 * patch_arcmin * 60 / irac_scale))
    overlap = int(round(overlap_arcmin * 60 / irac_scale))
    border = int(round(border_arcsec / irac_scale))
    step = size - overlap
    if step <= 0 or border > overlap // 2:
        raise ValueError(f"need overlap < patch size and border <= overlap/2 (size {size}, "
                         f"overlap {overlap}, border {border} pixels)")
    return PatchGrid(size, overlap, border, _starts(shape_irac[1], size, step, overlap, border),
                     _starts(shape_irac[0], size, step, overlap, border))


def assign_sources(x: np.ndarray, y: np.ndarray, grid: PatchGrid) -> np.ndarray:
    """Index (into ``grid.boxes``) of the one patch that measures each source at IRAC pixel
    position (x, y)."""
    px = np.floor(np.asarray(x, dtype=float) + 0.5)
    py = np.floor(np.asarray(y, dtype=float) + 0.5)
    ix = np.searchsorted(grid._bounds(grid.x_starts), px, side="right")
    iy = np.searchsorted(grid._bounds(grid.y_starts), py, side="right")
    return iy * len(grid.x_starts) + ix
