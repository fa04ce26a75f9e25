"""Observation plan, pointing errors, headers and noise of the simulated exposures.

Pointing-error convention (recorded per exposure in ``truth.fits[OFFSETS]``): the header
WCS is the NOMINAL pointing; the TRUE WCS (used to render the image) is the header WCS with
CRVAL moved by (``dx`` east, ``dy`` north) arcsec on the tangent plane and the CD matrix
rotated by ``rot`` degrees (position angles increase, i.e. a rotation about the reference
pixel), see :func:`apply_offset`. So a source at true (RA, Dec) appears, when its pixel
position is read through the header WCS, displaced by about ``(-dx, -dy)`` arcsec.
"""
from __future__ import annotations

import string
from dataclasses import dataclass, field
from functools import cached_property, lru_cache

import numpy as np
from astropy.io import fits
from astropy.time import Time
from astropy.wcs import WCS

from alcsdb.config import shared_path
from pipeline.sim_bands import (
    BANDS, HST_BANDS, IRAC_BANDS, IRAC_EXPTIME, IRAC_FLUXCONV, IRAC_FRAMTIME, IRAC_GAIN, Band,
    ujy_per_pixel_to_mjysr, ujy_to_counts,
)
from pipeline.sim_psf import irac_psf, psf_encircled_energy
from pipeline.sim_sources import tangent_to_radec

DEPTH_APERTURE_ARCSEC = 0.7  # diameter of the HST depth aperture
HST_PA_V3_OFFSET = {"ACS": 177.5, "WFC3": 44.7}  # PA_V3 - ORIENTAT (approximate)
HST_EPOCH_MJD = (56650.0, 57350.0)  # HFF-like epochs, 2014-2015
IRAC_EPOCH_MJD = (55200.0, 57700.0)  # warm mission, 2010-2016
CR_RATE = 2e-9  # ACS cosmic-ray hits per pixel per second
HOT_PIXEL_FRACTION = 2e-5
DQ_HOT, DQ_CR = 16, 4096
IRAC_PSF_RADIUS = 16.0  # arcsec: the real PSF images are 30" wide
IRAC_FRAMES_PER_AOR = 6


def make_wcs(crval: tuple[float, float], crpix: tuple[float, float], scale_arcsec: float,
             orient_deg: float, sip: fits.Header | None = None) -> WCS:
    """TAN (or TAN-SIP with the A/B/AP/BP cards of ``sip``) WCS whose +y axis points
    ``orient_deg`` east of north, east to the left; ``crpix`` is 1-based (FITS)."""
    c, s = np.cos(np.radians(orient_deg)), np.sin(np.radians(orient_deg))
    hdr = fits.Header()
    hdr["CTYPE1"], hdr["CTYPE2"] = ("RA---TAN-SIP", "DEC--TAN-SIP") if sip else ("RA---TAN", "DEC--TAN")
    hdr["CRPIX1"], hdr["CRPIX2"] = crpix
    hdr["CRVAL1"], hdr["CRVAL2"] = crval
    cd = scale_arcsec / 3600.0 * np.array([[-c, s], [s, c]])
    hdr["CD1_1"], hdr["CD1_2"], hdr["CD2_1"], hdr["CD2_2"] = cd.ravel()
    hdr["RADESYS"] = "ICRS"
    if sip:
        for card in sip.cards:
            if card.keyword.split("_")[0] in ("A", "B", "AP", "BP"):
                hdr[card.keyword] = card.value
    return WCS(hdr)


def apply_offset(wcs: WCS, dx: float, dy: float, rot: float) -> WCS:
    """The WCS moved by (dx east, dy north) arcsec at CRVAL and rotated by ``rot`` degrees
    (see module docstring). ``apply_offset(header_wcs, *offset)`` is the true WCS."""
    out = wcs.deepcopy()
    ra, dec = tangent_to_radec(dx, dy, *wcs.wcs.crval)
    out.wcs.crval = [float(ra), float(dec)]
    c, s = np.cos(np.radians(rot)), np.sin(np.radians(rot))
    out.wcs.cd = np.array([[c, s], [-s, c]]) @ wcs.wcs.cd
    out.wcs.set()
    return out


@dataclass
class Exposure:
    """One simulated exposure (HST FLT) or frame (IRAC BCD) and its injected truth."""

    band: str
    path: str  # relative to the output folder
    visit: str  # HST program+visit ('jabc01') or IRAC 'r{AORKEY}'
    name: str  # HST ROOTNAME or IRAC '{AORKEY}_{EXPID:04d}'
    mjd: float  # start
    exptime: float
    orient: float  # +y axis, deg east of north
    crval: tuple[float, float]  # nominal pointing of the reference pixel
    shape: tuple[int, int]  # (ny, nx)
    dx_visit: float = 0.0
    dy_visit: float = 0.0
    rot_visit: float = 0.0
    dx_exp: float = 0.0
    dy_exp: float = 0.0
    sky: float = 0.0  # at the image centre (HST e/s/pixel, IRAC MJy/sr)
    sky_gx: float = 0.0  # fractional sky change across the image width
    sky_gy: float = 0.0
    meta: dict = field(default_factory=dict)  # header keywords specific to this exposure

    @property
    def band_info(self) -> Band:
        return BANDS[self.band]

    @property
    def dx(self) -> float:
        return self.dx_visit + self.dx_exp

    @property
    def dy(self) -> float:
        return self.dy_visit + self.dy_exp

    @property
    def crpix(self) -> tuple[float, float]:
        return ((self.shape[1] + 1) / 2.0, (self.shape[0] + 1) / 2.0)

    @cached_property
    def header_wcs(self) -> WCS:
        """The nominal WCS written in the header (cached: do not modify)."""
        sip = _irac_sip(self.band) if not self.band_info.is_hst else None
        return make_wcs(self.crval, self.crpix, self.band_info.pixscale, self.orient, sip)

    @cached_property
    def true_wcs(self) -> WCS:
        """The WCS the image was rendered with (cached: do not modify)."""
        return apply_offset(self.header_wcs, self.dx, self.dy, self.rot_visit)

    def sky_map(self) -> np.ndarray:
        ny, nx = self.shape
        y, x = np.indices(self.shape, dtype=float)
        return self.sky * (1.0 + self.sky_gx * (x - (nx - 1) / 2) / nx
                           + self.sky_gy * (y - (ny - 1) / 2) / ny)


@lru_cache(maxsize=4)
def _irac_sip(band: str) -> fits.Header:
    """The real BCD header of ``band`` (WCS and SIP cards only); do not modify (cached)."""
    path = shared_path("psf", f"bcd_{band}.header")
    return fits.Header.fromfile(str(path), sep="\n", endcard=False, padding=False)


def _code(rng: np.random.Generator, n: int) -> str:
    chars = string.ascii_lowercase + string.digits
    return "".join(rng.choice(list(chars), n))


def hst_total_time(band: str, depth: float, n_exp: int) -> float:
    """Total exposure time (s) for a 5-sigma point-source ``depth`` (AB) in a 0.7" aperture:
    sky + dark Poisson noise and ``n_exp`` read-outs, source noise neglected."""
    b = BANDS[band]
    r = DEPTH_APERTURE_ARCSEC / 2
    signal_eps = ujy_to_counts(10 ** (-0.4 * (depth - 23.9)), b) * float(
        psf_encircled_energy(band, [r], scale=0.02)[0])
    n_ap = np.pi * r ** 2 / b.pixscale ** 2
    a = n_ap * (b.sky + b.dark)
    c = n_ap * n_exp * b.read_noise ** 2
    return float((25 * a + np.sqrt(625 * a ** 2 + 100 * signal_eps ** 2 * c)) / (2 * signal_eps ** 2))


def irac_frame_sigma(band: str, depth: float, n_frames: int) -> float:
    """Per-frame background noise (MJy/sr) giving a 5-sigma PSF-fitting ``depth`` (AB) in a
    stack of ``n_frames`` frames (noise-equivalent area of the PSF on the native pixels)."""
    b = BANDS[band]
    psf, scale = irac_psf(band)
    k = int(round(b.pixscale / scale))
    m = (psf.shape[0] // k) * k
    binned = psf[:m, :m].reshape(m // k, k, m // k, k).sum(axis=(1, 3))
    nea = 1.0 / np.sum(binned ** 2)
    sigma_stack = 10 ** (-0.4 * (depth - 23.9)) / (5.0 * np.sqrt(nea))
    return float(ujy_per_pixel_to_mjysr(sigma_stack * np.sqrt(n_frames), b.pixscale ** 2))


def plan_hst(rng: np.random.Generator, ra: float, dec: float, size_arcsec: float,
             offsets: bool) -> list[Exposure]:
    """HST exposures: per filter 2-3 visits (ACS 2) with rolls within +-1.5 deg of the
    instrument's orientation, 2-4 dithered exposures each (ACS 2); random pointing errors
    per visit (shift up to 0.5", rotation up to 0.02 deg) and exposure (up to 0.05")."""
    exposures = []
    for instrument in ("ACS", "WFC3"):
        letter = "j" if instrument == "ACS" else "i"
        program = _code(rng, 3)
        base_orient = 90.0 * rng.integers(0, 4) + rng.uniform(-10.0, 10.0)
        base_mjd = rng.uniform(*HST_EPOCH_MJD) - 60.0
        visit_no = 0
        for band in [n for n in HST_BANDS if BANDS[n].instrument == instrument]:
            b = BANDS[band]
            n_vis = 2 if instrument == "ACS" else int(rng.integers(2, 4))
            n_exp = 2 if instrument == "ACS" else int(rng.integers(3, 5))
            rolls = base_orient + rng.uniform(-1.5, 1.5, n_vis)
            tilt = np.radians(np.abs(rolls - 90.0 * np.round(rolls / 90.0))).max()
            side = int(np.ceil((size_arcsec * (np.cos(tilt) + np.sin(tilt)) + 4.0) / b.pixscale)) + 2 * 8 + 4
            mjd = base_mjd + rng.uniform(0, 30)
            for v in range(n_vis):
                visit_no += 1
                visit = f"{letter}{program}{np.base_repr(visit_no, 36).lower():0>2}"
                vx, vy = rng.uniform(-1.5, 1.5, 2)
                if offsets:
                    off = np.clip(rng.normal(0, 0.25, 2), -0.5, 0.5)
                    rot = rng.uniform(-0.02, 0.02)
                else:
                    off, rot = np.zeros(2), 0.0
                mjd += rng.uniform(3, 20)
                t = mjd
                for e in range(n_exp):
                    dither = np.array([2.5 * e, 1.5 * e]) + rng.uniform(0, 0.5, 2)
                    cd = make_wcs((ra, dec), (1, 1), b.pixscale, rolls[v]).wcs.cd * 3600.0
                    ox, oy = cd @ (dither - np.array([2.5, 1.5]) * (n_exp - 1) / 2)
                    crval = tangent_to_radec(vx + ox, vy + oy, ra, dec)
                    root = f"{visit}{string.ascii_lowercase[e]}{_code(rng, 1)}q"
                    exp_off = np.clip(rng.normal(0, 0.025, 2), -0.05, 0.05) if offsets else np.zeros(2)
                    exposures.append(Exposure(
                        band=band, path=f"hst/{root}_flt.fits", visit=visit, name=root, mjd=t,
                        exptime=0.0, orient=float(rolls[v]),
                        crval=(float(crval[0]), float(crval[1])), shape=(side, side),
                        dx_visit=float(off[0]), dy_visit=float(off[1]), rot_visit=float(rot),
                        dx_exp=float(exp_off[0]), dy_exp=float(exp_off[1]),
                        sky=b.sky * rng.uniform(0.8, 1.2), sky_gx=rng.uniform(-0.03, 0.03),
                        sky_gy=rng.uniform(-0.03, 0.03),
                    ))
                    t += 0.05
    return exposures


def plan_irac(rng: np.random.Generator, ra: float, dec: float, size_arcsec: float,
              offsets: bool, margin_arcsec: float = 10.0, n_frames: int | None = None) -> list[Exposure]:
    """IRAC: 3-4 AORs at different position angles and epochs, each with ``n_frames``
    (default ``IRAC_FRAMES_PER_AOR``) dithered frames
    per channel (ch1 and ch2 share AORKEY and EXPID numbers, as real AORs do); a random
    pointing error per AOR (up to 0.3"). Frames (at most the real 256 x 256) hold the light
    of every source of the field plus ``margin_arcsec`` at any angle and dither."""
    exposures = []
    n_aor = int(rng.integers(3, 5))
    mjds = np.sort(rng.uniform(*IRAC_EPOCH_MJD, n_aor))
    aorkeys = np.sort(rng.choice(np.arange(40_000_000, 65_000_000), n_aor, replace=False))
    n_frames = IRAC_FRAMES_PER_AOR if n_frames is None else n_frames
    for k in range(n_aor):
        aorkey = int(aorkeys[k])
        pa = rng.uniform(0.0, 360.0)
        off = np.clip(rng.normal(0, 0.15, 2), -0.3, 0.3) if offsets else np.zeros(2)
        dithers = rng.uniform(-12.0, 12.0, (n_frames, 2))
        for band in IRAC_BANDS:
            b = BANDS[band]
            reach = (size_arcsec + 2 * margin_arcsec) * np.sqrt(2) + 2 * (17.0 + IRAC_PSF_RADIUS)
            side = min(256, int(np.ceil(reach / b.pixscale)))
            ch = int(band[-1])
            for e in range(n_frames):
                crval = tangent_to_radec(dithers[e, 0], dithers[e, 1], ra, dec)
                path = f"irac/r{aorkey}/ch{ch}/bcd/SPITZER_I{ch}_{aorkey}_{e:04d}_0000_1_bcd.fits"
                exposures.append(Exposure(
                    band=band, path=path, visit=f"r{aorkey}", name=f"{aorkey}_{e:04d}",
                    mjd=float(mjds[k] + e * IRAC_FRAMTIME * 1.3 / 86400), exptime=IRAC_EXPTIME,
                    orient=float(pa), crval=(float(crval[0]), float(crval[1])), shape=(side, side),
                    dx_visit=float(off[0]), dy_visit=float(off[1]),
                    sky=b.sky * rng.uniform(0.8, 1.2), sky_gx=rng.uniform(-0.03, 0.03),
                    sky_gy=rng.uniform(-0.03, 0.03),
                    meta={"AORKEY": aorkey, "EXPID": e, "CHNLNUM": ch},
                ))
    return exposures


def _wcs_cards(exp: Exposure) -> fits.Header:
    hdr = exp.header_wcs.to_header(relax=True)
    for key in ("PC1_1", "PC1_2", "PC2_1", "PC2_2", "CDELT1", "CDELT2"):
        hdr.remove(key, ignore_missing=True)
    cd = exp.header_wcs.wcs.cd
    hdr["CD1_1"], hdr["CD1_2"], hdr["CD2_1"], hdr["CD2_2"] = cd.ravel()
    return hdr


def _mjd_to_iso(mjd: float) -> tuple[str, str]:
    iso = Time(mjd, format="mjd").isot
    return iso[:10], iso[11:19]


def hst_hdulist(exp: Exposure, model_eps: np.ndarray, rng: np.random.Generator, field_name: str,
                ra_targ: float, dec_targ: float, extra: dict) -> fits.HDUList:
    """An FLT-like file: noiseless ``model_eps`` (e/s) + sky with Poisson/read noise, ERR,
    DQ (hot pixels 16, ACS cosmic-ray hits 4096)."""
    b = exp.band_info
    t = exp.exptime
    sky = exp.sky_map()
    var_e = (np.clip(model_eps, 0, None) + sky + b.dark) * t + b.read_noise ** 2
    sigma_e = np.sqrt(var_e)
    sci = model_eps + sky + rng.standard_normal(exp.shape) * sigma_e / t
    dq = np.zeros(exp.shape, np.int16)
    n_hot = rng.poisson(HOT_PIXEL_FRACTION * sci.size)
    hot = rng.integers(0, sci.size, n_hot)
    sci.flat[hot] += rng.uniform(0.5, 5.0, n_hot)
    dq.flat[hot] |= DQ_HOT
    if b.instrument == "ACS":
        n_cr = rng.poisson(CR_RATE * t * sci.size)
        hits = rng.integers(0, sci.size - 2, n_cr)
        for shift in range(2):  # two-pixel hits
            sci.flat[hits + shift] += rng.uniform(50, 1000, n_cr) / t
            dq.flat[hits + shift] |= DQ_CR

    date, time = _mjd_to_iso(exp.mjd)
    prim = fits.Header()
    prim["TELESCOP"] = "HST"
    prim["INSTRUME"] = b.instrument
    prim["DETECTOR"] = b.detector
    prim["FILENAME"] = exp.path.split("/")[-1]
    prim["ROOTNAME"] = exp.name
    prim["PROPOSID"] = 13495
    prim["VISIT"] = (exp.name[4:6], "visit number (ROOTNAME chars 5-6)")
    prim["TARGNAME"] = field_name.upper()
    prim["RA_TARG"] = ra_targ
    prim["DEC_TARG"] = dec_targ
    if b.instrument == "ACS":
        prim["FILTER1"] = "CLEAR1L"
        prim["FILTER2"] = b.header_filter
    prim["FILTER"] = b.header_filter
    prim["EXPTIME"] = t
    prim["EXPSTART"] = exp.mjd
    prim["EXPEND"] = exp.mjd + t / 86400.0
    prim["DATE-OBS"] = date
    prim["TIME-OBS"] = time
    prim["PA_V3"] = (exp.orient + HST_PA_V3_OFFSET[b.instrument]) % 360.0
    prim["NEXTEND"] = 3
    prim.update(extra)

    wcs = _wcs_cards(exp)
    sci_hdr = fits.Header()
    sci_hdr["BUNIT"] = "ELECTRONS/S"
    sci_hdr.update(wcs)
    sci_hdr["ORIENTAT"] = exp.orient
    sci_hdr["PHOTMODE"] = f"{b.instrument} {b.detector} {b.header_filter}"
    sci_hdr["PHOTFLAM"] = b.photflam
    sci_hdr["PHOTFNU"] = b.photfnu
    sci_hdr["PHOTPLAM"] = b.photplam
    sci_hdr["PHOTZPT"] = -21.1
    err_hdr = fits.Header()
    err_hdr["BUNIT"] = "ELECTRONS/S"
    err_hdr.update(wcs)
    return fits.HDUList([
        fits.PrimaryHDU(header=prim),
        fits.ImageHDU(sci.astype(np.float32), sci_hdr, name="SCI"),
        fits.ImageHDU((sigma_e / t).astype(np.float32), err_hdr, name="ERR"),
        fits.ImageHDU(dq, wcs.copy(), name="DQ"),
    ])


def irac_hdulists(exp: Exposure, model_mjysr: np.ndarray, sigma_bg: float,
                  rng: np.random.Generator, field_name: str, ra_targ: float, dec_targ: float,
                  extra: dict) -> tuple[fits.PrimaryHDU, fits.PrimaryHDU]:
    """A BCD (MJy/sr, header modelled on the real ``psf/bcd_ch*.header``) and its
    uncertainty image: background noise ``sigma_bg`` plus source Poisson noise."""
    b = exp.band_info
    ch = exp.meta["CHNLNUM"]
    e_per_mjysr = IRAC_GAIN[exp.band] * exp.exptime / IRAC_FLUXCONV[exp.band]
    var = sigma_bg ** 2 + np.clip(model_mjysr, 0, None) / e_per_mjysr
    sigma = np.sqrt(var)
    data = model_mjysr + exp.sky_map() + rng.standard_normal(exp.shape) * sigma
    hdr = _irac_sip(exp.band).copy()
    for key in ("NAXIS", "NAXIS1", "NAXIS2", "CDELT1", "CDELT2"):
        hdr.remove(key, ignore_missing=True)
    hdr.update(_wcs_cards(exp))
    date, time = _mjd_to_iso(exp.mjd)
    ra_hdr, dec_hdr = exp.header_wcs.all_pix2world([[exp.crpix[0] - 1, exp.crpix[1] - 1]], 0)[0]
    hdr.update({
        "TELESCOP": "Spitzer", "INSTRUME": "IRAC", "CHNLNUM": ch, "AORKEY": exp.meta["AORKEY"],
        "EXPID": exp.meta["EXPID"], "DCENUM": 0, "OBJECT": field_name.upper(), "PROGID": 90257,
        "AORLABEL": f"IRAC-{field_name}", "FRAMTIME": IRAC_FRAMTIME, "EXPTIME": exp.exptime,
        "DATE_OBS": f"{date}T{time}", "MJD_OBS": exp.mjd, "AINTBEG": 0.0, "ATIMEEND": IRAC_FRAMTIME,
        "RA_REF": ra_targ, "DEC_REF": dec_targ, "RA_HDR": float(ra_hdr), "DEC_HDR": float(dec_hdr),
        "PA": exp.orient, "PXSCAL1": -b.pixscale, "PXSCAL2": b.pixscale, "BUNIT": "MJy/sr",
        "FLUXCONV": IRAC_FLUXCONV[exp.band], "GAIN": IRAC_GAIN[exp.band], "ZODY_EST": exp.sky,
    })
    hdr.update(extra)
    unc_hdr = hdr.copy()
    unc_hdr["BUNIT"] = "MJy/sr"
    return (fits.PrimaryHDU(data.astype(np.float32), hdr),
            fits.PrimaryHDU(sigma.astype(np.float32), unc_hdr))
