"""HEALPix maths: agreement with healpy, the stretch bounds, and completeness of the cone covering."""
import math

import healpy
import numpy as np
import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord
from hypothesis import given, settings
from hypothesis import strategies as st

from alcsdb import healpix as H

Z23_DEC = math.degrees(math.asin(2 / 3))  # latitude of the polar-cap boundaries (face vertices)


def points_in_disc(rng, ra, dec, radius_arcsec, n):
    """Random points within a cone (a quarter of them just inside its edge), by rotation."""
    r = radius_arcsec / H.ARCSEC_PER_RAD
    rho = np.arccos(1 - rng.uniform(0, 1, n) * (1 - np.cos(r)))
    rho[: n // 4] = r * (1 - 1e-12)
    az = rng.uniform(0, 2 * np.pi, n)
    d0, a0 = np.radians(dec), np.radians(ra)
    sin_d = np.clip(np.sin(d0) * np.cos(rho) + np.cos(d0) * np.sin(rho) * np.cos(az), -1, 1)
    a = a0 + np.arctan2(np.sin(az) * np.sin(rho) * np.cos(d0), np.cos(rho) - np.sin(d0) * sin_d)
    pra, pdec = np.degrees(a) % 360.0, np.degrees(np.arcsin(sin_d))
    inside = H.angular_distance_arcsec(ra, dec, pra, pdec) <= radius_arcsec
    return pra[inside], pdec[inside]


def as_ranges(flat):
    return np.array(flat, dtype=np.int64).reshape(-1, 2)


def covered(hpx, ranges):
    i = np.searchsorted(ranges[:, 0], hpx, side="right") - 1
    return (i >= 0) & (hpx < ranges[np.clip(i, 0, None), 1])


def assert_complete(ra, dec, radius_arcsec, ranges, seed=0):
    rng = np.random.default_rng(seed)
    pra, pdec = points_in_disc(rng, ra, dec, radius_arcsec, 3000)
    pra, pdec = np.append(pra, ra % 360.0), np.append(pdec, dec)  # the centre itself
    ok = covered(H.hpx29(pra, pdec), ranges)
    assert ok.all(), f"cone ({ra}, {dec}, {radius_arcsec}\"): {(~ok).sum()} points outside the ranges"


def nested_from_loc(order, face, p, q, region):
    """The pixel index from face_loc's documented conventions (independent of healpix.py's code)."""
    n = 1 << order
    if region == 0:
        ix, iy = math.floor(p * n), n - 1 - math.floor(q * n)
    elif region == 1:
        ix, iy = n - 1 - min(math.floor(p * n), n - 1), n - 1 - min(math.floor(q * n), n - 1)
    else:
        ix, iy = min(math.floor(p * n), n - 1), min(math.floor(q * n), n - 1)
    return int(healpy.xyf2pix(n, ix, iy, face, nest=True))


SPECIAL_POSITIONS = [(0.0, 0.0), (45.0, 0.0), (90.0, Z23_DEC), (0.0, -Z23_DEC), (359.9999999, 0.0),
                     (0.0, 90.0), (123.0, -90.0), (180.0, 89.999999), (270.0, -89.99), (3.588333, -30.39725),
                     (135.0, 41.0), (225.0, 60.0), (315.0, -30.0)]


def test_hpx29_is_healpy_order_29():
    rng = np.random.default_rng(1)
    ra, dec = rng.uniform(0, 360, 1000), np.degrees(np.arcsin(rng.uniform(-1, 1, 1000)))
    got = H.hpx29(ra, dec)
    assert got.dtype == np.int64
    assert np.array_equal(got, healpy.ang2pix(2 ** 29, ra, dec, nest=True, lonlat=True))
    assert got.max() < 12 * 4 ** 29
    # nested: the order-10 parent is the order-10 pixel
    assert np.array_equal(got >> 38, healpy.ang2pix(2 ** 10, ra, dec, nest=True, lonlat=True))


def test_face_loc_reproduces_healpy_at_every_order():
    rng = np.random.default_rng(2)
    ra = np.concatenate([rng.uniform(0, 360, 3000), [p[0] for p in SPECIAL_POSITIONS]])
    dec = np.concatenate([np.degrees(np.arcsin(rng.uniform(-1, 1, 1000))), rng.uniform(89.4, 90, 1000),
                          -rng.uniform(89.4, 90, 1000), [p[1] for p in SPECIAL_POSITIONS]])
    for order in (0, 7, 18, 29):
        ref = healpy.ang2pix(2 ** order, ra, dec, nest=True, lonlat=True)
        got = [nested_from_loc(order, *H.face_loc(a, d)) for a, d in zip(ra, dec)]
        assert np.array_equal(got, ref), order


def test_face_xy_to_vec_gives_healpy_pixel_centres():
    order = 6
    pix = np.arange(12 * 4 ** order)
    ix, iy, face = healpy.pix2xyf(2 ** order, pix, nest=True)
    vec = H._face_xy_to_vec(face, (ix + 0.5) / 2 ** order, (iy + 0.5) / 2 ** order)
    assert np.abs(vec - np.array(healpy.pix2vec(2 ** order, pix, nest=True)).T).max() < 1e-14


def test_stretch_bounds_hold_everywhere():
    """LF and LAMBDA bound the singular values of the face map's Jacobian on all 12 faces."""
    rng = np.random.default_rng(3)
    h = 1e-7
    worst_forward, worst_inverse = 0.0, 0.0
    for face in range(12):
        x, y = rng.uniform(h, 1 - h, 50000), rng.uniform(h, 1 - h, 50000)
        x[:500], y[500:1000], x[1000:1500], y[1500:2000] = h, 1 - h, 1 - h, h  # edges and corners
        f = np.full(len(x), face)
        jac = np.stack([(H._face_xy_to_vec(f, x + h / 2, y) - H._face_xy_to_vec(f, x - h / 2, y)) / h,
                        (H._face_xy_to_vec(f, x, y + h / 2) - H._face_xy_to_vec(f, x, y - h / 2)) / h], axis=-1)
        s = np.linalg.svd(jac, compute_uv=False)
        worst_inverse = max(worst_inverse, s[:, 0].max())
        worst_forward = max(worst_forward, (1 / s[:, 1]).max())
    assert worst_inverse <= H.LAMBDA and worst_forward <= H.LF
    assert worst_inverse > 0.999 * H.LAMBDA and worst_forward > 0.999 * H.LF  # and they are tight


def test_equatorial_stretch_bounds_the_jacobian():
    rng = np.random.default_rng(6)
    h = 1e-7
    face = np.repeat(np.arange(12), 20000)
    x, y = rng.uniform(h, 1 - h, len(face)), rng.uniform(h, 1 - h, len(face))
    jac = np.stack([(H._face_xy_to_vec(face, x + h / 2, y) - H._face_xy_to_vec(face, x - h / 2, y)) / h,
                    (H._face_xy_to_vec(face, x, y + h / 2) - H._face_xy_to_vec(face, x, y - h / 2)) / h], axis=-1)
    forward = 1 / np.linalg.svd(jac, compute_uv=False)[:, 1]
    lat = np.degrees(np.arcsin(H._face_xy_to_vec(face, x, y)[:, 2]))
    zone = np.abs(lat) < H.EQUATORIAL_ZONE_DEG - 1e-3
    bound = np.array([H.equatorial_stretch(b) for b in lat[zone]])
    assert zone.sum() > 100000 and (forward[zone] <= bound * (1 + 1e-6)).all()
    assert (forward[zone] > bound * 0.999).mean() > 0.3  # tight where x or y varies along the larger axis
    # over a band the bound is the larger of its two ends, and never above LF
    band = np.linspace(0, H.EQUATORIAL_ZONE_DEG, 200)
    values = [H.equatorial_stretch(b) for b in band]
    assert max(values) <= H.LF and H.stretch_bound(10.0, 0.01) == max(H.equatorial_stretch(b) for b in (
        10.0 - 0.01 / H.RAD_PER_DEG, 10.0 + 0.01 / H.RAD_PER_DEG))
    for lo, mid, hi in np.sort(rng.uniform(0, H.EQUATORIAL_ZONE_DEG, (1000, 3)), axis=1):
        assert H.equatorial_stretch(mid) <= max(H.equatorial_stretch(lo), H.equatorial_stretch(hi))
    assert H.stretch_bound(41.0, 0.02) == H.LF and H.stretch_bound(-89.0, 1e-6) == H.LF


@pytest.mark.parametrize("ra,dec", SPECIAL_POSITIONS)
@pytest.mark.parametrize("radius", [0.0, 0.3, 1.0, 5.0, 30.0, 120.0, 600.0, 3600.0])
def test_disc_ranges_cover_special_cones(ra, dec, radius):
    ranges = H.disc_ranges(ra, dec, radius)
    assert ranges.dtype == np.int64 and ranges.ndim == 2 and ranges.shape[1] == 2
    assert (ranges[:, 0] < ranges[:, 1]).all() and (ranges[1:, 0] > ranges[:-1, 1]).all()  # sorted, merged
    assert_complete(ra, dec, radius, ranges)


@settings(max_examples=300, deadline=None)
@given(ra=st.floats(0, 360, exclude_max=True),
       dec=st.one_of(st.floats(-90, 90), st.floats(89, 90), st.floats(-90, -89),
                     st.sampled_from([Z23_DEC, -Z23_DEC, 0.0])),
       radius=st.one_of(st.floats(0, 3600), st.floats(0, 2), st.just(0.0)),
       seed=st.integers(0, 2 ** 32 - 1))
def test_disc_ranges_complete_for_random_cones(ra, dec, radius, seed):
    assert_complete(ra, dec, radius, H.disc_ranges(ra, dec, radius), seed)


@settings(max_examples=60, deadline=None)
@given(ra=st.floats(0, 360, exclude_max=True), dec=st.floats(-88, 88), radius=st.floats(0.1, 3600))
def test_both_coverings_complete_and_tight(ra, dec, radius):
    """The single-face and the refinement coverings are each complete, and neither is wasteful."""
    order = H.coarse_order(radius)
    r_rad = radius / H.ARCSEC_PER_RAD + H.MARGIN_RAD
    refined = as_ranges(H._merge(H._refined_cells(ra, dec, r_rad, order).tolist(), order))
    assert_complete(ra, dec, radius, refined)
    face, x, y = H.face_xy(ra, dec)
    rho = H.LF * r_rad
    if rho < x < 1 - rho and rho < y < 1 - rho:
        assert_complete(ra, dec, radius, as_ranges(H._merge(H._single_face_cells(face, x, y, rho, order), order)))
    # the covered area stays within a small factor of the cone's (pixel area = 4 pi / (12 4^29) sr)
    for ranges in (refined, H.disc_ranges(ra, dec, radius)):
        area = float((ranges[:, 1] - ranges[:, 0]).sum()) * 4 * math.pi / (12 * 4.0 ** 29)
        assert area < 60 * math.pi * r_rad ** 2


def test_snap_and_tiny_values():
    assert H.snap(1e-31) == 0.0 and H.snap(-1e-31) == 0.0 and H.snap(1e-29) == 1e-29
    assert np.array_equal(H.snap(np.array([5e-324, 1.0, -2e-40])), [0.0, 1.0, 0.0])
    assert H.angular_distance_arcsec(0.0, 6.9e-162, 0.0, 0.0) == 0.0
    assert H.coarse_order(5e-324) == 29
    assert_complete(5e-324, 1e-200, 5e-324, H.disc_ranges(5e-324, 1e-200, 5e-324))


def test_coarse_order():
    radii = [0, 1e-4, 0.5, 1, 5, 30, 120, 600, 3600, 36000]
    orders = [H.coarse_order(r) for r in radii]
    assert orders[0] == orders[1] == 29 and all(0 <= k <= 29 for k in orders)
    for r, k in zip(radii[2:], orders[2:]):  # order-k pixels are 1/4 to 2 times the radius (58.6 deg / 2^k)
        assert 0.24 < 211076 / 2 ** k / r <= 2


def test_angular_distance_matches_astropy():
    rng = np.random.default_rng(4)
    ra1, dec1 = rng.uniform(0, 360, 2000), np.degrees(np.arcsin(rng.uniform(-1, 1, 2000)))
    sep = 10 ** rng.uniform(-6, 5, 2000) / 3600  # deg, 1 micro-arcsec to 28 deg
    pa = rng.uniform(0, 360, 2000)
    c1 = SkyCoord(ra1 * u.deg, dec1 * u.deg)
    c2 = c1.directional_offset_by(pa * u.deg, sep * u.deg)
    got = H.angular_distance_arcsec(ra1, dec1, c2.ra.deg, c2.dec.deg)
    want = c1.separation(c2).arcsec
    assert np.allclose(got, want, rtol=1e-9, atol=1e-9)
    assert H.angular_distance_arcsec(10.0, 20.0, 10.0, 20.0) == 0.0
    assert H.angular_distance_arcsec(10.0, 89.0, 190.0, 89.0) == pytest.approx(7200.0, rel=1e-12)  # over the pole
    assert H.angular_distance_arcsec(359.9999, 0.0, 0.0001, 0.0) == pytest.approx(0.72, rel=1e-8)  # RA wrap


@pytest.mark.parametrize("args,message", [
    ((float("nan"), 0.0, 1.0), "ra_deg must be finite"),
    ((0.0, float("inf"), 1.0), "dec_deg must be finite"),
    ((0.0, 90.0001, 1.0), "dec_deg must be within"),
    ((0.0, -91.0, 1.0), "dec_deg must be within"),
    ((0.0, 0.0, -1.0), "radius_arcsec must be >= 0"),
    ((0.0, 0.0, float("nan")), "radius_arcsec must be finite"),
    ((None, 0.0, 1.0), "ra_deg must be a real number"),
    ((0.0, "1", 1.0), "dec_deg must be a real number"),
])
def test_invalid_cones_raise(args, message):
    with pytest.raises(ValueError, match=message):
        H.disc_ranges(*args)


def test_invalid_positions_and_orders_raise():
    with pytest.raises(ValueError, match="dec_deg must be within"):
        H.hpx29([0.0, 1.0], [0.0, 95.0])
    with pytest.raises(ValueError, match="ra_deg must be finite"):
        H.hpx29([np.nan], [0.0])
    with pytest.raises(ValueError, match="differ in shape"):
        H.hpx29([0.0, 1.0], [0.0])
    with pytest.raises(ValueError, match="order must be an integer within"):
        H.disc_ranges(0.0, 0.0, 1.0, order=30)
