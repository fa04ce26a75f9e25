"""Release-format fixture files: catalogs, photo-z tables, IRAC AOR logs and mosaics.

Writes files laid out exactly like the ALCS v1.0 release (names, column order, dtypes and
units from `alcsdb.columns`) for any field root and sky position, with values that hang
together physically: fluxes in uJy from AB magnitudes, aperture fluxes growing with the
aperture, `apcorr_i = flux_auto / flux_aper_i`, `{f}_corr_i = {f}_flux_aper_i * apcorr_i`,
`{f}_tot_i = {f}_corr_i * {f}_tot_corr`, -99 where a filter does not cover a source, sources
within ~2' of the field centre, unique ids. Everything is deterministic per seed.

Filter coverage follows what grizli does, so ingest sees the real thing: a source outside a
filter's footprint has its aperture pixels masked, so `{f}_flux_aper_i` and
`{f}_fluxerr_aper_i` are 0 (not -99), `{f}_mask_aper_i` is the whole aperture area in that
filter's pixels and `{f}_flag_aper_i` has sep's APER_ALLMASKED bit; the corrected columns
(`corr`, `ecorr`, `tot`, `etot`) are -99 wherever masked pixels exceed 20% of the aperture area
(counted, like grizli, against the aperture area in detection-image pixels).

Catalogs are written by `write_fits_table`, a direct binary-table writer (astropy builds and
writes a 900-column, 30,000-row table in ~4 s; this takes well under 1 s); astropy reads them.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, NamedTuple, Sequence

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS
from scipy.spatial import cKDTree

from alcsdb.columns import (
    AB_ZEROPOINT_UJY,
    AOR_LOG_SPECS,
    APERTURE_QUANTITIES,
    APERTURES,
    FITS_MAX_COLUMNS,
    IRAC_CHANNELS,
    MISSING,
    ZOUT_PERCENTILES,
    ZOUT_SPECS,
    check_filters,
    field_key,
    phot_apcorr_columns,
    phot_column_spec,
)

Columns = dict[str, np.ndarray]

# sep flag bits (sep.OBJ_MERGED, sep.OBJ_TRUNC, sep.APER_HASMASKED, sep.APER_ALLMASKED)
OBJ_MERGED, OBJ_TRUNC, APER_HASMASKED, APER_ALLMASKED = 1, 2, 32, 64

DET_PIXSCALE = 0.1  # arcsec; grizli's IR detection grid
FIELD_RADIUS = 120.0  # arcsec; sources lie within ~2' of the field centre
PSF_BETA = 2.0  # Moffat index of the model PSFs: broad wings like HST curves of growth
MOFFAT_HALF_LIGHT = float(np.sqrt(2 ** (1 / (PSF_BETA - 1)) - 1))  # half-light radius / alpha
MIN_SEPARATION = 0.15  # arcsec; sep does not split sources closer than this
EE_RADIUS_MAX = 5.0  # arcsec; curve of growth normalised to 1 there, as grizli's EE tables
KRON_MIN_RADIUS = 0.35  # arcsec; grizli's minimum circular Kron radius (D = 0.7")
IRAC_FRAME_EXPTIME = 93.6  # s, exposure time of a 100 s IRAC frame
IRAC_PIXSCALE = {1: 1.2218, 2: 1.2131, 3: 1.2286, 4: 1.2206}  # arcsec, BCD pixels
IRAC_PIVOT = {1: 35569.0, 2: 45020.0}  # Angstrom
COLD_MISSION_AORKEY_MAX = 38_000_000  # AORKEYs below this are cold-mission AORs (ch1-ch4)


@dataclass(frozen=True)
class FilterModel:
    """Plausible instrument numbers for an HST filter, derived from its name.

    `pivot` Angstrom; `pixscale` arcsec (ALCS: IR 0.1", ACS/UVIS 0.05"); `psf_alpha` Moffat
    core width, arcsec; `depth` 5-sigma AB in a D=0.7" aperture; `zeropoint` AB of 1 e-/s.
    """

    name: str
    instrument: str
    detector: str
    pivot: float
    pixscale: float
    psf_alpha: float
    depth: float
    zeropoint: float

    @property
    def photflam(self) -> float:
        """erg/s/cm2/A per e-/s, consistent with `zeropoint` and `pivot`."""
        return 10 ** (-0.4 * (self.zeropoint + 21.10 + 5 * np.log10(self.pivot) - 18.6921))

    @property
    def photfnu(self) -> float:
        """Jy per e-/s: ZP = -2.5 log10(PHOTFNU) + 8.90."""
        return 10 ** (-0.4 * (self.zeropoint - 8.90))

    @property
    def ujy_per_count_rate(self) -> float:
        return 10 ** (-0.4 * (self.zeropoint - AB_ZEROPOINT_UJY))

    @property
    def drz(self) -> str:
        """grizli's mosaic suffix: drz for WFC3/IR, drc (CTE-corrected) for ACS and UVIS."""
        return "drz" if self.detector == "IR" else "drc"


def filter_model(filt: str) -> FilterModel:
    """Model numbers for an HST filter name, or `det` for the IR detection image."""
    if filt == "det":
        return FilterModel("det", "WFC3", "IR", 14000.0, DET_PIXSCALE, 0.16, 29.0, 26.3)
    (filt,) = check_filters([filt])
    number = int(filt.lstrip("fq")[:3])
    if filt.startswith(("f0", "f1")):
        return FilterModel(filt, "WFC3", "IR", number * 100.0, 0.1, 0.16, 28.6, 26.0)
    if filt.endswith("u") or number < 400:
        return FilterModel(filt, "WFC3", "UVIS", number * 10.0, 0.05, 0.07, 27.5, 24.8)
    return FilterModel(filt, "ACS", "WFC", number * 10.0, 0.05, 0.08, 28.8, 25.9)


def moffat_ee(radius: np.ndarray, alpha: np.ndarray | float) -> np.ndarray:
    """Enclosed-energy fraction of a Moffat(`PSF_BETA`) profile within `radius` (same units)."""
    return 1.0 - (1.0 + (np.asarray(radius) / alpha) ** 2) ** (1.0 - PSF_BETA)


def psf_total_correction(radius: np.ndarray, alpha: float) -> np.ndarray:
    """grizli's point-source `tot_corr`: 1 / EE(clip(r, 0.35", 5")), EE normalised at 5"."""
    r = np.clip(radius, KRON_MIN_RADIUS, EE_RADIUS_MAX)
    return moffat_ee(EE_RADIUS_MAX, alpha) / moffat_ee(r, alpha)


def masked_fraction(edge_distance: np.ndarray, radius: float) -> np.ndarray:
    """Fraction of a circle of `radius` beyond a straight edge `edge_distance` from its centre.

    Positive distances are inside the footprint; the circular segment beyond the chord is
    (theta - sin theta) / 2 pi of the disk, theta = 2 arccos(d / r).
    """
    theta = 2 * np.arccos(np.clip(edge_distance / radius, -1.0, 1.0))
    return (theta - np.sin(theta)) / (2 * np.pi)


def _sigma_aperture(depth: float, diameter: float | np.ndarray) -> np.ndarray:
    """1-sigma noise (uJy) in an aperture of `diameter` arcsec for a 5-sigma D=0.7" depth."""
    return 10 ** (-0.4 * (depth - AB_ZEROPOINT_UJY)) / 5 * (np.asarray(diameter) / 0.7)


def _ujy(mag: np.ndarray) -> np.ndarray:
    return 10 ** (-0.4 * (mag - AB_ZEROPOINT_UJY))


def _mag(flux: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return AB_ZEROPOINT_UJY - 2.5 * np.log10(flux)


def detection_wcs(ra: float, dec: float, pixscale: float = DET_PIXSCALE,
                  radius: float = FIELD_RADIUS + 10) -> WCS:
    """North-up TAN grid centred on (ra, dec) that holds every source (grizli's IR grid)."""
    n = int(np.ceil(2 * radius / pixscale))
    return _tan_wcs(ra, dec, (n, n), pixscale)


def _tan_wcs(ra: float, dec: float, shape: tuple[int, int], pixscale: float) -> WCS:
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [ra, dec]
    w.wcs.crpix = [shape[1] / 2 + 0.5, shape[0] / 2 + 0.5]
    w.wcs.cd = np.array([[-pixscale / 3600, 0.0], [0.0, pixscale / 3600]])
    w.wcs.radesys = "ICRS"
    w.pixel_shape = (shape[1], shape[0])
    return w


# --- the phot_apcorr catalog ----------------------------------------------------------------


def _positions(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Tangent-plane offsets (xi east, eta north; arcsec) and a cluster-member mask.

    30% members (|N(0, 35")| from the centre), the rest uniform within `FIELD_RADIUS`; a
    source closer than `MIN_SEPARATION` to another is drawn again (sep would blend them).
    """
    member = rng.random(n) < 0.3

    def draw(m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        k = m.size
        r = np.where(m, np.abs(rng.normal(0, 35, k)), FIELD_RADIUS * np.sqrt(rng.random(k)))
        phi = rng.uniform(0, 2 * np.pi, k)
        return np.minimum(r, FIELD_RADIUS) * np.cos(phi), np.minimum(r, FIELD_RADIUS) * np.sin(phi)

    xi, eta = draw(member)
    for _ in range(20):
        pairs = cKDTree(np.column_stack([xi, eta])).query_pairs(MIN_SEPARATION, output_type="ndarray")
        if not len(pairs):
            break
        redo = np.unique(pairs[:, 1])
        xi[redo], eta[redo] = draw(member[redo])
    return xi, eta, member


def _footprint_distance(rng: np.random.Generator, fm: FilterModel, xi: np.ndarray,
                        eta: np.ndarray) -> np.ndarray:
    """Signed distance (arcsec, >0 inside) to a filter's square footprint edge.

    WFC3/IR covers ~136", ACS ~202", UVIS ~160" on a side, at a random orient, roughly centred.
    """
    half = {"IR": 68.0, "WFC": 101.0, "UVIS": 80.0}[fm.detector]
    angle = rng.uniform(0, np.pi / 2)
    cx, cy = rng.normal(0, 8, 2)
    u = (xi - cx) * np.cos(angle) + (eta - cy) * np.sin(angle)
    v = -(xi - cx) * np.sin(angle) + (eta - cy) * np.cos(angle)
    return half - np.maximum(np.abs(u), np.abs(v))


def _aperture_block(rng: np.random.Generator, fm: FilterModel, total: np.ndarray,
                    alpha_obs: np.ndarray, edge: np.ndarray | None) -> dict[str, np.ndarray]:
    """sep.sum_circle-like columns for one image: flux, fluxerr, flag, bkg, mask per aperture.

    Returns arrays of shape (n, 7) keyed by quantity. `total` is the true total flux (uJy),
    `alpha_obs` the Moffat width of the PSF-convolved source; `edge` the footprint distance
    (None: the image covers every source, as the detection image does).
    """
    n = total.size
    diam = np.asarray(APERTURES)
    frac = np.zeros((n, diam.size)) if edge is None else masked_fraction(edge[:, None], diam / 2)
    good = 1.0 - frac
    sigma = _sigma_aperture(fm.depth, diam) * rng.uniform(0.9, 1.1, (n, 1))
    inside = total[:, None] * moffat_ee(diam / 2, alpha_obs[:, None])
    bkg = rng.normal(0, 0.05, (n, 1)) * sigma * (diam / 0.7)
    flag = np.where(frac > 0, APER_HASMASKED, 0) | np.where(frac >= 1, APER_ALLMASKED, 0)
    return {
        "flux": good * inside + np.sqrt(good) * sigma * rng.standard_normal((n, diam.size)),
        "fluxerr": np.sqrt(good) * sigma,
        "flag": flag.astype(np.int16),
        "bkg": good * bkg,
        "mask": frac * np.pi * (diam / 2 / fm.pixscale) ** 2,
    }


def _ellipse_moments(a: np.ndarray, b: np.ndarray, theta: np.ndarray) -> dict[str, np.ndarray]:
    """sep's second moments and ellipse coefficients for semi-axes a, b (pix), angle theta."""
    c, s = np.cos(theta), np.sin(theta)
    return {
        "x2_image": a**2 * c**2 + b**2 * s**2,
        "y2_image": a**2 * s**2 + b**2 * c**2,
        "xy_image": (a**2 - b**2) * s * c,
        "cxx_image": c**2 / a**2 + s**2 / b**2,
        "cyy_image": s**2 / a**2 + c**2 / b**2,
        "cxy_image": 2 * c * s * (1 / a**2 - 1 / b**2),
    }


def make_phot_apcorr(root: str, ra: float, dec: float, n_sources: int, filters: Sequence[str],
                     seed: int, *, with_irac: bool = True) -> tuple[Columns, list[tuple[str, Any, str]]]:
    """The columns (release order, release dtypes) and header cards of a phot_apcorr catalog.

    Sources: 30% cluster members (concentrated, red) and 70% field galaxies uniform within
    2' of (ra, dec); detection magnitudes from counts rising as 10^(0.3 m), sizes shrinking
    with magnitude, power-law SEDs (f_nu ~ lambda^beta; 3% with a Lyman-like break). Fluxes
    in each aperture follow the PSF-convolved profile (Moffat) plus noise for the
    filter's depth; Kron fluxes, total corrections, magnitudes, moments and sizes follow
    grizli's definitions. Sorted by y like sep's output, ids 1..n.
    """
    filters = check_filters(filters)
    rng = np.random.default_rng([seed, 0])
    n = int(n_sources)
    det = filter_model("det")
    wcs = detection_wcs(ra, dec)

    xi, eta, member = _positions(rng, n)
    # magnitudes: inverse CDF of dN/dm ~ 10^(0.3 m) between 17 and 28.5 in the detection band
    m_lo, m_hi = 17.0, 28.5
    u = rng.random(n)
    m_det = np.log10(10 ** (0.3 * m_lo) + u * (10 ** (0.3 * m_hi) - 10 ** (0.3 * m_lo))) / 0.3
    m_det = np.where(member, np.minimum(m_det, rng.uniform(18, 26.5, n)), m_det)
    r_half = np.clip(10 ** rng.normal(-0.55 - 0.12 * (m_det - 24), 0.2), 0.02, 2.5)  # arcsec
    q = rng.uniform(0.25, 1.0, n)
    theta = rng.uniform(-np.pi / 2, np.pi / 2, n)
    beta = np.where(member, rng.normal(2.0, 0.3, n), rng.normal(0.8, 0.8, n))
    lyman_break = np.where(rng.random(n) < 0.03, rng.uniform(4000, 12000, n), 0.0)
    total_det = _ujy(m_det)

    def alpha_obs(fm: FilterModel) -> np.ndarray:
        # add the galaxy's half-light radius to the PSF's in quadrature
        return np.sqrt(fm.psf_alpha**2 + (r_half / MOFFAT_HALF_LIGHT) ** 2)

    # detection-image geometry (sep moments of the PSF-convolved source, pixels)
    sigma_c = MOFFAT_HALF_LIGHT * alpha_obs(det) / 1.1774 / DET_PIXSCALE
    a_img, b_img = sigma_c / np.sqrt(q), sigma_c * np.sqrt(q)
    x = wcs.wcs.crpix[0] - 1 - xi / DET_PIXSCALE
    y = wcs.wcs.crpix[1] - 1 + eta / DET_PIXSCALE
    order = np.argsort(y, kind="stable")
    (xi, eta, member, m_det, r_half, q, theta, beta, lyman_break, total_det, sigma_c, a_img, b_img,
     x, y) = (v[order] for v in (xi, eta, member, m_det, r_half, q, theta, beta, lyman_break,
                                  total_det, sigma_c, a_img, b_img, x, y))
    ra_s, dec_s = wcs.all_pix2world(x, y, 0)

    cols: Columns = {}
    sigma_pix = _sigma_aperture(det.depth, 0.7) / (np.sqrt(np.pi) * 0.35 / DET_PIXSCALE)
    peak = total_det / (2 * np.pi * a_img * b_img)
    snr_peak = np.maximum(peak / sigma_pix, 1.5)
    log_ratio = np.log(snr_peak)  # isophote at 1 sigma: I0 exp(-r^2/2s^2) = sigma_pix
    npix = np.maximum(9, np.round(2 * np.pi * a_img * b_img * log_ratio)).astype(np.int64)
    moments = _ellipse_moments(a_img, b_img, theta)
    half_x = np.sqrt(2 * log_ratio * moments["x2_image"])
    half_y = np.sqrt(2 * log_ratio * moments["y2_image"])
    nx, ny = wcs.pixel_shape
    snr_iso = total_det / (sigma_pix * np.sqrt(npix))
    flux_iso = total_det * (1 - np.exp(-npix / (2 * np.pi * a_img * b_img))) \
        + sigma_pix * np.sqrt(npix) * rng.standard_normal(n)
    cols["thresh"] = sigma_pix / det.ujy_per_count_rate * rng.uniform(0.95, 1.05, n)
    cols["npix"] = npix
    cols["tnpix"] = np.maximum(1, np.round(npix * rng.uniform(0.2, 0.6, n))).astype(np.int64)
    cols["xmin"] = np.clip(np.floor(x - half_x), 0, nx - 1).astype(np.int64)
    cols["xmax"] = np.clip(np.ceil(x + half_x), 0, nx - 1).astype(np.int64)
    cols["ymin"] = np.clip(np.floor(y - half_y), 0, ny - 1).astype(np.int64)
    cols["ymax"] = np.clip(np.ceil(y + half_y), 0, ny - 1).astype(np.int64)
    cols["x"], cols["y"] = x, y
    for k in ("x2_image", "y2_image", "xy_image"):
        cols[k] = moments[k]
    for k, err in (("errx2", "x2_image"), ("erry2", "y2_image"), ("errxy", "xy_image")):
        cols[k] = moments[err] / np.maximum(snr_iso, 1.0) ** 2
    cols["a_image"], cols["b_image"], cols["theta_image"] = a_img, b_img, theta
    for k in ("cxx_image", "cyy_image", "cxy_image"):
        cols[k] = moments[k]
    cols["flux"] = flux_iso * rng.uniform(0.97, 1.0, n)
    cols["cflux"] = cols["flux"] * rng.uniform(0.85, 0.95, n)
    cols["peak"] = peak + sigma_pix * rng.standard_normal(n)
    cols["cpeak"] = 0.7 * peak
    xpeak, ypeak = np.round(x).astype(np.int64), np.round(y).astype(np.int64)
    cols["xcpeak"], cols["ycpeak"], cols["xpeak"], cols["ypeak"] = xpeak, ypeak, xpeak, ypeak
    truncated = (cols["xmin"] == 0) | (cols["ymin"] == 0) | (cols["xmax"] == nx - 1) | (cols["ymax"] == ny - 1)
    cols["flag"] = (np.where(rng.random(n) < 0.2, OBJ_MERGED, 0) | np.where(truncated, OBJ_TRUNC, 0)).astype(np.int16)
    cols["x_image"], cols["y_image"] = x + 1, y + 1
    cols["id"] = np.arange(1, n + 1, dtype=np.int32)
    cols["ra"], cols["dec"] = ra_s, dec_s
    cols["x_world"], cols["y_world"] = ra_s.copy(), dec_s.copy()
    cols["flux_iso"] = flux_iso
    cols["fluxerr_iso"] = sigma_pix * np.sqrt(npix)
    cols["area_iso"] = npix.astype(np.float64)
    cols["mag_iso"] = _mag(flux_iso)
    kron_radius = np.clip(rng.lognormal(np.log(2.0), 0.25, n), 1.0, 6.0)
    kron_rcirc = 2.5 * kron_radius * np.sqrt(a_img * b_img)
    r_auto = np.maximum(kron_rcirc * DET_PIXSCALE, KRON_MIN_RADIUS)  # arcsec
    circular = kron_rcirc * DET_PIXSCALE < KRON_MIN_RADIUS
    cols["kron_radius"], cols["kron_rcirc"] = kron_radius, kron_rcirc
    fluxerr_auto = _sigma_aperture(det.depth, 2 * r_auto)
    flux_auto = total_det * moffat_ee(r_auto, alpha_obs(det)) + fluxerr_auto * rng.standard_normal(n)
    cols["flux_auto"], cols["fluxerr_auto"] = flux_auto, fluxerr_auto
    cols["bkg_auto"] = rng.normal(0, 0.05, n) * fluxerr_auto
    cols["flag_auto"] = np.zeros(n, np.int16)
    cols["area_auto"] = np.where(circular, np.pi * (KRON_MIN_RADIUS / DET_PIXSCALE) ** 2,
                                 np.pi * (2.5 * kron_radius) ** 2 * a_img * b_img)
    cols["flux_radius_flag"] = np.zeros(n, np.int16)
    for frac, name in ((0.2, "flux_radius_20"), (0.5, "flux_radius"), (0.9, "flux_radius_90")):
        cols[name] = alpha_obs(det) * np.sqrt((1 - frac) ** (-1 / (PSF_BETA - 1)) - 1) / DET_PIXSCALE
    tot_corr = psf_total_correction(r_auto, det.psf_alpha)
    cols["tot_corr"] = tot_corr
    cols["mag_auto"] = _mag(flux_auto * tot_corr)
    cols["magerr_auto"] = 2.5 / np.log(10) * fluxerr_auto / flux_auto

    det_block = _aperture_block(rng, det, total_det, alpha_obs(det), None)
    _put_block(cols, "", det_block)

    filter_blocks = {}
    for f in filters:
        fm = filter_model(f)
        sed = _ujy(m_det - 2.5 * beta * np.log10(fm.pivot / det.pivot)) * (fm.pivot > lyman_break)
        block = _aperture_block(rng, fm, sed, alpha_obs(fm), _footprint_distance(rng, fm, xi, eta))
        filter_blocks[f] = block
        _put_block(cols, f"{f}_", block)
        cols[f"{f}_tot_corr"] = psf_total_correction(r_auto, fm.psf_alpha)

    # grizli apply_catalog_corrections, aperture-major (see alcsdb.columns)
    det_area = np.pi * (np.asarray(APERTURES) / 2 / DET_PIXSCALE) ** 2
    for i in range(len(APERTURES)):
        apcorr = flux_auto / det_block["flux"][:, i]
        cols[f"apcorr_{i}"] = apcorr
        for f in filters:
            block = filter_blocks[f]
            bad = block["mask"][:, i] > 0.2 * det_area[i]
            corr = block["flux"][:, i] * apcorr
            ecorr = block["fluxerr"][:, i] * apcorr
            tc = cols[f"{f}_tot_corr"]
            for name, value in (("corr", corr), ("ecorr", ecorr), ("tot", corr * tc), ("etot", ecorr * tc)):
                cols[f"{f}_{name}_{i}"] = np.where(bad, MISSING, value)

    if with_irac:
        cols.update(_irac_columns(rng, xi, eta, m_det, beta))

    tree = cKDTree(np.column_stack([xi, eta]))
    dist, idx = tree.query(np.column_stack([xi, eta]), k=2)
    mag_auto = cols["mag_auto"]
    cols["dr_nn"] = dist[:, 1]
    cols["dmag_nn"] = mag_auto[idx[:, 1]] - mag_auto  # neighbour minus this source
    cols["id_nn"] = cols["id"][idx[:, 1]]
    cols["z_spec"] = np.full(n, -1.0)  # grizli writes id*0 - 1: "empty for now"
    cols["dummy_err"] = np.full(n, 10 ** (-0.4 * (8 - AB_ZEROPOINT_UJY)))
    cols["dummy_flux"] = flux_auto.copy()

    names = phot_apcorr_columns(filters, with_irac=with_irac)
    out = {name: np.asarray(cols[name], dtype=phot_column_spec(name).dtype) for name in names}
    return out, _phot_header(root, seed, filters)


def _put_block(cols: Columns, prefix: str, block: Mapping[str, np.ndarray]) -> None:
    for i in range(len(APERTURES)):
        for q in APERTURE_QUANTITIES:
            cols[f"{prefix}{q}_aper_{i}"] = block[q][:, i]


def _irac_columns(rng: np.random.Generator, xi: np.ndarray, eta: np.ndarray, m_det: np.ndarray,
                  beta: np.ndarray) -> Columns:
    """golfir-like IRAC columns: nexp ~ Poisson(120) (1% uncovered: -99), 2'-patch ids."""
    n = xi.size
    cols: Columns = {}
    patch = (1 + np.floor((xi + 150) / 100) + 3 * np.floor((eta + 150) / 100)).astype(np.int32)
    for ch in IRAC_CHANNELS:
        nexp = rng.poisson(120, n)
        nexp[rng.random(n) < 0.01] = 0
        m_ch = m_det - 2.5 * 0.5 * beta * np.log10(IRAC_PIVOT[ch] / 14000.0)
        true = _ujy(m_ch)
        err = np.hypot(_sigma_aperture(25.0, 3.0) * np.sqrt(100 / np.maximum(nexp, 1)), 0.02 * true)
        flux = true + err * rng.standard_normal(n)
        covered = nexp > 0
        cols[f"irac_ch{ch}_nexp"] = nexp
        cols[f"irac_ch{ch}_exptime"] = nexp * IRAC_FRAME_EXPTIME
        cols[f"irac_ch{ch}_flux"] = np.where(covered, flux, MISSING)
        cols[f"irac_ch{ch}_err"] = np.where(covered, err, MISSING)
        cols[f"irac_ch{ch}_patch"] = patch
        cols[f"irac_ch{ch}_bright"] = (m_ch < 17).astype(np.int16)
    return cols


def _phot_header(root: str, seed: int, filters: Sequence[str]) -> list[tuple[str, Any, str]]:
    """grizli-style catalog metadata: apertures, detection parameters, per-filter zeropoints."""
    det = filter_model("det")
    cards: list[tuple[str, Any, str]] = [
        ("ROOT", root, "Field root"),
        ("ORIGIN", "ingest.fixtures", "Synthetic release-format fixture"),
        ("SEED", int(seed), "Fixture random seed"),
        ("MINAREA", 9, "Minimum source area in pixels"),
        ("CLEAN", True, "Detection cleaning"),
        ("DEBCONT", 0.001, "Deblending contrast ratio"),
        ("DEBTHRSH", 32, "Number of deblending thresholds"),
        ("THRESHOLD", 1.0, "Detection threshold"),
        ("ZP", det.zeropoint, "AB zeropoint"),
        ("PLAM", det.pivot, "Filter pivot wave"),
        ("TOTALCOL", "flux_auto", "Column for total flux"),
    ]
    for i, d in enumerate(APERTURES):
        cards += [(f"APER_{i}", d / DET_PIXSCALE, "Aperture diameter, pix"),
                  (f"ASEC_{i}", d, "Aperture diameter, arcsec")]
    for f in filters:
        fm = filter_model(f)
        cards += [(f"{f.upper()}_ZP", fm.zeropoint, "AB zeropoint"),
                  (f"{f.upper()}_PLAM", fm.pivot, "Filter pivot wave"),
                  (f"{f.upper()}_FNU", fm.photfnu, "Scale to Jy"),
                  (f"{f.upper()}_FLAM", fm.photflam, "Scale to flam")]
    return cards


def write_phot_apcorr(path: str | Path, root: str, ra: float, dec: float, n_sources: int,
                      filters: Sequence[str], seed: int, *, with_irac: bool = True,
                      extra_columns: Mapping[str, Any] | None = None,
                      drop_columns: Iterable[str] = (), rename_columns: Mapping[str, str] | None = None,
                      dtypes: Mapping[str, str] | None = None) -> Columns:
    """Write `{root}_irac_phot_apcorr.fits` (see `make_phot_apcorr`); return the columns written.

    Variations for bad-input tests: `extra_columns` {name: value or array} appended at the
    end; `drop_columns` removed; `rename_columns` {old: new} renamed in place; `dtypes`
    {name: numpy dtype} casts (e.g. `{"id": "f8"}`). Units of renamed or extra columns are
    kept or left empty.
    """
    cols, header = make_phot_apcorr(root, ra, dec, n_sources, filters, seed, with_irac=with_irac)
    units = {name: phot_column_spec(name).unit for name in cols}
    for name in drop_columns:
        del cols[name]
    for old, new in (rename_columns or {}).items():
        cols = {new if k == old else k: v for k, v in cols.items()}
        units[new] = units.get(old)
    for name, value in (extra_columns or {}).items():
        cols[name] = np.broadcast_to(np.asarray(value), (n_sources,) + np.shape(value)[1:]).copy()
    for name, dtype in (dtypes or {}).items():
        cols[name] = cols[name].astype(dtype)
    write_fits_table(path, cols, units, header)
    return cols


# --- zout ---------------------------------------------------------------------------------

ZOUT_H0, ZOUT_OM0 = 70.0, 0.3
_L_SUN_ERG_S = 3.828e33
_MPC_CM = 3.0857e24
_NU_V = 2.99792458e18 / 5500.0  # Hz


def make_zout(ids: np.ndarray, ra: np.ndarray, dec: np.ndarray, seed: int) -> tuple[Columns, list]:
    """EAZY-like zout columns for these sources (zout_columns.md order and names).

    Consistent by construction: z025 <= z160 <= z500 <= z840 <= z975 around z_phot; dL is
    the luminosity distance of z_phot in flat LCDM (H0=70, Om0=0.3); Lv follows from restV
    and dL; mass = MLv * Lv; SFR = sSFR * mass; percentile vectors are increasing and
    bracket their scalar.
    """
    from astropy.cosmology import FlatLambdaCDM

    rng = np.random.default_rng([seed, 1])
    n = len(ids)
    member = rng.random(n) < 0.25
    z = np.where(member, rng.normal(0.4, 0.03, n), np.exp(rng.normal(np.log(1.2), 0.6, n)))
    z = np.clip(z, 0.05, 10.0)
    sig = 0.04 * (1 + z) * rng.uniform(0.5, 3.0, n)
    z500 = z + rng.normal(0, 0.2, n) * sig
    steps = np.array([-2.0, -1.0, 0.0, 1.0, 2.2])
    zq = np.maximum.accumulate(np.clip(z500[:, None] + steps * sig[:, None], 0.01, 12.0), axis=1)
    nusefilt = rng.integers(5, 13, n)
    chi2 = nusefilt * rng.gamma(2.0, 0.6, n)
    risk = rng.uniform(0.02, 0.5, n)
    d_l = FlatLambdaCDM(H0=ZOUT_H0, Om0=ZOUT_OM0).luminosity_distance(z).to_value("Mpc")
    rest_v = 10 ** rng.uniform(-1, 2, n)
    u_v, v_j = rng.uniform(0.3, 2.0, n), rng.uniform(0.0, 2.0, n)
    rest = {"U": rest_v * 10 ** (-0.4 * u_v), "B": rest_v * 10 ** (-0.2 * u_v), "V": rest_v,
            "J": rest_v * 10 ** (0.4 * v_j)}
    lv = 4 * np.pi * (d_l * _MPC_CM) ** 2 * rest_v * 1e-29 / (1 + z) * _NU_V / _L_SUN_ERG_S
    mlv = 10 ** rng.normal(0.0, 0.3, n)
    mass = mlv * lv
    ssfr = 10 ** rng.normal(-9.3, 0.7, n)
    sfr = ssfr * mass
    av = rng.uniform(0, 2.5, n)
    energy_abs = sfr * 1e10 * (1 - 10 ** (-0.4 * av))
    lir = energy_abs * rng.uniform(0.9, 1.1, n)

    def percentiles(value: np.ndarray, dex: float) -> np.ndarray:
        spread = dex * rng.uniform(0.5, 1.5, (value.size, 1))
        return value[:, None] * 10 ** (np.array([-2.0, -1.0, 0.0, 1.0, 2.0]) * spread)

    cols: Columns = {
        "id": np.asarray(ids), "ra": np.asarray(ra), "dec": np.asarray(dec), "z_spec": np.full(n, -1.0),
        "nusefilt": nusefilt,
        "lc_min": rng.choice([2708.6, 3353.7, 4318.9, 5921.1], n),
        "lc_max": rng.choice([15396.0, 35569.0, 45020.0], n, p=[0.1, 0.1, 0.8]),
        "numpeaks": rng.choice([1, 2, 3], n, p=[0.8, 0.15, 0.05]),
        "z_phot": z, "z_phot_chi2": chi2, "z_phot_risk": risk,
        "z_min_risk": np.clip(z + rng.normal(0, 0.1, n) * sig, 0.01, 12.0), "min_risk": risk * rng.uniform(0.7, 1.0, n),
        "z_chi2_noprior": np.clip(z + rng.normal(0, 0.3, n) * sig, 0.01, 12.0),
        "chi2_noprior": chi2 * rng.uniform(0.8, 1.0, n),
    }
    for j, name in enumerate(("z025", "z160", "z500", "z840", "z975")):
        cols[name] = zq[:, j]
    for band, value in rest.items():
        cols[f"rest{band}"] = value
        cols[f"rest{band}_err"] = value * rng.uniform(0.03, 0.15, n)
    cols.update({"dL": d_l, "Lv": lv, "MLv": mlv, "Av": av, "mass": mass, "SFR": sfr, "LIR": lir,
                 "energy_abs": energy_abs, "massp": percentiles(mass, 0.15), "SFRp": percentiles(sfr, 0.3),
                 "sSFRp": percentiles(ssfr, 0.3), "LIRp": percentiles(lir, 0.3)})
    for line, ratio in (("Ha", 1.0), ("O3", 0.5), ("Hb", 0.35), ("O2", 0.8), ("Lya", 2.0)):
        cols[f"line_flux_{line}"] = ratio * sfr * 1e41 / (4 * np.pi * (d_l * _MPC_CM) ** 2) * 1e17
        cols[f"line_EW_{line}"] = 10 ** rng.normal(1.5, 0.5, n) * ratio
    out = {s.name: np.asarray(cols[s.name], dtype=s.dtype) for s in ZOUT_SPECS}
    header = [("ORIGIN", "ingest.fixtures", "Synthetic release-format fixture"),
              ("SEED", int(seed), "Fixture random seed"),
              ("VERSION", "fixture", "Eazy-py version"),
              ("PRIOR", False, "Prior applied"), ("BETPRIOR", True, "Beta prior applied"),
              ("H0", ZOUT_H0, "Hubble constant"), ("OM0", ZOUT_OM0, "Omega matter"),
              ("PERCENTS", ",".join(f"{p:g}" for p in ZOUT_PERCENTILES), "massp/SFRp/sSFRp/LIRp percentiles")]
    return out, header


def write_zout(path: str | Path, ids: np.ndarray, ra: np.ndarray, dec: np.ndarray, seed: int) -> Columns:
    """Write `{root}_irac.eazypy.zout.fits` for these sources (see `make_zout`)."""
    cols, header = make_zout(ids, ra, dec, seed)
    write_fits_table(path, cols, {s.name: s.unit for s in ZOUT_SPECS}, header)
    return cols


# --- IRAC AOR logs ------------------------------------------------------------------------


def tan_deproject(crval: np.ndarray, cd: np.ndarray, crpix: np.ndarray, pix: np.ndarray) -> np.ndarray:
    """Gnomonic (TAN) pixel -> (ra, dec) for many WCSs at once (no distortion).

    crval (n, 2) deg, cd (n, 2, 2) deg/pix, crpix (n, 2) and pix (m, 2) one-indexed FITS
    pixels; returns (n, m, 2) degrees.
    """
    d = pix[None, :, :] - crpix[:, None, :]
    xi_eta = np.radians(np.einsum("nij,nmj->nmi", cd, d))
    xi, eta = xi_eta[..., 0], xi_eta[..., 1]
    ra0, dec0 = np.radians(crval[:, 0])[:, None], np.radians(crval[:, 1])[:, None]
    denom = np.cos(dec0) - eta * np.sin(dec0)
    ra = ra0 + np.arctan2(xi, denom)
    dec = np.arctan2(eta * np.cos(dec0) + np.sin(dec0), np.hypot(xi, denom))
    return np.stack([np.degrees(ra) % 360, np.degrees(dec)], axis=-1)


def make_aor_log(aorkey: int, channel: int, ra: float, dec: float, n_bcd: int, seed: int,
                 *, object_name: str = "ALCS-CLUSTER") -> Columns:
    """golfir's AOR log (`IracAOR.wcs_table`): one row per BCD of an AOR in one channel.

    AOR-level values (orientation, start time, frame time, program, observer, map centre)
    depend on (seed, aorkey) only, so the ch1 and ch2 logs of an AOR agree; AORKEYs below
    38,000,000 are cold-mission AORs (MJD 52926-54943), the rest warm. BCDs step through a
    small map with dithers within ~2.5' of (ra, dec); corners are the 256x256 BCD footprint
    as astropy's `WCS.calc_footprint()` gives it.
    """
    aor = np.random.default_rng([seed, 2, aorkey])
    rng = np.random.default_rng([seed, 3, aorkey, channel])
    cold = aorkey < COLD_MISSION_AORKEY_MAX
    pa = aor.uniform(0, 360)
    exptime = aor.choice([IRAC_FRAME_EXPTIME, 26.8])
    start = aor.uniform(52926.8, 54943.5) if cold else aor.uniform(55040.6, 58839.7)
    progid = int(aor.integers(10_000, 15_000) if aor.random() < 0.5 else aor.integers(60_000, 90_000))
    observer = str(aor.choice(["Observer, A.", "Observer, B.", "Observer, C."]))
    map_centre = np.array([ra, dec]) + aor.normal(0, 30 / 3600, 2) * [1 / np.cos(np.radians(dec)), 1]

    k = np.arange(n_bcd)
    mjd = start + k * (exptime + 12.0) / 86400 + rng.normal(0, 0.5, n_bcd) / 86400
    grid = np.stack([(k % 3) - 1, (k // 3 % 3) - 1], axis=1) * 90.0 + rng.normal(0, 12, (n_bcd, 2))
    crval = map_centre + grid / 3600 * [1 / np.cos(np.radians(dec)), 1]
    theta = np.radians(pa + rng.normal(0, 0.05, n_bcd))
    ps = IRAC_PIXSCALE[channel] / 3600
    cd = ps * np.stack([np.stack([-np.cos(theta), np.sin(theta)], -1),
                        np.stack([np.sin(theta), np.cos(theta)], -1)], axis=1)
    crpix = np.full((n_bcd, 2), 128.0)
    corners_pix = np.array([[1.0, 1.0], [1.0, 256.0], [256.0, 256.0], [256.0, 1.0]])
    dpid = int(rng.integers(10_000_000, 90_000_000))
    cols: Columns = {
        "file": np.array([f"r{aorkey}/ch{channel}/bcd/SPITZER_I{channel}_{aorkey}_{j:04d}_0000_1_cbcd.fits"
                          for j in k], dtype="S"),
        "aor": np.full(n_bcd, f"r{aorkey}".encode()),
        "exptime": np.full(n_bcd, exptime),
        "mjd_obs": mjd,
        "progid": np.full(n_bcd, progid),
        "bcd": dpid + k,
        "object": np.full(n_bcd, object_name.encode()),
        "obsrvr": np.full(n_bcd, observer.encode()),
        "crpix": crpix,
        "crval": crval,
        "cd": cd,
        "corners": tan_deproject(crval, cd, crpix, corners_pix),
        "theta": np.degrees(np.arctan2(cd[:, 1, 0], cd[:, 1, 1])),
    }
    return {s.name: cols[s.name].astype(s.dtype) if s.dtype != "S" else cols[s.name] for s in AOR_LOG_SPECS}


def write_aor_log(path: str | Path, aorkey: int, channel: int, ra: float, dec: float, n_bcd: int,
                  seed: int, *, object_name: str = "ALCS-CLUSTER") -> Columns:
    """Write `r{aorkey}-ch{channel}.log.fits` (see `make_aor_log`)."""
    cols = make_aor_log(aorkey, channel, ra, dec, n_bcd, seed, object_name=object_name)
    header = [("ORIGIN", "ingest.fixtures", "Synthetic release-format fixture"), ("SEED", int(seed), "")]
    write_fits_table(path, cols, {s.name: s.unit for s in AOR_LOG_SPECS}, header)
    return cols


# --- mosaics ------------------------------------------------------------------------------


class InputExposure(NamedTuple):
    """An exposure drizzled into a mosaic: `rootname` (e.g. icxe15wwq), `suffix` (_flt/_flc),
    `exptime` s, `expstart` MJD, `nchip` science chips (2 for ACS/WFC and WFC3/UVIS)."""

    rootname: str
    suffix: str
    exptime: float
    expstart: float
    nchip: int


def fake_exposures(fm: FilterModel, n: int, rng: np.random.Generator) -> list[InputExposure]:
    """Plausible HST exposures of a filter: ACS rootnames j..., WFC3 i..., one visit."""
    letter = "j" if fm.instrument == "ACS" else "i"
    prog = "".join(rng.choice(list("abcdefghijklmnopqrstuvwxyz0123456789"), 3))
    visit = f"{int(rng.integers(1, 99)):02d}"
    exptime = {"IR": 1302.9, "WFC": 1200.0, "UVIS": 1400.0}[fm.detector]
    start = rng.uniform(55000, 58800)
    return [InputExposure(f"{letter}{prog}{visit}{chr(97 + j // 10)}{j % 10}q",
                          "_flt" if fm.detector == "IR" else "_flc", exptime,
                          start + j * (exptime + 300) / 86400, 1 if fm.detector == "IR" else 2)
            for j in range(n)]


def _drizzle_cards(exposures: Sequence[InputExposure], out_sci: str, out_wht: str, fm: FilterModel,
                   pixscale: float) -> list[tuple[str, Any, str]]:
    """NDRIZIM and AstroDrizzle's per-chip D###xxxx records (drizzlepac outputimage.py)."""
    iscl = {"IR": 0.1283, "WFC": 0.05, "UVIS": 0.03962}[fm.detector]
    chips = [(e, c) for e in exposures for c in range(1, e.nchip + 1)]
    cards: list[tuple[str, Any, str]] = [("NDRIZIM", len(chips), "Drizzle, No. images drizzled onto output")]
    for k, (e, chip) in enumerate(chips, start=1):
        p = f"D{k:03d}"
        cards += [
            (p + "VER", "WCS-based Drizzle: fixture", "Drizzle, task version"),
            (p + "GEOM", "wcs", "Drizzle, source of geometric information"),
            (p + "DATA", f"{e.rootname}{e.suffix}.fits[sci,{chip}]", "Drizzle, input data image"),
            (p + "DEXP", e.exptime, "Drizzle, input image exposure time (s)"),
            (p + "OUDA", out_sci, "Drizzle, output data image"),
            (p + "OUWE", out_wht, "Drizzle, output weighting image"),
            (p + "OUCO", "", "Drizzle, output context image"),
            (p + "MASK", f"{e.rootname}_sci{chip}_final_mask.fits", "Drizzle, input weighting image"),
            (p + "WTSC", e.exptime, "Drizzle, weighting factor for input image"),
            (p + "KERN", "square", "Drizzle, form of weight distribution kernel"),
            (p + "PIXF", 0.33, "Drizzle, linear size of drop"),
            (p + "COEF", "SIP", "Drizzle, source of coefficients"),
            (p + "OUUN", "cps", "Drizzle, units of output image - counts or cps"),
            (p + "FVAL", "INDEF", "Drizzle, fill value for zero weight output pix"),
            (p + "WKEY", "", "Input image WCS Version used"),
            (p + "SCAL", pixscale, "Drizzle, pixel size (arcsec) of output image"),
            (p + "ISCL", iscl, "Drizzle, default IDCTAB pixel size(arcsec)"),
        ]
    return cards


def fit_card(key: str, value: Any, comment: str) -> fits.Card:
    """A header card whose comment is cut to fit 80 characters (keys > 8 chars as HIERARCH)."""
    key = key if len(key) <= 8 else f"HIERARCH {key}"
    room = 80 - len(fits.Card(key, value).image.rstrip()) - 3
    return fits.Card(key, value, comment[:max(room, 0)])


_ACS_WHEEL2 = {"f435w", "f475w", "f606w", "f814w", "f660n"}  # on FILTER2; the rest on FILTER1


def make_mosaic(kind: str, root: str, filt: str, ra: float, dec: float, shape: tuple[int, int],
                pixscale: float, seed: int, *,
                input_exposures: int | Sequence[InputExposure] = 4) -> tuple[np.ndarray, fits.Header]:
    """Image and header of a small mosaic: `kind` sci, wht or seg; `filt` an HST filter,
    `ir`/`det` (detection image) or `ch1`/`ch2` (IRAC, uJy per pixel).

    The same (filt, shape, seed) gives matching sci, wht and seg images: Gaussian sources on
    noise, inverse-variance weights with a zero-weight corner (outside the footprint, where
    sci is 0 as AstroDrizzle fills it), and the segments of the sources above 2 sigma. HST
    headers carry PHOTFLAM/PHOTPLAM/PHOTFNU, instrument and filter keywords, the exposure
    times and AstroDrizzle's NDRIZIM / D###xxxx records of `input_exposures` (a count to
    invent, or the exposures).
    """
    if kind not in ("sci", "wht", "seg"):
        raise ValueError(f"mosaic kind {kind!r}: expected sci, wht or seg")
    irac = filt in ("ch1", "ch2")
    rng = np.random.default_rng([seed, 4])
    ny, nx = shape
    yy, xx = np.mgrid[0:ny, 0:nx]
    n_src = max(1, nx * ny // 400)
    sx, sy = rng.uniform(0, nx, n_src), rng.uniform(0, ny, n_src)
    width = rng.uniform(1.0, 3.0, n_src) * (1 if irac else 1.5)
    amp = 10 ** rng.uniform(0, 2, n_src)
    noise = 1.0 if irac else 0.002  # uJy/pix for IRAC, e-/s for HST
    model = np.zeros(shape)
    seg = np.zeros(shape, np.int32)
    for k in np.argsort(amp):  # brighter sources claim shared pixels last
        blob = amp[k] * noise * np.exp(-((xx - sx[k]) ** 2 + (yy - sy[k]) ** 2) / (2 * width[k] ** 2))
        model += blob
        seg[blob > 2 * noise] = k + 1
    outside = xx + yy < min(nx, ny) // 4
    wht = (rng.uniform(0.8, 1.2) / noise**2 * (1 + 0.1 * np.sin(xx / 7.0))).astype(np.float32)
    sci = (model + noise * rng.standard_normal(shape)).astype(np.float32)
    sci[outside], wht[outside], seg[outside] = 0, 0, 0
    data = {"sci": sci, "wht": wht, "seg": seg}[kind]

    header = _tan_wcs(ra, dec, shape, pixscale).to_header()
    if irac:
        header["TELESCOP"] = "Spitzer"
        header["INSTRUME"] = "IRAC"
        header["FILTER"] = filt
        header["BUNIT"] = "uJy/pix" if kind == "sci" else ""
        return data, header
    fm = filter_model("det" if filt in ("ir", "det") else filt)
    exposures = (fake_exposures(fm, input_exposures, rng) if isinstance(input_exposures, int)
                 else list(input_exposures))
    header["TELESCOP"] = "HST"
    header["INSTRUME"] = fm.instrument
    header["DETECTOR"] = fm.detector
    if fm.instrument == "ACS":
        on2 = filt in _ACS_WHEEL2
        header["FILTER1"] = "CLEAR1L" if on2 else filt.upper()
        header["FILTER2"] = filt.upper() if on2 else "CLEAR2L"
    else:
        header["FILTER"] = filt.upper().removesuffix("U") if fm.name != "det" else filt
    header["EXPTIME"] = (float(sum(e.exptime for e in exposures)), "total exposure time (s)")
    header["EXPSTART"] = (min(e.expstart for e in exposures), "exposure start time (MJD)")
    header["EXPEND"] = (max(e.expstart + e.exptime / 86400 for e in exposures), "exposure end time (MJD)")
    header["PHOTFLAM"] = (fm.photflam, "inverse sensitivity, ergs/cm2/A/e-")
    header["PHOTPLAM"] = (fm.pivot, "Pivot wavelength (Angstroms)")
    header["PHOTFNU"] = (fm.photfnu, "inverse sensitivity, Jy*sec/e-")
    header["BUNIT"] = "ELECTRONS/S" if kind == "sci" else ""
    drz = "drz" if fm.name == "det" else fm.drz
    out = f"{root}-{filt}_{drz}"
    header.extend(fit_card(*c) for c in _drizzle_cards(exposures, f"{out}_sci.fits", f"{out}_wht.fits",
                                                        fm, pixscale))
    header.add_history("AstroDrizzle processing performed using: (synthetic fixture)")
    return data, header


def write_mosaic(path: str | Path, kind: str, root: str, filt: str, ra: float, dec: float,
                 shape: tuple[int, int], pixscale: float, seed: int, *,
                 input_exposures: int | Sequence[InputExposure] = 4) -> Path:
    """Write a mosaic made by `make_mosaic` (a `.gz` path is gzipped)."""
    data, header = make_mosaic(kind, root, filt, ra, dec, shape, pixscale, seed,
                               input_exposures=input_exposures)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fits.PrimaryHDU(data=data, header=header).writeto(path, overwrite=True)
    return path


# --- a release directory ------------------------------------------------------------------

DEFAULT_FILTER_POOL = ("f225w", "f275w", "f336w", "f435w", "f475w", "f606w", "f625w", "f775w",
                       "f814w", "f850lp", "f105w", "f110w", "f125w", "f140w", "f160w")


class FieldSpec(NamedTuple):
    """A field as `write_release` needs it: fields.md name, HST root, centre (deg)."""

    name: str
    hst_root: str
    ra: float
    dec: float


def write_release(outdir: str | Path, fields: Iterable[Sequence], n_sources: int, seed: int, *,
                  filters: Sequence[str] | None = None, n_aors: int = 3, n_bcd: int = 9,
                  mosaic_shape: tuple[int, int] = (64, 64)) -> list[Path]:
    """Write a release-like directory per field; return every file written.

    `fields`: (name, hst_root, ra, dec) tuples, e.g. ("j001408m3023", "hff-j001408m3023",
    3.5883, -30.3973). Per field, in `outdir/{hst_root}/` as in the release: the catalog
    `{name}_irac_phot_apcorr.fits` (filters: `filters`, else a per-field draw of 5-9 from
    `DEFAULT_FILTER_POOL` always holding f160w and f814w), `{name}_irac.eazypy.zout.fits`,
    `n_aors` AORs with ch1 and ch2 logs (the first a cold-mission AOR that also has the
    ignored ch3/ch4 logs; AORKEYs step by 256 like real ones), the detection image
    `{hst_root}-ir_drz_sci/wht` and `-ir_seg`, sci/wht mosaics of the first and last filter, the
    IRAC `{name}-ch{1,2}_drz_sci/wht` mosaics, and `files.txt` listing them.
    """
    outdir = Path(outdir)
    written: list[Path] = []
    for k, spec in enumerate(fields):
        name, hst_root, ra, dec = FieldSpec(*spec)
        root = field_key(name)
        fseed = int(np.random.default_rng([seed, 5, k]).integers(2**31))
        rng = np.random.default_rng(fseed)
        if filters is None:
            extra = rng.choice([f for f in DEFAULT_FILTER_POOL if f not in ("f160w", "f814w")],
                               int(rng.integers(3, 8)), replace=False)
            ffilters = sorted({"f160w", "f814w", *map(str, extra)})
        else:
            ffilters = list(filters)
        d = outdir / hst_root
        d.mkdir(parents=True, exist_ok=True)
        files: list[Path] = []

        cat_path = d / f"{root}_irac_phot_apcorr.fits"
        cat = write_phot_apcorr(cat_path, root, ra, dec, n_sources, ffilters, fseed)
        files.append(cat_path)
        zout_path = d / f"{root}_irac.eazypy.zout.fits"
        write_zout(zout_path, cat["id"], cat["ra"], cat["dec"], fseed)
        files.append(zout_path)

        for j in range(n_aors):
            base = 12_000_000 if j == 0 else 50_000_000
            aorkey = base + 256 * (1 + 64 * k + j)
            channels = (1, 2, 3, 4) if j == 0 else (1, 2)
            for ch in channels:
                path = d / f"r{aorkey}-ch{ch}.log.fits"
                write_aor_log(path, aorkey, ch, ra, dec, n_bcd, fseed, object_name=name.upper())
                files.append(path)

        for kind in ("sci", "wht", "seg"):
            suffix = "seg" if kind == "seg" else f"drz_{kind}"
            files.append(write_mosaic(d / f"{hst_root}-ir_{suffix}.fits", kind, hst_root, "ir", ra, dec,
                                      mosaic_shape, DET_PIXSCALE, fseed))
        for f in dict.fromkeys((ffilters[0], ffilters[-1])):
            fm = filter_model(f)
            for kind in ("sci", "wht"):
                files.append(write_mosaic(d / f"{hst_root}-{f}_{fm.drz}_{kind}.fits", kind, hst_root, f,
                                          ra, dec, mosaic_shape, fm.pixscale, fseed))
        for ch in IRAC_CHANNELS:
            for kind in ("sci", "wht"):
                files.append(write_mosaic(d / f"{root}-ch{ch}_drz_{kind}.fits", kind, root, f"ch{ch}",
                                          ra, dec, mosaic_shape, 0.5, fseed))
        listing = d / "files.txt"
        listing.write_text("".join(f"{p.name}\n" for p in files))
        written += files + [listing]
    return written


# --- FITS binary tables -------------------------------------------------------------------

_TFORM = {("f", 8): "D", ("f", 4): "E", ("i", 2): "I", ("i", 4): "J", ("i", 8): "K", ("u", 1): "B"}


def write_fits_table(path: str | Path, columns: Mapping[str, np.ndarray],
                     units: Mapping[str, str | None], header: Sequence[tuple[str, Any, str]] = ()) -> Path:
    """Write columns as a FITS binary table (HDU 1) behind an empty primary HDU.

    Columns are numpy arrays of one length (numeric, or bytes strings `S`); extra axes become
    vector columns (TDIM for 2-d cells). `units` gives TUNIT; `header` extra (key, value,
    comment) cards, keys longer than 8 characters as HIERARCH. Raises ValueError past the
    FITS limit of 999 columns.
    """
    names = list(columns)
    if len(names) > FITS_MAX_COLUMNS:
        raise ValueError(f"{len(names)} columns: a FITS table holds at most {FITS_MAX_COLUMNS}")
    nrows = {len(v) for v in columns.values()}
    if len(nrows) > 1:
        raise ValueError(f"columns of different lengths: {sorted(nrows)}")
    n = nrows.pop() if nrows else 0
    fields, cards, arrays = [], [], {}
    for i, name in enumerate(names, start=1):
        arr = np.asarray(columns[name])
        if arr.dtype.kind == "U":
            arr = np.char.encode(arr, "ascii")
        arrays[name] = arr
        cell = arr.shape[1:]
        repeat = int(np.prod(cell)) if cell else 1
        if arr.dtype.kind == "S":
            width = max(arr.dtype.itemsize, 1)
            fields.append((name, f"S{width}", cell))
            tform = f"{width * repeat}A"
        else:
            key = (arr.dtype.kind, arr.dtype.itemsize)
            if key not in _TFORM:
                raise ValueError(f"column {name!r}: dtype {arr.dtype} has no FITS binary-table form")
            fields.append((name, arr.dtype.newbyteorder(">"), cell))
            tform = f"{repeat if repeat > 1 else ''}{_TFORM[key]}"
        cards += [(f"TTYPE{i}", name), (f"TFORM{i}", tform)]
        if units.get(name):
            cards.append((f"TUNIT{i}", units[name]))
        if len(cell) > 1:
            cards.append((f"TDIM{i}", "(" + ",".join(str(s) for s in cell[::-1]) + ")"))
    rec = np.empty(n, dtype=[(f, t, c) for f, t, c in fields])
    for name, arr in arrays.items():
        rec[name] = arr
    head = fits.Header([("XTENSION", "BINTABLE"), ("BITPIX", 8), ("NAXIS", 2),
                        ("NAXIS1", rec.dtype.itemsize), ("NAXIS2", n), ("PCOUNT", 0), ("GCOUNT", 1),
                        ("TFIELDS", len(names))] + cards)
    head.extend(fit_card(*card) for card in header)
    primary = fits.Header([("SIMPLE", True), ("BITPIX", 8), ("NAXIS", 0), ("EXTEND", True)])
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        fh.write(primary.tostring().encode("ascii"))
        fh.write(head.tostring().encode("ascii"))
        rec.tofile(fh)
        fh.write(b"\0" * (-rec.nbytes % 2880))
    return path
