"""Simulated raw inputs of a field: HST FLT exposures, IRAC BCDs, truth and reference stars.

``simulate_field(outdir, ...)`` writes, under ``outdir``::

    hst/{rootname}_flt.fits                       HST exposures (SCI e/s, ERR, DQ)
    irac/r{AORKEY}/ch{N}/bcd/SPITZER_I{N}_{AORKEY}_{EXPID:04d}_0000_1_bcd.fits   (+ _cbunc.fits)
    truth.fits    [SOURCES] one row per source, [OFFSETS] one row per exposure
    refcat.fits   GAIA-like stars (epoch 2015.5, proper motions)
    mock.json     parameters, files, bands, PHOTFNU, depths, version

The truth (``pipeline.sim_sources``), the bands (``pipeline.sim_bands.BANDS``), the PSFs
(``pipeline.sim_psf``), the rendering (``pipeline.sim_render``) and the observation plan,
pointing errors, headers and noise (``pipeline.sim_observe``) are documented in their
modules; in short: images are rendered with the TRUE WCS, headers carry the nominal one, and
``truth.fits[OFFSETS]`` holds the difference (see ``sim_observe.apply_offset``).
Same ``seed`` -> byte-identical files.
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS
from scipy import signal

import alcsdb
from pipeline.sim_bands import BANDS, HST_BANDS, IRAC_BANDS, ujy_per_pixel_to_mjysr, ujy_to_counts
from pipeline.sim_observe import (
    IRAC_PSF_RADIUS, Exposure, hst_hdulist, hst_total_time, irac_frame_sigma, irac_hdulists, make_wcs, plan_hst,
    plan_irac,
)
from pipeline.sim_psf import add_halo, irac_psf, psf_in_frame
from pipeline.sim_render import (
    IRAC_SCENE_SCALE, StampMapping, add_stamp, intrinsic_stamp, psf_stamp, sample_scene, splat, stamp_scale,
)
from pipeline.sim_sources import make_sources, position_at_epoch, reference_catalog

MOCK_VERSION = "1.0"
MARGIN_ARCSEC = 10.0  # sources are drawn this far beyond the field edges


@dataclass
class MockInfo:
    """What :func:`simulate_field` wrote (paths absolute) and with which parameters."""

    outdir: Path
    field: str
    ra: float
    dec: float
    z_cluster: float
    size_arcmin: float
    seed: int
    offsets: bool
    depth: dict[str, float]
    hst_files: list[Path]
    irac_files: list[Path]
    irac_unc_files: list[Path]
    truth: Path
    refcat: Path
    json: Path
    version: str = MOCK_VERSION


def _rng(seed: int, *key: int) -> np.random.Generator:
    """Independent stream ``key`` of ``seed`` (unaffected by how many draws others make)."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


def _source_radec(truth: Table, mjd: float) -> tuple[np.ndarray, np.ndarray]:
    """Positions at ``mjd`` (stars moved by their proper motions, galaxies fixed)."""
    return position_at_epoch(np.asarray(truth["ra"]), np.asarray(truth["dec"]),
                             np.asarray(truth["pmra"]), np.asarray(truth["pmdec"]), mjd)


class _StampCache:
    """Intrinsic stamps of the truth sources on the fine grid of one native pixel scale."""

    def __init__(self, truth: Table, native_scale: float):
        self.truth, self.native = truth, native_scale
        self._cache: dict[int, object] = {}

    def __getitem__(self, i: int):
        if i not in self._cache:
            row = self.truth[i]
            self._cache[i] = intrinsic_stamp(
                str(row["kind"]), float(row["sersic_n"]), float(row["r_half_arcsec"]),
                float(row["trunc_arcsec"]), float(row["q"]), float(row["pa_deg"]),
                stamp_scale(self.native, float(row["r_half_arcsec"])))
        return self._cache[i]


def _render_hst_band(band: str, exposures: list[Exposure], truth: Table,
                     stamps: _StampCache) -> list[np.ndarray]:
    """Noiseless e/s images of ``exposures`` (all of ``band``) with the full PSF."""
    b = BANDS[band]
    flux = ujy_to_counts(np.asarray(truth[f"flux_{band}"]), b)
    images = [np.zeros(e.shape) for e in exposures]
    positions = [e.true_wcs.all_world2pix(*_source_radec(truth, e.mjd + e.exptime / 172800.0), 0)
                 for e in exposures]
    mappings: dict[tuple[int, float], StampMapping] = {}
    reach = (np.asarray(truth["trunc_arcsec"]) + 1.0) / b.pixscale * 1.5
    for i in range(len(truth)):
        visible = [k for k, (x, y) in enumerate(positions)
                   if -reach[i] < x[i] < exposures[k].shape[1] + reach[i]
                   and -reach[i] < y[i] < exposures[k].shape[0] + reach[i]]
        if not visible:
            continue
        stamp = stamps[i]
        conv = psf_stamp(stamp, band)
        for k in visible:
            key = (k, stamp.scale)
            if key not in mappings:
                mappings[key] = StampMapping.from_cd(exposures[k].true_wcs.wcs.cd, stamp.scale)
            add_stamp(images[k], conv, mappings[key], positions[k][0][i], positions[k][1][i], flux[i])
    return [add_halo(img, band, _pixscale(e.true_wcs)) for img, e in zip(images, exposures)]


def _pixscale(wcs: WCS) -> float:
    return float(np.sqrt(abs(np.linalg.det(wcs.wcs.cd))) * 3600.0)


@dataclass(frozen=True)
class _Grid:
    """What :func:`_render_hst_band` needs of an exposure, for any pixel grid."""

    true_wcs: WCS
    shape: tuple[int, int]
    mjd: float
    exptime: float = 0.0


def render_truth(truth: Table, band: str, wcs: WCS, shape: tuple[int, int], mjd: float) -> np.ndarray:
    """Noiseless image of the truth sources in HST ``band`` on any grid (a CD-matrix TAN
    ``wcs`` and ``shape``), stars at epoch ``mjd``, rendered as the mock renders its exposures
    but integrated over the grid's own pixels: electrons/s per pixel of that grid (a drizzled
    mosaic's units). For scoring products against the truth (e.g. the light of all sources
    in what looks like empty sky)."""
    if wcs.wcs.has_pc() and not wcs.wcs.has_cd():
        wcs = wcs.deepcopy()
        wcs.wcs.cd = wcs.pixel_scale_matrix
        wcs.wcs.set()
    return _render_hst_band(band, [_Grid(wcs, tuple(shape), float(mjd))], truth,
                            _StampCache(truth, BANDS[band].pixscale))[0]


def _irac_scene_wcs(ra: float, dec: float, size_arcsec: float) -> tuple[WCS, tuple[int, int]]:
    n = int(np.ceil((size_arcsec + 2 * (MARGIN_ARCSEC + IRAC_PSF_RADIUS)) / IRAC_SCENE_SCALE))
    n += 1 - n % 2
    return make_wcs((ra, dec), ((n + 1) / 2, (n + 1) / 2), IRAC_SCENE_SCALE, 0.0), (n, n)


def _render_irac(exposures: list[Exposure], truth: Table, stamps: _StampCache, ra: float,
                 dec: float, size_arcsec: float) -> list[np.ndarray]:
    """Noiseless MJy/sr frames: north-up 0.1" scene per channel, convolved per AOR with the
    real PSF rotated to the AOR's angle, sampled through each frame's true WCS."""
    scene_wcs, shape = _irac_scene_wcs(ra, dec, size_arcsec)
    is_star = np.asarray(truth["kind"]) == "star"
    sx, sy = scene_wcs.wcs_world2pix(np.asarray(truth["ra"]), np.asarray(truth["dec"]), 0)
    static = {band: np.zeros(shape) for band in IRAC_BANDS}
    for i in np.flatnonzero(~is_star):
        for band in IRAC_BANDS:
            splat(static[band], stamps[i], sx[i], sy[i], float(truth[f"flux_{band}"][i]))
    scene_cd = scene_wcs.wcs.cd
    out: dict[int, np.ndarray] = {}
    groups: dict[tuple[str, str], list[int]] = {}
    for k, e in enumerate(exposures):
        groups.setdefault((e.visit, e.band), []).append(k)
    for (_, band), members in groups.items():
        first = exposures[members[0]]
        scene = static[band].copy()
        ra_s, dec_s = _source_radec(truth[is_star], first.mjd)
        px, py = scene_wcs.wcs_world2pix(ra_s, dec_s, 0)
        point = intrinsic_stamp("star", 0, 0, 0, 1, 0, IRAC_SCENE_SCALE)
        for j, f in enumerate(np.asarray(truth[f"flux_{band}"][is_star])):
            splat(scene, point, px[j], py[j], float(f))
        psf, psf_scale = irac_psf(band)
        psf_cd = make_wcs((0, 0), (1, 1), psf_scale, first.orient).wcs.cd
        conv = signal.fftconvolve(scene, psf_in_frame(psf, psf_cd, scene_cd), mode="same")
        for k in members:
            e = exposures[k]
            density = sample_scene(conv, scene_wcs, e.true_wcs, e.shape)
            out[k] = ujy_per_pixel_to_mjysr(density, IRAC_SCENE_SCALE ** 2)
    return [out[k] for k in range(len(exposures))]


def _offsets_table(exposures: list[Exposure]) -> Table:
    t = Table()
    t["file"] = [e.path for e in exposures]
    t["band"] = [e.band for e in exposures]
    t["visit"] = [e.visit for e in exposures]
    t["exposure"] = [e.name for e in exposures]
    t["mjd"] = [e.mjd for e in exposures]
    t["exptime"] = [e.exptime for e in exposures]
    t["orient"] = [e.orient for e in exposures]
    for key in ["dx_visit", "dy_visit", "rot_visit", "dx_exp", "dy_exp", "dx", "dy"]:
        t[key] = [getattr(e, key) for e in exposures]
    t["rot"] = t["rot_visit"]
    t["sky"] = [e.sky for e in exposures]
    t["sky_gx"] = [e.sky_gx for e in exposures]
    t["sky_gy"] = [e.sky_gy for e in exposures]
    for key, unit in [("orient", "deg"), ("exptime", "s"), ("rot_visit", "deg"), ("rot", "deg")]:
        t[key].unit = unit
    for key in ["dx_visit", "dy_visit", "dx_exp", "dy_exp", "dx", "dy"]:
        t[key].unit = "arcsec"
    t.meta["COMMENT"] = [
        "true WCS = header WCS with CRVAL moved by (dx east, dy north) arcsec and CD rotated",
        "by rot deg (PA increases); sky(x,y) = sky*(1 + sky_gx*(x-xc)/nx + sky_gy*(y-yc)/ny)",
        "sky in e/s/pixel (HST) or MJy/sr (IRAC), x,y zero-indexed, xc = (nx-1)/2",
    ]
    return t


def simulate_field(outdir, *, field: str = "j001408m3023", ra: float = 3.5875,
                   dec: float = -30.3972, z_cluster: float = 0.308, size_arcmin: float = 2.0,
                   seed: int = 1, depth: dict[str, float] | None = None, offsets: bool = True,
                   progress: Callable[[str], None] | None = None) -> MockInfo:
    """Write the simulated raw inputs of a field (see module docstring) and return MockInfo.

    ``depth``: per-band overrides of the 5-sigma AB depth of the full stack (HST: point
    source, 0.7" diameter aperture; IRAC: PSF fitting); defaults from ``BANDS``.
    ``offsets=False`` writes exact headers (all pointing errors zero).
    """
    say = progress or (lambda _msg: None)
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    depths = {name: float(b.depth) for name, b in BANDS.items()}
    unknown = set(depth or {}) - set(depths)
    if unknown:
        raise ValueError(f"unknown band(s) in depth: {sorted(unknown)}; known: {list(depths)}")
    depths.update({k: float(v) for k, v in (depth or {}).items()})
    size = size_arcmin * 60.0
    extra = {"SIMULATE": (True, "alcsdb mock exposure"), "MOCKSEED": seed,
             "MOCKVERS": MOCK_VERSION}

    truth = make_sources(_rng(seed, 0), ra, dec, z_cluster, size, MARGIN_ARCSEC)
    say(f"sources: {len(truth)} ({int(np.sum(truth['kind'] == 'star'))} stars, "
        f"{int(np.sum(truth['kind'] == 'cluster'))} cluster members)")
    plan_rng = _rng(seed, 1)
    hst = plan_hst(plan_rng, ra, dec, size, offsets)
    irac = plan_irac(plan_rng, ra, dec, size, offsets, MARGIN_ARCSEC)
    for band in HST_BANDS:
        members = [e for e in hst if e.band == band]
        t_exp = hst_total_time(band, depths[band], len(members)) / len(members)
        for e in members:
            e.exptime = round(t_exp, 1)
    exposures = hst + irac

    (outdir / "hst").mkdir(exist_ok=True)
    stamps: dict[float, _StampCache] = {}  # one set of intrinsic stamps per pixel scale
    for band in HST_BANDS:
        scale = BANDS[band].pixscale
        if scale not in stamps:
            stamps = {scale: _StampCache(truth, scale)}  # ACS then WFC3: free the other set
        members = [k for k, e in enumerate(exposures) if e.band == band]
        images = _render_hst_band(band, [exposures[k] for k in members], truth, stamps[scale])
        for k, img in zip(members, images):
            e = exposures[k]
            hst_hdulist(e, img, _rng(seed, 2, k), field, ra, dec, extra).writeto(
                outdir / e.path, overwrite=True)
        say(f"{band}: {len(members)} exposures of {exposures[members[0]].exptime} s")

    # IRAC scenes reuse the WFC3/IR stamps (fine enough for a 1.7" PSF)
    ir_scale = BANDS["f160w"].pixscale
    irac_stamps = stamps.get(ir_scale) or _StampCache(truth, ir_scale)
    irac_idx = [k for k, e in enumerate(exposures) if not e.band_info.is_hst]
    models = _render_irac([exposures[k] for k in irac_idx], truth, irac_stamps, ra, dec, size)
    unc_files = []
    for band in IRAC_BANDS:
        members = [j for j, k in enumerate(irac_idx) if exposures[k].band == band]
        sigma_bg = irac_frame_sigma(band, depths[band], len(members))
        for j in members:
            k = irac_idx[j]
            e = exposures[k]
            bcd, unc = irac_hdulists(e, models[j], sigma_bg, _rng(seed, 2, k), field, ra, dec, extra)
            path = outdir / e.path
            path.parent.mkdir(parents=True, exist_ok=True)
            bcd.writeto(path, overwrite=True)
            unc_path = path.with_name(path.name.replace("_bcd.fits", "_cbunc.fits"))
            unc.writeto(unc_path, overwrite=True)
            unc_files.append(unc_path)
        say(f"{band}: {len(members)} frames in {len({exposures[irac_idx[j]].visit for j in members})} AORs")

    truth_path, refcat_path = outdir / "truth.fits", outdir / "refcat.fits"
    sources = fits.table_to_hdu(truth)
    sources.name = "SOURCES"
    offs = fits.table_to_hdu(_offsets_table(exposures))
    offs.name = "OFFSETS"
    primary = fits.PrimaryHDU()
    primary.header.update(extra)
    fits.HDUList([primary, sources, offs]).writeto(truth_path, overwrite=True)
    reference_catalog(truth).write(refcat_path, overwrite=True)

    info = MockInfo(
        outdir=outdir.resolve(), field=field, ra=ra, dec=dec, z_cluster=z_cluster,
        size_arcmin=size_arcmin, seed=seed, offsets=offsets, depth=depths,
        hst_files=[(outdir / e.path).resolve() for e in hst],
        irac_files=[(outdir / e.path).resolve() for e in irac],
        irac_unc_files=[p.resolve() for p in unc_files], truth=truth_path.resolve(),
        refcat=refcat_path.resolve(), json=(outdir / "mock.json").resolve())
    _write_json(info, exposures, truth)
    say(f"done: {len(hst)} HST exposures, {len(irac)} IRAC frames, {len(truth)} sources")
    return info


def _write_json(info: MockInfo, exposures: list[Exposure], truth: Table) -> None:
    bands = {}
    for name, b in BANDS.items():
        members = [e for e in exposures if e.band == name]
        entry = {"instrument": b.instrument, "detector": b.detector, "eazy_id": b.eazy_id,
                 "pixscale": b.pixscale, "fwhm": b.fwhm, "photplam": b.photplam,
                 "depth": info.depth[name], "n_exposures": len(members),
                 "exptime_total": float(sum(e.exptime for e in members))}
        if b.is_hst:
            entry.update(photfnu=b.photfnu, photflam=b.photflam, zeropoint=b.zeropoint)
        bands[name] = entry
    rel = lambda p: str(Path(p).relative_to(info.outdir))  # noqa: E731
    doc = {
        "version": MOCK_VERSION, "alcsdb_version": alcsdb.__version__,
        "parameters": {"field": info.field, "ra": info.ra, "dec": info.dec,
                       "z_cluster": info.z_cluster, "size_arcmin": info.size_arcmin,
                       "seed": info.seed, "offsets": info.offsets, "depth": info.depth,
                       "margin_arcsec": MARGIN_ARCSEC},
        "filters": list(BANDS),
        "bands": bands,
        "n_sources": {k: int(np.sum(truth["kind"] == k)) for k in ("cluster", "background", "star")},
        "files": {"hst": [rel(p) for p in info.hst_files], "irac": [rel(p) for p in info.irac_files],
                  "irac_unc": [rel(p) for p in info.irac_unc_files], "truth": rel(info.truth),
                  "refcat": rel(info.refcat)},
    }
    info.json.write_text(json.dumps(doc, indent=1) + "\n")


def _field_defaults(name: str) -> dict[str, float]:
    """RA, Dec, z of a release field from ``alcsdb/data/fields.csv`` (empty if unknown)."""
    path = Path(alcsdb.__file__).parent / "data" / "fields.csv"
    with path.open() as fh:
        rows = csv.DictReader(line for line in fh if not line.startswith("#"))
        for row in rows:
            if row["name"] == name:
                return {"ra": float(row["ra"]), "dec": float(row["dec"]),
                        "z_cluster": float(row["z_cluster"])}
    return {}


def _parse_depth(text: str) -> dict[str, float]:
    out = {}
    for item in text.split(","):
        band, _, value = item.partition("=")
        out[band.strip().lower()] = float(value)
    return out


def main(argv: list[str] | None = None) -> int:
    """Command line: ``python -m pipeline.mock OUTDIR [--field NAME] [--size-arcmin 2] ...``."""
    p = argparse.ArgumentParser(prog="alcsdb mock", description=__doc__.split("\n")[0])
    p.add_argument("outdir", type=Path)
    p.add_argument("--field", default="j001408m3023",
                   help="field name; RA/Dec/z default to its row in alcsdb/data/fields.csv")
    p.add_argument("--ra", type=float)
    p.add_argument("--dec", type=float)
    p.add_argument("--z-cluster", type=float)
    p.add_argument("--size-arcmin", type=float, default=2.0)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--depth", type=_parse_depth, default=None,
                   help="5-sigma depth overrides, e.g. 'f160w=28.5,ch1=25'")
    p.add_argument("--no-offsets", action="store_true", help="exact headers (no pointing errors)")
    args = p.parse_args(argv)
    known = _field_defaults(args.field)
    kwargs = {k: v for k, v in known.items()}
    for key in ("ra", "dec", "z_cluster"):
        if getattr(args, key) is not None:
            kwargs[key] = getattr(args, key)
    info = simulate_field(args.outdir, field=args.field, size_arcmin=args.size_arcmin,
                          seed=args.seed, depth=args.depth, offsets=not args.no_offsets,
                          progress=lambda msg: print(msg, file=sys.stderr, flush=True), **kwargs)
    print(json.dumps({k: str(v) for k, v in asdict(info).items()
                      if k in ("outdir", "truth", "json")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
