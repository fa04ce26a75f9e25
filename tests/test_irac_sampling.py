"""Drizzle sampling maps (`pipeline.sampling`) and the IRAC models that follow them.

A synthetic field: three AORs see an elongated PSF turned to their own angle, their 1.2" frames
are dithered and drizzled onto 0.5" pixels with pixfrac 0.2 as the mosaic stage does, so every
output pixel is fed by a few input centres of one AOR or another. The sampled models must
reproduce that drizzle far better than a smooth model with the averaged PSF.
"""
from __future__ import annotations

import numpy as np
import pytest

from pipeline.irac_models import IracGeometry, binned_kernel, sampled_kernels, source_models
from pipeline.mosaic import Exposure, ExposureInfo, drizzle
from pipeline.sampling import input_centres, read_sampling, sampling_maps, write_sampling
from tests.test_mosaic import DEC0, RA0, offset_point, tan_wcs

ANGLES = (10.0, 55.0, 125.0)  # deg: each AOR's PSF major axis on the output grid
SIG_MAJOR, SIG_MINOR = 0.9, 0.55  # arcsec
FLUX = 1000.0


def psf_density(dx: np.ndarray, dy: np.ndarray, angle: float) -> np.ndarray:
    """Unit-flux elongated Gaussian per arcsec^2 at offsets (arcsec, output-grid axes)."""
    t = np.radians(angle)
    u = dx * np.cos(t) + dy * np.sin(t)
    v = -dx * np.sin(t) + dy * np.cos(t)
    return np.exp(-0.5 * ((u / SIG_MAJOR) ** 2 + (v / SIG_MINOR) ** 2)) / (2 * np.pi * SIG_MAJOR * SIG_MINOR)


def fine_kernel(angle: float, scale: float = 0.1, half: int = 35) -> np.ndarray:
    """The PSF on the 0.1" grid, centred on pixel (n//2, n//2), integrated over each pixel (3x3 sub)."""
    sub = (np.arange(3) - 1) / 3 * scale
    y, x = (np.mgrid[-half:half + 1, -half:half + 1] * scale)
    k = sum(psf_density(x + sx, y + sy, angle) for sx in sub for sy in sub)
    return k / k.sum()


@pytest.fixture(scope="module")
def field():
    rng = np.random.default_rng(11)
    out = tan_wcs(RA0, DEC0, 0.5, (40, 40))
    hst_wcs = tan_wcs(RA0, DEC0, 0.1, (200, 200))
    # sources on HST pixel centres, in output-grid pixel coordinates
    hx = np.array([40, 47, 100, 152, 61, 143, 99]) + 0.0
    hy = np.array([45, 150, 98, 52, 103, 141, 158]) + 0.0
    geometry = IracGeometry.from_wcs(hst_wcs, out)
    ox, oy = geometry.hst_to_irac(hx, hy)
    groups, aor_frames = [], []
    for a, angle in enumerate(ANGLES):
        frames = []
        for k in range(6):
            c = offset_point(*rng.uniform(-2, 2, 2))
            w = tan_wcs(c.ra.deg, c.dec.deg, 1.2, (30, 30), angle + 3.0)
            cx, cy = input_centres(w, (30, 30), out)
            dens = sum(FLUX * psf_density((cx - x) * 0.5, (cy - y) * 0.5, angle) for x, y in zip(ox, oy))
            area_sr = (1.2 / 3600 * np.pi / 180) ** 2
            mjysr = dens * 1.2 ** 2 / (1e12 * area_sr)  # uJy per input pixel -> MJy/sr
            info = ExposureInfo(f"a{a}f{k}", "Spitzer", "IRAC", "IRAC", "ch1", 100.0, 57000.0 + a, 57000.0 + a,
                                57000.01 + a, angle, f"r{a}", None, "irac")
            frames.append(Exposure(info, mjysr.astype(np.float32), np.full((30, 30), 0.01, np.float32),
                                   np.zeros((30, 30), bool), w, "MJy/sr", "x.fits"))
        groups.append((f"r{a}", 1000 + a, angle, frames))
        aor_frames += frames
    sci, wht = drizzle(aor_frames, out, pixfrac=0.2, irac_background_weights=True)
    maps = sampling_maps(groups, out, drizzle, pixfrac=0.2, kernel="square", irac_background_weights=True)
    hst = np.zeros((200, 200))
    seg = np.zeros((200, 200), np.int32)
    for i, (x, y) in enumerate(zip(hx.astype(int), hy.astype(int))):
        hst[y, x] = FLUX
        seg[y - 1:y + 2, x - 1:x + 2] = i + 1
    return dict(out=out, sci=sci, wht=wht, maps=maps, hst=hst, seg=seg, geometry=geometry, ox=ox, oy=oy,
                ids=np.arange(1, len(hx) + 1))


def test_maps_are_shares_and_offsets_within_a_pixel(field):
    maps = field["maps"].maps
    covered = field["wht"] > 0
    total = maps[:, 0].sum(axis=0)
    np.testing.assert_allclose(total[covered], 1.0, atol=1e-5)
    assert np.all(total[~covered] == 0)
    # pixfrac 0.2 drops of 1.2" pixels (0.48 output pixels wide, turned up to 45 deg: half-diagonal
    # 0.34) on 0.5" pixels: a pixel's mean input centre lies within 0.5 + 0.34 of its centre
    fed = maps[:, 0] > 0
    assert np.all(np.abs(maps[:, 1][fed]) < 0.85) and np.all(np.abs(maps[:, 2][fed]) < 0.85)
    assert 0.08 < maps[:, 1][fed].std() < 0.3
    # one AOR dominates some pixels, another others
    share = maps[:, 0][:, covered]
    assert share.std(axis=1).min() > 0.1


def test_sampling_file_round_trip(field, tmp_path):
    path = write_sampling(tmp_path / "f-ch1_sampling.fits", field["maps"], field["out"].to_header(), "ch1")
    back = read_sampling(path)
    assert back.aorkeys == field["maps"].aorkeys and back.names == field["maps"].names
    np.testing.assert_allclose(back.pa_deg, ANGLES)
    np.testing.assert_array_equal(back.maps, field["maps"].maps)
    bad = tmp_path / "bad.fits"
    bad.write_bytes(path.read_bytes()[:5000])
    with pytest.warns(), pytest.raises((OSError, ValueError)):
        read_sampling(bad)


def _residuals(field, model):
    """Per source: max |drizzle - model| within 2 pixels of the source, over the source's peak."""
    out = []
    for x, y in zip(field["ox"], field["oy"]):
        jx, jy = int(round(x)), int(round(y))
        s = np.s_[jy - 2:jy + 3, jx - 2:jx + 3]
        out.append(np.abs(field["sci"][s] - model[s]).max() / field["sci"][s].max())
    return np.array(out)


def test_sampled_models_follow_the_drizzle(field):
    box = (0, 0, 40, 40)
    kernels = [fine_kernel(a) for a in ANGLES]
    g = field["geometry"]
    smooth = source_models(field["hst"], field["seg"], field["ids"], binned_kernel(np.mean(kernels, axis=0), 5),
                           g, box)
    sampled = source_models(field["hst"], field["seg"], field["ids"],
                            sampled_kernels(kernels, field["maps"].cut(0, 0, 40, 40), (0, 0), 5), g, box)
    np.testing.assert_allclose(sampled.norm, FLUX, rtol=1e-9)
    img_smooth = (smooth.matrix @ smooth.norm).reshape(40, 40)
    img_sampled = (sampled.matrix @ sampled.norm).reshape(40, 40)
    r_smooth, r_sampled = _residuals(field, img_smooth), _residuals(field, img_sampled)
    # the averaged PSF misses the drizzle's pattern by several percent of the peak
    assert np.median(r_smooth) > 0.04
    assert np.median(r_sampled) < 0.35 * np.median(r_smooth)
    # measured: smooth 11-16% of the peak, sampled 2-5% (what remains is second order: the spread
    # of the input centres within a pixel)
    assert r_sampled.max() < 0.06
    # a drizzled point source's pixel sum depends on how its pixels were sampled (+-1.5% here); the
    # sampled model's sum follows it, the smooth model's is the flux
    def sums(img):
        return np.array([img[int(round(y)) - 6:int(round(y)) + 7, int(round(x)) - 6:int(round(x)) + 7].sum()
                         for x, y in zip(field["ox"], field["oy"])])
    data = sums(field["sci"])
    err_sampled, err_smooth = np.abs(sums(img_sampled) / data - 1), np.abs(sums(img_smooth) / data - 1)
    assert err_sampled.max() < 0.008 and np.median(err_sampled) < np.median(err_smooth)
    # the offsets' sign matters: the reversed correction is worse than none
    flipped = field["maps"].cut(0, 0, 40, 40).copy()
    flipped[:, 1:] *= -1
    wrong = source_models(field["hst"], field["seg"], field["ids"], sampled_kernels(kernels, flipped, (0, 0), 5),
                          g, box)
    assert np.median(_residuals(field, (wrong.matrix @ wrong.norm).reshape(40, 40))) > np.median(r_sampled) * 2
