"""HEALPix maths for alcsdb: the order-29 index of a position and the pixel ranges covering a cone.

Every HEALPix computation of the package lives here; `migrations/versions/0002_cone_search.py`
holds the same algorithm in SQL (same constants, same steps) so that the database can compute
cone coverings by itself.

Conventions
-----------
- Positions are ICRS degrees; radii are arcsec. HEALPix is NESTED; `hpx29` is the index at
  order 29 (nside 2**29), computed exactly as ``healpy.ang2pix(2**29, ra, dec, nest=True,
  lonlat=True)`` (HATS/LSDB call the same number ``_healpix_29``).
- A pixel of order k holds the order-29 indices ``[p << 2(29-k), (p+1) << 2(29-k))``, so a set
  of order-k pixels is a set of half-open integer ranges ``[lo, hi)`` on the `hpx29` column.

Face coordinates
----------------
Each of the 12 base pixels ("faces") is the image of the unit square under HEALPix's inverse
map ``g_F: (x, y) in [0,1]^2 -> sphere``; the order-k pixel ``(F, ix, iy)`` is the image of the
square ``[ix, ix+1] x [iy, iy+1] / 2^k`` and its nested index is
``F * 4^k + interleave(ix, iy)``. `face_xy` is ``g_F``'s inverse, `_face_xy_to_vec` is ``g_F``.
With rho = jrll(F) - x - y, HEALPix's formulas are z = 1 - rho^2/3, phi = pi/4 (jpll(F) +
(x - y)/rho) in the north cap (rho < 1; the south cap mirrors it) and z = 2/3 (2 - rho),
phi = pi/4 (jpll(F) + x - y) in the equatorial zone; differentiating them gives the Jacobian's
singular values. Their extremes are reached in the polar caps at the pole, on a face edge
(tp = 0 or 1), where with h^2 = 3/2, w^2 = 6/pi^2, D = 3/pi (the constant area factor):
``s^2 = (T -+ sqrt(T^2 - 4 D^2)) / 2``, ``T = h^2 + 2 w^2``, so

- ``|d(face coordinates)| <= LF * |d(arc)|`` with LF = 1.52425 (face units per radian),
- ``|d(arc)| <= LAMBDA * |d(face coordinates)|`` with LAMBDA = 1.59620 (radians per face unit)

(tests/test_healpix.py samples the Jacobian everywhere and checks these bounds).

Why the covering is complete
----------------------------
Let c be the cone centre and r' = r + MARGIN_RAD. MARGIN_RAD = 1e-9 rad absorbs every
floating-point error, all below 1e-13 rad: of the computed face coordinates and pixel tests
here, of healpy's ang2pix (its order-29 pixel of a point is the exact pixel of a point within
1e-13 rad), of the distance formula, and the < 1e-30 deg moves of `snap`. Two ways, both
conservative:

1. Single face (fast path). Let (F, x, y) = face_xy(c) and rho = L * r', where L bounds the
   stretch over D(c, r'): LF, or the smaller `stretch_bound` when D stays in the equatorial
   zone (D's latitudes lie within [dec - r', dec + r']). If the closed ball of
   radius rho around (x, y) lies inside the open square (0, 1)^2, then every point q of the disc
   D(c, r') lies in face F and |f_F(q) - (x, y)| <= rho: the great-circle arc from c to q stays
   in D (a disc of radius < 90 deg is convex); were it to leave F, its first boundary point e
   would satisfy |f_F(e) - (x, y)| <= L * dist(c, e) <= rho, so f_F(e) would lie inside the open
   square, not on its boundary, a contradiction; along an arc inside F the bound L integrates
   to |f_F(q) - (x, y)| <= L * dist(c, q). So the order-k pixels of face F whose squares meet
   that ball contain every point of D, hence every order-29 index of a point of D (the order-k
   parent of an order-29 pixel is the order-k pixel containing it).
2. Refinement (any cone: poles, face edges). A point q of order-o pixel P lies within
   ``R_o = LAMBDA * sqrt(2)/2 * 2^-o`` of P's centre g_F(centre of its square) (the straight
   segment between them in face coordinates stays in the square, and g_F stretches it at most
   by LAMBDA). If P meets D(c, r') then dist(c, centre(P)) <= r' + R_o. Starting from the 12
   faces and keeping, at each order, the children that pass this test keeps every pixel that
   meets D, down to order k.

`disc_ranges` uses (1) when it applies and (2) otherwise; both return every order-k pixel that
meets the disc (and a few more), so filtering their rows by exact distance gives exactly the
rows of a brute-force scan.
"""
from __future__ import annotations

import math

import healpy
import numpy as np

ORDER = 29
NSIDE = 1 << ORDER
LF = 1.52425
LAMBDA = 1.59620
MARGIN_RAD = 1e-9
ARCSEC_PER_RAD = 206264.80624709636
RAD_PER_DEG = 0.017453292519943295
HALF_RAD_PER_DEG = RAD_PER_DEG / 2
SNAP_DEG = 1e-30
BASE_PIXEL_ARCSEC = 211076.0  # sqrt(4 pi / 12) rad: the side of a face (58.6 deg)
# (radius limit in arcsec, order offset): finer pixels pay off as cones hold more rows
ORDER_OFFSET_STEPS = ((3.0, 0), (20.0, 1), (math.inf, 2))
REFINE_STEP = 3

_JRLL = np.array([2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4])
_JPLL = np.array([1, 3, 5, 7, 0, 2, 4, 6, 1, 3, 5, 7])
_INV_HALFPI = 0.6366197723675814
_TWOTHIRD = 2.0 / 3.0
_LN2 = math.log(2.0)
EQUATORIAL_ZONE_DEG = math.asin(2.0 / 3.0) / RAD_PER_DEG  # |z| <= 2/3: 41.81 deg


def check_cone(ra_deg: float, dec_deg: float, radius_arcsec: float) -> None:
    """Raise ValueError naming the argument when a cone is invalid (non-finite, |dec| > 90, r < 0)."""
    for name, value in (("ra_deg", ra_deg), ("dec_deg", dec_deg), ("radius_arcsec", radius_arcsec)):
        if value is None or isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise ValueError(f"{name} must be a real number, got {value!r}")
        if not math.isfinite(value):
            raise ValueError(f"{name} must be finite, got {value!r}")
    if not -90.0 <= dec_deg <= 90.0:
        raise ValueError(f"dec_deg must be within [-90, 90], got {dec_deg!r}")
    if radius_arcsec < 0:
        raise ValueError(f"radius_arcsec must be >= 0, got {radius_arcsec!r}")


def _check_positions(ra: np.ndarray, dec: np.ndarray) -> None:
    if ra.shape != dec.shape:
        raise ValueError(f"ra_deg and dec_deg differ in shape: {ra.shape} vs {dec.shape}")
    if not np.isfinite(ra).all():
        raise ValueError("ra_deg must be finite (found NaN or infinity)")
    if not np.isfinite(dec).all():
        raise ValueError("dec_deg must be finite (found NaN or infinity)")
    if (np.abs(dec) > 90).any():
        raise ValueError(f"dec_deg must be within [-90, 90], found {dec[np.abs(dec) > 90][0]!r}")


def hpx29(ra_deg, dec_deg) -> np.ndarray:
    """NESTED HEALPix index at order 29 of positions in degrees (int64 array, healpy's ang2pix)."""
    ra = np.asarray(ra_deg, dtype=np.float64)
    dec = np.asarray(dec_deg, dtype=np.float64)
    _check_positions(ra, dec)
    return np.asarray(healpy.ang2pix(NSIDE, ra, dec, nest=True, lonlat=True), dtype=np.int64)


def snap(x):
    """Coordinates (and radii) within SNAP_DEG of 0 taken as 0 (scalar or array).

    PostgreSQL raises an error when a float multiplication underflows to zero, which products
    of sub-1e-150 numbers do; snapping every coordinate below 1e-30 (deg, or arcsec for a
    radius) keeps all intermediate products far from underflow, in SQL and identically here.
    """
    if isinstance(x, float):
        return 0.0 if abs(x) < SNAP_DEG else x
    x = np.asarray(x, dtype=np.float64)
    return np.where(np.abs(x) < SNAP_DEG, 0.0, x)


def angular_distance_arcsec(ra1, dec1, ra2, dec2):
    """Great-circle distance in arcsec between positions in degrees (haversine).

    Accurate to ~1e-16 relative at small separations (no 1 - cos cancellation). The SQL
    function ``alcs_angdist_arcsec`` evaluates the same expression, operation by operation
    (coordinates snapped with `snap`), so both sides agree on which rows lie inside a cone.
    """
    ra1, dec1, ra2, dec2 = (snap(np.asarray(v, dtype=np.float64)) for v in (ra1, dec1, ra2, dec2))
    s_dec = np.sin((dec2 - dec1) * HALF_RAD_PER_DEG)
    s_ra = np.sin((ra2 - ra1) * HALF_RAD_PER_DEG)
    hav = s_dec * s_dec + np.cos(dec1 * RAD_PER_DEG) * np.cos(dec2 * RAD_PER_DEG) * (s_ra * s_ra)
    return 2.0 * np.arcsin(np.sqrt(np.minimum(hav, 1.0))) * ARCSEC_PER_RAD


def coarse_order(radius_arcsec: float) -> int:
    """The order whose pixels `disc_ranges` uses for a cone of this radius.

    ``floor(log2(58.6 deg / R)) + offset``, the offset 0 below 3", 1 below 20", 2 above
    (ORDER_OFFSET_STEPS): pixels of about the radius for small cones, where each range costs
    more than the few extra rows it brings, and 2-4 times finer for large ones, where the rows
    of a dense cluster dominate (measured with benchmarks/cone_search.py and per-query EXPLAIN
    on 1M clustered rows). Computed as ``ln(x) / ln(2)`` like ``alcs_hpx_coarse_order`` in SQL,
    so both pick the same order. Radius 0 (or below an order-29 pixel) gives 29.
    """
    if radius_arcsec < BASE_PIXEL_ARCSEC / (1 << ORDER):
        return ORDER
    offset = next(o for limit, o in ORDER_OFFSET_STEPS if radius_arcsec < limit)
    return int(min(ORDER, max(0, math.floor(math.log(BASE_PIXEL_ARCSEC / radius_arcsec) / _LN2) + offset)))


def equatorial_stretch(lat_deg: float) -> float:
    """Largest stretch (face units per radian) of the face coordinates at a latitude |b| <= asin(2/3).

    In the equatorial zone the face coordinates are x ~ (phi/(pi/2) + 3/4 z), y ~ (phi/(pi/2) -
    3/4 z) up to signs and offsets, whose Jacobian per unit arc has orthogonal columns and
    singular values sqrt(2) 2/(pi cos b) and sqrt(2) 3/4 cos b. The larger one decreases then
    increases with |b|, so over a latitude band its maximum is at one end of the band.
    """
    cos_b = math.cos(lat_deg * RAD_PER_DEG)
    return math.sqrt(2.0) * max(2.0 / (math.pi * cos_b), 0.75 * cos_b)


def stretch_bound(dec_deg: float, r_rad: float) -> float:
    """A bound of the face-coordinate stretch over the disc of radius r_rad around declination dec_deg.

    `equatorial_stretch` at the band's ends when the disc's latitudes stay within the equatorial
    zone (by a 1e-6 deg guard), else LF (its worst case, reached in the polar caps).
    """
    r_deg = r_rad / RAD_PER_DEG
    hi = abs(dec_deg) + r_deg
    if hi + 1e-6 >= EQUATORIAL_ZONE_DEG:
        return LF
    return max(equatorial_stretch(max(abs(dec_deg) - r_deg, 0.0)), equatorial_stretch(hi))


def _fmodulo(v: float, m: float) -> float:
    """healpix_cxx's fmodulo: v mod m in [0, m)."""
    if v >= 0:
        return v if v < m else math.fmod(v, m)
    tmp = math.fmod(v, m) + m
    return 0.0 if tmp == m else tmp


def face_loc(ra_deg: float, dec_deg: float) -> tuple[int, float, float, int]:
    """HEALPix location of a position before pixel rounding: (face, p, q, region).

    Same floating-point steps as healpix_cxx's loc2pix (with healpy's lonlat conversion),
    including its sin(theta) branch near the poles; the SQL function ``alcs_hpx_loc`` is the
    same code. `region` is 0 in the equatorial zone (|z| <= 2/3), 1 in the north cap, -1 in
    the south cap. At order k (n = 2^k) healpy's pixel (face, ix, iy) is:

    - equatorial: ix = floor(p n), iy = n - 1 - floor(q n);
    - north cap:  ix = n - 1 - min(floor(p n), n - 1), iy = n - 1 - min(floor(q n), n - 1);
    - south cap:  ix = min(floor(p n), n - 1), iy = min(floor(q n), n - 1).
    """
    theta = math.pi / 2 - dec_deg * RAD_PER_DEG
    phi = ra_deg * RAD_PER_DEG
    z = math.cos(theta)
    za = abs(z)
    tt = _fmodulo(phi * _INV_HALFPI, 4.0)
    if za <= _TWOTHIRD:
        t1 = 0.5 + tt
        t2 = 0.75 * z
        v = t1 - t2  # ascending edge line coordinate (jp / nside)
        u = t1 + t2  # descending edge line coordinate (jm / nside)
        ifp, ifm = math.floor(v), math.floor(u)
        face = (ifp | 4) if ifp == ifm else (ifp if ifp < ifm else ifm + 8)
        return face, u - ifm, v - ifp, 0
    ntt = min(3, int(tt))
    tp = tt - ntt
    if za < 0.99 or 0.01 <= theta <= 3.14159 - 0.01:
        s = math.sqrt(3.0 * (1.0 - za))
    else:
        s = math.sin(theta) / math.sqrt((1.0 + za) / 3.0)
    if z > 0:
        return ntt, (1.0 - tp) * s, tp * s, 1
    return ntt + 8, tp * s, (1.0 - tp) * s, -1


def face_xy(ra_deg: float, dec_deg: float) -> tuple[int, float, float]:
    """Face number and continuous face coordinates (x, y) in [0, 1] of a position.

    The order-k pixel is ``(face, floor(x 2^k), floor(y 2^k))`` up to HEALPix's conventions on
    pixel edges (see `face_loc` for those).
    """
    face, p, q, region = face_loc(ra_deg, dec_deg)
    return face, (1.0 - p if region == 1 else p), (q if region == -1 else 1.0 - q)


def _face_xy_to_vec(face: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Unit vectors (n, 3) of face coordinates: HEALPix's pix2loc with continuous (x, y)."""
    rr = _JRLL[face] - x - y  # ring coordinate / nside, in (0, 4)
    north, south = rr < 1.0, rr > 3.0
    nr = np.where(north, rr, np.where(south, 4.0 - rr, 1.0))
    tmp = nr * nr / 3.0
    z = np.where(north, 1.0 - tmp, np.where(south, tmp - 1.0, (2.0 - rr) * _TWOTHIRD))
    sth = np.where(north | south, np.sqrt(tmp * (2.0 - tmp)), np.sqrt((1.0 - z) * (1.0 + z)))
    phi = (math.pi / 4) * (_JPLL[face] + (x - y) / nr)
    return np.stack([sth * np.cos(phi), sth * np.sin(phi), z], axis=-1)


def _radec_to_vec(ra_deg: float, dec_deg: float) -> np.ndarray:
    ra, dec = ra_deg * RAD_PER_DEG, dec_deg * RAD_PER_DEG
    return np.array([math.cos(dec) * math.cos(ra), math.cos(dec) * math.sin(ra), math.sin(dec)])


def _spread_bits(v):
    """Interleave zeros between the low 32 bits of v (Python int or int64 array)."""
    v = v & 0x00000000FFFFFFFF
    v = (v | (v << 16)) & 0x0000FFFF0000FFFF
    v = (v | (v << 8)) & 0x00FF00FF00FF00FF
    v = (v | (v << 4)) & 0x0F0F0F0F0F0F0F0F
    v = (v | (v << 2)) & 0x3333333333333333
    return (v | (v << 1)) & 0x5555555555555555


_SPREAD16 = _spread_bits(np.arange(1 << 16, dtype=np.int64)).tolist()
_SPREAD16_Y = [2 * v for v in _SPREAD16]  # the iy part of a nested index


def _spread29(v: int) -> int:
    """_spread_bits for one Python int below 2**32, by table look-up (about 4x faster)."""
    return _SPREAD16[v & 0xFFFF] | (_SPREAD16[v >> 16] << 32)


def _single_face_cells(face: int, x: float, y: float, rho: float, order: int) -> list[int]:
    """Order-`order` nested pixels of `face` whose squares meet the ball |(x, y) - p| <= rho."""
    n = 1 << order
    base = face << (2 * order)
    cells: list[int] = []
    for ix in range(math.floor((x - rho) * n), math.floor((x + rho) * n) + 1):
        dx = max(ix / n - x, 0.0, x - (ix + 1) / n)
        half = math.sqrt(max(rho * rho - dx * dx, 0.0))  # the ball's half-height over this column
        sx = base + _spread29(ix)
        iy_range = range(math.floor((y - half) * n), math.floor((y + half) * n) + 1)
        if order <= 16:
            cells.extend([sx + _SPREAD16_Y[iy] for iy in iy_range])
        else:
            cells.extend([sx + (_spread29(iy) << 1) for iy in iy_range])
    return cells


def _refined_cells(ra_deg: float, dec_deg: float, r_rad: float, order: int) -> np.ndarray:
    """Order-`order` nested pixels that may meet the disc, by refinement from the 12 faces.

    Refines REFINE_STEP orders at a time (each kept pixel is replaced by its 4**step descendants).
    """
    centre = _radec_to_vec(ra_deg, dec_deg)
    face = np.arange(12, dtype=np.int64)
    ix = np.zeros(12, dtype=np.int64)
    iy = np.zeros(12, dtype=np.int64)
    o = 0
    while True:
        scale = 1.0 / (1 << o)
        limit = r_rad + LAMBDA * math.sqrt(0.5) * scale
        if limit < math.pi:
            vec = _face_xy_to_vec(face, (ix + 0.5) * scale, (iy + 0.5) * scale)
            keep = ((vec - centre) ** 2).sum(axis=1) <= (2.0 * math.sin(limit / 2.0)) ** 2
            face, ix, iy = face[keep], ix[keep], iy[keep]
        if o == order:
            break
        step = min(REFINE_STEP, order - o)
        sub = np.arange(1 << step)
        dx, dy = np.repeat(sub, len(sub)), np.tile(sub, len(sub))
        face = np.repeat(face, len(dx))
        ix = ((np.repeat(ix, len(dx)).reshape(-1, len(dx)) << step) + dx).ravel()
        iy = ((np.repeat(iy, len(dy)).reshape(-1, len(dy)) << step) + dy).ravel()
        o += step
    return (face << (2 * order)) + _spread_bits(ix) + (_spread_bits(iy) << 1)


def _merge(cells: list[int], order: int) -> list[int]:
    """Sorted, merged half-open order-29 ranges of distinct order-`order` pixels, flat: [lo0, hi0, lo1, ...]."""
    shift = 2 * (ORDER - order)
    flat: list[int] = []
    for cell in sorted(cells):
        if flat and flat[-1] == cell << shift:
            flat[-1] = (cell + 1) << shift
        else:
            flat += (cell << shift, (cell + 1) << shift)
    return flat


def disc_ranges_flat(ra: float, dec: float, radius_arcsec: float, order: int | None = None) -> list[int]:
    """`disc_ranges` as a flat list of Python ints ``[lo0, hi0, lo1, hi1, ...]`` (for bound parameters)."""
    check_cone(ra, dec, radius_arcsec)
    if order is None:
        order = coarse_order(radius_arcsec)
    if not (isinstance(order, (int, np.integer)) and 0 <= order <= ORDER):
        raise ValueError(f"order must be an integer within [0, {ORDER}], got {order!r}")
    ra, dec = snap(float(ra)), snap(float(dec))
    r_rad = snap(float(radius_arcsec)) / ARCSEC_PER_RAD + MARGIN_RAD
    face, x, y = face_xy(ra, dec)
    rho = stretch_bound(dec, r_rad) * r_rad
    if rho < x < 1.0 - rho and rho < y < 1.0 - rho:
        cells = _single_face_cells(face, x, y, rho, order)
    else:
        cells = _refined_cells(ra, dec, r_rad, order).tolist()
    return _merge(cells, order)


def disc_ranges(ra: float, dec: float, radius_arcsec: float, order: int | None = None) -> np.ndarray:
    """Half-open order-29 index ranges ``[lo, hi)`` (K x 2 int64, sorted, merged) covering a cone.

    Every position within `radius_arcsec` of (ra, dec) has its `hpx29` inside one of the ranges
    (see the module docstring for the proof); the ranges are unions of order-`order` pixels
    (default `coarse_order(radius_arcsec)`), so they also hold some rows outside the cone, which
    an exact distance filter removes. Positions within SNAP_DEG of 0 are snapped (see `snap`).
    """
    return np.array(disc_ranges_flat(ra, dec, radius_arcsec, order), dtype=np.int64).reshape(-1, 2)
