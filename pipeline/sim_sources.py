"""The simulated source population of a field (the truth catalogue) and its GAIA-like stars.

Positions are drawn on the tangent plane of the field centre (``xi`` east, ``eta`` north,
arcsec) over the field plus a margin, then projected to RA/Dec (degrees, ICRS). Star
positions are at the reference epoch ``REF_EPOCH`` (Julian year 2015.5) and move with their
proper motions (``pmra`` = mu_alpha* = d(RA)/dt cos(Dec), mas/yr, as GAIA).
"""
from __future__ import annotations

import numpy as np
from astropy.table import Table
from astropy.time import Time
from scipy.spatial import cKDTree

from pipeline.sim_bands import BANDS
from pipeline.sim_sed import (
    DUSTY_TEMPLATES, QUIESCENT_TEMPLATES, STAR_FORMING_TEMPLATES, blackbody_band_fluxes,
    galaxy_band_fluxes,
)

REF_EPOCH = 2015.5
REF_EPOCH_MJD = float(Time(REF_EPOCH, format="jyear").mjd)
ISOLATION_ARCSEC = 1.5
GAIA_G_LIMIT = 21.0

# number counts of background galaxies: N(< m_F160W) = BG_DENSITY_28 10^(BG_SLOPE (m - 28)) per arcmin^2
BG_DENSITY_28 = 200.0
BG_SLOPE = 0.25
BG_MAG_RANGE = (18.0, 29.5)
RED_TEMPLATE_Z_MAX = 3.0  # quiescent / dusty templates only below this z (beyond: star-forming)
CLUSTER_DENSITY = 25.0  # members per arcmin^2 of simulated area
CLUSTER_CORE_ARCSEC = 25.0
STAR_DENSITY = 8.0  # per arcmin^2
FAINT_STAR_DENSITY = 10.0  # per arcmin^2, G in FAINT_STAR_G: point sources whose photometry is noise limited
FAINT_STAR_G = (25.5, 29.0)


def tangent_to_radec(xi, eta, ra0: float, dec0: float):
    """Gnomonic deprojection: tangent-plane offsets (arcsec, xi east, eta north) -> RA, Dec (deg)."""
    x = np.radians(np.asarray(xi, float) / 3600.0)
    y = np.radians(np.asarray(eta, float) / 3600.0)
    d0 = np.radians(dec0)
    den = np.cos(d0) - y * np.sin(d0)
    ra = ra0 + np.degrees(np.arctan2(x, den))
    dec = np.degrees(np.arctan2(np.sin(d0) + y * np.cos(d0), np.hypot(x, den)))
    return np.mod(ra, 360.0), dec


def position_at_epoch(ra, dec, pmra, pmdec, mjd):
    """Proper-motion-projected RA, Dec (deg) at ``mjd`` from the REF_EPOCH position."""
    dt = (np.asarray(mjd, float) - REF_EPOCH_MJD) / 365.25
    ddec = np.asarray(pmdec) * dt / 3.6e6
    dra = np.asarray(pmra) * dt / 3.6e6 / np.cos(np.radians(dec))
    return ra + dra, dec + ddec


def _truncation(n, r_half):
    """Sersic truncation radius (arcsec): profiles are normalised within it."""
    return np.where(n >= 2.0, 8.0, 5.0) * r_half


def _draw_galaxies(rng, count, mags, kind, z, templates, n, r_half, q, xi, eta):
    return {
        "kind": np.full(count, kind), "xi": xi, "eta": eta, "z": z, "template": templates,
        "sersic_n": n, "r_half_arcsec": r_half, "q": q,
        "pa_deg": rng.uniform(0.0, 180.0, count), "mag_f160w": mags,
    }


def _background(rng, half: float):
    area = (2 * half / 60.0) ** 2
    lo, hi = BG_MAG_RANGE
    count = rng.poisson(BG_DENSITY_28 * 10 ** (BG_SLOPE * (hi - 28.0)) * area)
    u = rng.uniform(size=count)
    a, b = 10 ** (BG_SLOPE * lo), 10 ** (BG_SLOPE * hi)
    mags = np.log10(a + u * (b - a)) / BG_SLOPE
    z = np.clip((0.1 + 0.07 * (mags - 18.0)) * rng.gamma(3.0, size=count), 0.05, 7.0)
    quiescent = rng.uniform(size=count) < np.where(mags < 23.0, 0.25, 0.08)
    dusty = ~quiescent & (rng.uniform(size=count) < 0.1)
    # red templates at z > 3 made HST-dark IRAC sources (F160W 28 mag, 4.5 um 20 mag, i.e. rest-frame
    # optical luminosities beyond any galaxy's) at ~10 per arcmin^2; they are star-forming there
    # (the three draws keep their order, so no other property changes)
    red_ok = z <= RED_TEMPLATE_Z_MAX
    quiescent_t, dusty_t = rng.choice(QUIESCENT_TEMPLATES, count), rng.choice(DUSTY_TEMPLATES, count)
    star_forming_t = rng.choice(STAR_FORMING_TEMPLATES, count)
    templates = np.where(quiescent & red_ok, quiescent_t, np.where(dusty & red_ok, dusty_t, star_forming_t))
    n = np.clip(np.where(quiescent, rng.normal(3.5, 0.8, count), rng.lognormal(0.1, 0.35, count)),
                0.5, 6.0)
    r_half = np.clip(0.35 * 10 ** (-0.1 * (mags - 23.0) + rng.normal(0, 0.18, count)), 0.03, 3.0)
    q = np.where(quiescent, rng.uniform(0.5, 1.0, count), rng.uniform(0.25, 1.0, count))
    xi, eta = rng.uniform(-half, half, (2, count))
    return _draw_galaxies(rng, count, mags, "background", z, templates, n, r_half, q, xi, eta)


def _cluster(rng, half: float, size: float, z_cluster: float):
    # brightest cluster galaxies: very extended de Vaucouleurs profiles near the centre
    n_bcg = 1 + int(size >= 60.0) + int(size >= 120.0)
    bcg_r = np.concatenate([[rng.uniform(0, 5)], rng.uniform(10, min(30, size / 2 - 5), n_bcg - 1)])
    bcg_phi = rng.uniform(0, 2 * np.pi, n_bcg)
    bcg = _draw_galaxies(
        rng, n_bcg, np.sort(rng.uniform(15.5, 16.8, n_bcg)), "cluster",
        z_cluster + rng.normal(0, 0.004 * (1 + z_cluster), n_bcg), np.full(n_bcg, 3),
        np.full(n_bcg, 4.0), np.sort(rng.uniform(2.0, 6.0, n_bcg))[::-1],
        rng.uniform(0.6, 0.9, n_bcg), bcg_r * np.cos(bcg_phi), bcg_r * np.sin(bcg_phi))
    # members: Schechter-like luminosity function, cored isothermal projected density
    count = rng.poisson(CLUSTER_DENSITY * (2 * half / 60.0) ** 2)
    mags = []
    while len(mags) < count:
        m = rng.uniform(17.0, 25.5, 4 * count + 10)
        x = 10 ** (-0.4 * (m - 17.5))
        keep = rng.uniform(size=m.size) < np.exp(-x)  # dN/dm ~ x^(alpha+1) e^-x, alpha = -1
        mags.extend(m[keep].tolist())
    mags = np.array(mags[:count])
    xi, eta = [], []
    while len(xi) < count:
        # projected density ~ 1 / (1 + (r / rc)^2), truncated to the simulated square
        u = rng.uniform(0, np.log1p(2 * (half / CLUSTER_CORE_ARCSEC) ** 2), 2 * count + 10)
        r = CLUSTER_CORE_ARCSEC * np.sqrt(np.expm1(u))
        phi = rng.uniform(0, 2 * np.pi, r.size)
        x, y = r * np.cos(phi), r * np.sin(phi)
        ok = (np.abs(x) < half) & (np.abs(y) < half)
        xi.extend(x[ok].tolist())
        eta.extend(y[ok].tolist())
    members = _draw_galaxies(
        rng, count, mags, "cluster", z_cluster + rng.normal(0, 0.004 * (1 + z_cluster), count),
        rng.choice(QUIESCENT_TEMPLATES, count, p=[0.2, 0.5, 0.3]),
        np.clip(rng.normal(3.0, 0.8, count), 1.0, 6.0),
        np.clip(0.6 * 10 ** (-0.15 * (mags - 19.0) + rng.normal(0, 0.12, count)), 0.05, 3.0),
        rng.uniform(0.4, 1.0, count), np.array(xi[:count]), np.array(eta[:count]))
    return bcg, members


def _stars(rng, half: float, inner: float):
    """Stars with black-body SEDs; the first three are bright and 0.7-1 ``inner`` from the centre;
    then FAINT_STAR_DENSITY faint ones (G in FAINT_STAR_G, below the reference catalogue's
    limit), so the field has isolated point sources whose errors are noise dominated."""
    count = int(np.clip(round(STAR_DENSITY * (2 * half / 60.0) ** 2), 6, 50))
    g = np.concatenate([rng.uniform(17.0, 19.5, 3), rng.uniform(16.5, 24.0, count - 3)])
    # the bright ones away from the cluster core, inside the field
    r, phi = inner * rng.uniform(0.7, 1.0, 3), rng.uniform(0, 2 * np.pi, 3)
    xi = np.concatenate([r * np.cos(phi), rng.uniform(-half, half, count - 3)])
    eta = np.concatenate([r * np.sin(phi), rng.uniform(-half, half, count - 3)])
    teff = rng.uniform(3300.0, 7500.0, count)
    pmra, pmdec = rng.normal(0.0, 4.0, count), rng.normal(0.0, 4.0, count)
    # faint stars, drawn after the others so that adding them changed no other source
    faint = rng.poisson(FAINT_STAR_DENSITY * (2 * half / 60.0) ** 2)
    g = np.concatenate([g, rng.uniform(*FAINT_STAR_G, faint)])
    xi = np.concatenate([xi, rng.uniform(-half, half, faint)])
    eta = np.concatenate([eta, rng.uniform(-half, half, faint)])
    teff = np.concatenate([teff, rng.uniform(3300.0, 7500.0, faint)])
    pmra = np.concatenate([pmra, rng.normal(0.0, 4.0, faint)])
    pmdec = np.concatenate([pmdec, rng.normal(0.0, 4.0, faint)])
    count += faint
    return {
        "kind": np.full(count, "star"), "xi": xi, "eta": eta, "z": np.zeros(count),
        "template": np.full(count, -1), "sersic_n": np.zeros(count),
        "r_half_arcsec": np.zeros(count), "q": np.ones(count), "pa_deg": np.zeros(count),
        "teff": teff, "phot_g_mean_mag": g, "pmra": pmra, "pmdec": pmdec,
    }


def make_sources(rng: np.random.Generator, ra0: float, dec0: float, z_cluster: float,
                 size_arcsec: float, margin_arcsec: float = 10.0) -> Table:
    """Draw the sources of a field of side ``size_arcsec`` centred on (ra0, dec0).

    Returns the truth table: one row per source with ``id`` (1..N), ``kind``
    ('cluster', 'background', 'star'), ``ra``/``dec`` (deg, stars at REF_EPOCH), ``xi``/``eta``
    (tangent-plane arcsec), ``z``, ``template`` (0-based EAZY template index, -1 for stars),
    Sersic ``sersic_n``, ``r_half_arcsec`` (half-light radius of the truncated profile),
    ``trunc_arcsec``, axis ratio ``q``, ``pa_deg`` (major axis, east of north), ``mag_f160w``,
    total fluxes ``flux_{band}`` (uJy) for every band of BANDS, star ``pmra``/``pmdec``
    (mas/yr), ``teff`` (K), ``phot_g_mean_mag`` (approximate G, NaN for galaxies) and
    ``is_isolated`` (no other source within ISOLATION_ARCSEC).
    """
    half = size_arcsec / 2.0 + margin_arcsec
    bcg, members = _cluster(rng, half, size_arcsec, z_cluster)
    parts = [bcg, members, _background(rng, half), _stars(rng, half, max(size_arcsec / 2.0 - 4.0, 2.0))]
    cols = {}
    for key in ["kind", "xi", "eta", "z", "template", "sersic_n", "r_half_arcsec", "q", "pa_deg"]:
        cols[key] = np.concatenate([p[key] for p in parts])
    n_gal = sum(len(p["xi"]) for p in parts[:3])
    n_star = len(parts[3]["xi"])
    nan_gal = np.full(n_gal, np.nan)
    cols["teff"] = np.concatenate([nan_gal, parts[3]["teff"]])
    cols["pmra"] = np.concatenate([np.zeros(n_gal), parts[3]["pmra"]])
    cols["pmdec"] = np.concatenate([np.zeros(n_gal), parts[3]["pmdec"]])

    fluxes = {b: np.empty(n_gal + n_star) for b in BANDS}
    mag160 = np.concatenate([p["mag_f160w"] for p in parts[:3]] + [np.zeros(n_star)])
    g_mag = np.concatenate([nan_gal, parts[3]["phot_g_mean_mag"]])
    for i in range(n_gal + n_star):
        if i < n_gal:
            rel = galaxy_band_fluxes(int(cols["template"][i]), float(cols["z"][i]))
            scale = 10 ** (-0.4 * (mag160[i] - 23.9)) / rel["f160w"]
        else:
            rel = blackbody_band_fluxes(float(cols["teff"][i]))
            # G (Vega) ~ mean AB magnitude in F606W and F814W - 0.1
            g_rel = 23.9 - 1.25 * np.log10(rel["f606w"] * rel["f814w"]) - 0.1
            scale = 10 ** (-0.4 * (g_mag[i] - g_rel))
        for b in BANDS:
            fluxes[b][i] = rel[b] * scale
    mag160 = 23.9 - 2.5 * np.log10(fluxes["f160w"])

    order = np.argsort(-fluxes["f160w"], kind="stable")  # brightest first
    ra, dec = tangent_to_radec(cols["xi"], cols["eta"], ra0, dec0)
    tab = Table()
    tab["id"] = np.arange(1, n_gal + n_star + 1)
    tab["kind"] = cols["kind"][order].astype("U10")
    tab["ra"] = ra[order]
    tab["dec"] = dec[order]
    for key in ["xi", "eta", "z", "template", "sersic_n", "r_half_arcsec"]:
        tab[key] = cols[key][order]
    tab["trunc_arcsec"] = _truncation(tab["sersic_n"], tab["r_half_arcsec"])
    for key in ["q", "pa_deg"]:
        tab[key] = cols[key][order]
    tab["mag_f160w"] = mag160[order]
    for b in BANDS:
        tab[f"flux_{b}"] = fluxes[b][order]
    for key in ["pmra", "pmdec", "teff"]:
        tab[key] = cols[key][order]
    tab["phot_g_mean_mag"] = g_mag[order]
    tree = cKDTree(np.column_stack([tab["xi"], tab["eta"]]))
    dist, _ = tree.query(np.column_stack([tab["xi"], tab["eta"]]), k=2)
    tab["is_isolated"] = dist[:, 1] > ISOLATION_ARCSEC
    tab["template"] = tab["template"].astype(np.int16)
    for key, unit in [("ra", "deg"), ("dec", "deg"), ("xi", "arcsec"), ("eta", "arcsec"),
                      ("r_half_arcsec", "arcsec"), ("trunc_arcsec", "arcsec"), ("pa_deg", "deg"),
                      ("pmra", "mas / yr"), ("pmdec", "mas / yr"), ("teff", "K")]:
        tab[key].unit = unit
    for b in BANDS:
        tab[f"flux_{b}"].unit = "uJy"
    tab.meta["REFEPOCH"] = REF_EPOCH
    return tab


def reference_catalog(truth: Table) -> Table:
    """GAIA-like reference catalogue: the truth stars brighter than GAIA_G_LIMIT."""
    stars = truth[(truth["kind"] == "star") & (truth["phot_g_mean_mag"] < GAIA_G_LIMIT)]
    ref = Table()
    ref["source_id"] = 4_000_000_000_000_000 + np.asarray(stars["id"], np.int64)
    for key in ["ra", "dec", "pmra", "pmdec", "phot_g_mean_mag"]:
        ref[key] = stars[key]
    ref["ref_epoch"] = np.full(len(stars), REF_EPOCH)
    return ref
