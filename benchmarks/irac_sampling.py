"""How well a smooth model and the drizzle-sampled model (`pipeline.sampling`) reproduce point
sources in a pixfrac-0.2 IRAC mosaic, noise-free, with a mock's real frame geometry.

Reads the IRAC BCDs of a mock (`alcsdb mock`), replaces their pixels with a noise-free lattice of
point sources (the real IRAC PSF of `../shared/data/psf`, turned to each AOR's angle and sampled
at the frames' pixel centres, as the mock renders), drizzles them as the mosaic stage does
(`pipeline.mosaic.drizzle`, pixfrac 0.2 onto the 0.5" grid, background weights) and compares
in the same run:

- ``smooth``: the scene convolved with the AORs' mean PSF and summed over each 0.5" pixel (the
  models without sampling maps);
- ``smooth + centroid``: plus each pixel's mean input-centre offset (all AORs together) times the
  model's gradient;
- ``per-AOR + centroid`` (the irac stage with ``drizzle_sampling``): each AOR's share of the
  pixel times its own model moved by its own offset, with the maps of
  `pipeline.sampling.sampling_maps`.

For each source it prints the largest |drizzle - model| within 6 pixels over the model peak
(median and 90th percentile), the rms of that ratio within 2 pixels of the centre, and the
median of drizzle sum / model sum.

    python benchmarks/irac_sampling.py --mock /tmp/alcs_photoz/mock2/mock [--channel ch2]
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
from scipy import signal

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.mosaic import drizzle, read_bcd, release_grid  # noqa: E402
from pipeline.sampling import sampling_maps  # noqa: E402
from pipeline.sim_observe import make_wcs  # noqa: E402
from pipeline.sim_psf import irac_psf, psf_in_frame  # noqa: E402
from pipeline.sim_render import sample_scene  # noqa: E402

PAD = 100  # scene margin, 0.1" pixels
UJY_PER_MJYSR_ARCSEC2 = 1e12 * (np.pi / 180 / 3600) ** 2


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--mock", type=Path, required=True, help="a mock folder (alcsdb mock OUTDIR)")
    p.add_argument("--channel", default="ch1", choices=("ch1", "ch2"))
    p.add_argument("--spacing", type=float, default=12.0, help="lattice spacing, arcsec (default 12)")
    args = p.parse_args()
    info = json.loads((args.mock / "mock.json").read_text())["parameters"]
    grid = release_grid(info["ra"], info["dec"], info["size_arcmin"])
    fine_wcs, irac_wcs = grid.wcs("ir"), grid.wcs("irac")
    files = sorted(args.mock.glob(f"irac/*/{args.channel}/bcd/*_bcd.fits"))
    if not files:
        raise SystemExit(f"{args.mock}: no IRAC {args.channel} BCDs (irac/r*/{args.channel}/bcd/*_bcd.fits)")
    frames = [read_bcd(f) for f in files]
    ny, nx = grid.shape("ir")
    scene_wcs = fine_wcs.deepcopy()
    scene_wcs.wcs.crpix = [scene_wcs.wcs.crpix[0] + PAD, scene_wcs.wcs.crpix[1] + PAD]
    scene_wcs.pixel_shape = (nx + 2 * PAD, ny + 2 * PAD)
    scene = np.zeros((ny + 2 * PAD, nx + 2 * PAD))
    rng = np.random.default_rng(3)
    step = int(round(args.spacing / 0.1))
    xs, ys = [], []
    for yy in range(PAD + step // 2, PAD + ny - step // 2, step):
        for xx in range(PAD + step // 2, PAD + nx - step // 2, step):
            x, y = xx + int(rng.integers(0, 5)), yy + int(rng.integers(0, 5))
            scene[y, x] = 1000.0
            xs.append(x)
            ys.append(y)
    psf, pscale = irac_psf(args.channel)
    aors: dict[str, list] = {}
    for f in frames:
        aors.setdefault(str(f.info.visit_key), []).append(f)
    convs, groups, noisefree = {}, [], []
    for key, members in aors.items():
        psf_cd = make_wcs((0, 0), (1, 1), pscale, float(members[0].info.pa)).wcs.cd
        convs[key] = signal.fftconvolve(scene, psf_in_frame(psf, psf_cd, scene_wcs.wcs.cd), mode="same")
        clean = []
        for f in members:
            density = sample_scene(convs[key], scene_wcs, f.wcs, f.sci.shape)  # uJy per 0.1" pixel
            clean.append(dataclasses.replace(f, sci=(density / 0.01 / UJY_PER_MJYSR_ARCSEC2).astype(np.float32),
                                             mask=np.zeros_like(f.mask)))
        groups.append((key, int(key) if key.isdigit() else 0, float(members[0].info.pa), clean))
        noisefree += clean
    kw = dict(pixfrac=0.2, kernel="square", irac_background_weights=True)
    sci, wht = drizzle(noisefree, irac_wcs, **kw)
    maps = sampling_maps(groups, irac_wcs, drizzle, **kw).maps
    good = wht > 0

    def binned(a: np.ndarray, factor: float = 1.0) -> np.ndarray:
        core = a[PAD:PAD + ny, PAD:PAD + nx]
        return core.reshape(ny // 5, 5, nx // 5, 5).sum(axis=(1, 3)) * factor

    def model_and_gradient(conv: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        gy, gx = np.gradient(conv)  # per 0.1" pixel; x5 per IRAC pixel
        return binned(conv), binned(gx, 5.0), binned(gy, 5.0)

    mean_conv = np.mean([convs[k] for k in aors], axis=0)
    smooth, gx, gy = model_and_gradient(mean_conv)
    # all AORs' mean input-centre offset: share-weighted mean of the per-AOR offsets
    dx_all = (maps[:, 0] * maps[:, 1]).sum(axis=0)
    dy_all = (maps[:, 0] * maps[:, 2]).sum(axis=0)
    per_aor = np.zeros_like(smooth)
    for a, key in enumerate(aors):
        m, ax, ay = model_and_gradient(convs[key])
        per_aor += maps[a, 0] * (m + maps[a, 1] * ax + maps[a, 2] * ay)
    models = {"smooth": smooth, "smooth + centroid": smooth + dx_all * gx + dy_all * gy,
              "per-AOR + centroid": per_aor}
    print(f"{args.mock} {args.channel}: {len(frames)} frames in {len(aors)} AORs, {len(xs)} point sources "
          f"on a {args.spacing:g}\" lattice, noise-free")
    print(f"input-centre offset rms (IRAC pixels): {dx_all[good].std():.3f} / {dy_all[good].std():.3f}; "
          f"AOR share per pixel: mean {maps[:, 0][:, good].mean():.3f}, rms {maps[:, 0][:, good].std():.3f}")
    print(f"{'model':22s} {'n':>4s} {'max|r|/peak med':>16s} {'90%':>7s} {'rms/peak <=2px':>15s} {'sum ratio':>10s}")
    for name, model in models.items():
        worst, inner, ratio = [], [], []
        for x, y in zip(xs, ys):
            cx, cy = (x - PAD) // 5, (y - PAD) // 5
            box = np.s_[cy - 6:cy + 7, cx - 6:cx + 7]
            if not good[box].all():
                continue
            peak = model[box].max()
            r = (sci[box] - model[box]) / peak
            worst.append(np.abs(r).max())
            inner.append(r[4:9, 4:9])
            ratio.append(sci[box].sum() / model[box].sum())
        print(f"{name:22s} {len(worst):4d} {np.median(worst):16.4f} {np.percentile(worst, 90):7.4f} "
              f"{np.sqrt(np.mean(np.square(inner))):15.4f} {np.median(ratio):10.4f}")


if __name__ == "__main__":
    main()
