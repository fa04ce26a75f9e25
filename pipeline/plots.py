"""Photo-z QA figures (PNG), drawn with matplotlib's Agg canvas (no pyplot, no display).

- :func:`zphot_vs_zspec_png`: z_phot against z_spec with the 1:1 line, the +-0.15 (1+z)
  outlier bounds and the metrics of :func:`pipeline.photoz.metrics` in the corner;
- :func:`sed_pz_png`: one source's observed fluxes with errors, the best-fit template
  SED and its photometry, and a p(z) panel (for ``alcsdb plot sed SOURCE_ID --out FILE.png``).
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from alcsdb.errors import InputError
from pipeline.photoz import SedData, sed_data

if TYPE_CHECKING:
    from eazy.photoz import PhotoZ

OUTLIER_LIMIT = 0.15
"""|z_phot - z_spec| / (1 + z_spec) above which a source is an outlier."""


def _save(figure: Figure, path: Path | str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(figure)
    figure.savefig(path, format="png", dpi=120)
    return path


def zphot_vs_zspec_png(z_phot: np.ndarray, z_spec: np.ndarray, path: Path | str,
                       metrics: dict[str, Any] | None = None) -> Path:
    """z_phot against z_spec for the sources with ``z_spec > 0``, log(1+z) axes; ``metrics``
    (as returned by :func:`pipeline.photoz.metrics`) are written in the corner. Returns the path."""
    z_phot = np.asarray(z_phot, dtype=float)
    z_spec = np.asarray(z_spec, dtype=float)
    with np.errstate(invalid="ignore"):
        use = z_spec > 0
    if not use.any():
        raise InputError("no source with z_spec > 0 to plot")
    zmax = 1.05 * max(np.nanmax(z_spec[use]), np.nanmax(z_phot[use]), 1.0)
    line = np.linspace(0, zmax, 200)
    figure = Figure(figsize=(5, 5))
    ax = figure.add_subplot()
    outlier = np.abs(z_phot - z_spec) / (1 + z_spec) > OUTLIER_LIMIT
    ax.scatter(z_spec[use & ~outlier], z_phot[use & ~outlier], s=10, color="k", alpha=0.6)
    ax.scatter(z_spec[use & outlier], np.maximum(z_phot[use & outlier], 0), s=14,
               color="tab:red", alpha=0.8, label=f"|dz|/(1+z) > {OUTLIER_LIMIT}")
    ax.plot(line, line, color="tab:blue", lw=1)
    for sign in (-1, 1):
        ax.plot(line, line + sign * OUTLIER_LIMIT * (1 + line), color="tab:blue", lw=0.8, ls="--")
    ax.set_xscale("function", functions=(np.log1p, np.expm1))
    ax.set_yscale("function", functions=(np.log1p, np.expm1))
    ax.set_xlim(0, zmax)
    ax.set_ylim(0, zmax)
    ax.set_xlabel("z_spec")
    ax.set_ylabel("z_phot")
    if metrics is not None:
        text = (f"N = {metrics['N']}\n"
                f"$\\sigma_{{NMAD}}$ = {metrics['sigma_nmad']:.3f}\n"
                f"outliers = {100 * metrics['outlier_frac']:.1f}%\n"
                f"bias = {metrics['bias']:+.3f}")
        ax.text(0.04, 0.96, text, transform=ax.transAxes, va="top", ha="left", fontsize=9)
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(alpha=0.3)
    figure.tight_layout()
    return _save(figure, path)


def sed_pz_png(source: PhotoZ | SedData, index: int | None, path: Path | str, title: str | None = None) -> Path:
    """SED and p(z) of one source: ``source`` is a fitted eazy PhotoZ with ``index`` the
    source's row, or a :class:`pipeline.photoz.SedData` (then ``index`` must be None).
    Fluxes in microJansky against observed wavelength in micron; ``title`` names the source
    (default ``id {id}``). Returns the path."""
    if isinstance(source, SedData):
        if index is not None:
            raise InputError("index is only for a PhotoZ source; SedData holds one source")
        data = source
    else:
        if index is None:
            raise InputError("index (the source's row) is needed with a PhotoZ object")
        data = sed_data(source, index)

    figure = Figure(figsize=(10, 4))
    grid = figure.add_gridspec(1, 2, width_ratios=(1.7, 1))
    ax = figure.add_subplot(grid[0])
    wave_um = data.pivot / 1e4
    in_range = (data.template_wave > 0.8 * data.pivot.min()) & (data.template_wave < 1.25 * data.pivot.max())
    ax.plot(data.template_wave[in_range] / 1e4, data.template_flux[in_range], color="tab:blue",
            lw=0.8, alpha=0.8, label=f"template, z = {data.z_plot:.3f}")
    ax.scatter(wave_um, data.model_flux, marker="s", s=40, facecolor="none",
               edgecolor="tab:blue", label="template photometry")
    valid = np.isfinite(data.flux)
    ax.errorbar(wave_um[valid], data.flux[valid], data.error[valid], fmt="o", color="k", ms=4,
                label="observed")
    ax.set_xscale("log")
    ax.set_xlabel(r"observed wavelength [$\mu$m]")
    ax.set_ylabel(r"$f_\nu$ [$\mu$Jy]")
    values = np.concatenate([data.flux[valid] + data.error[valid], data.model_flux])
    top = np.nanmax(values) if np.isfinite(values).any() else 1.0
    top = top if top > 0 else 1.0
    ax.set_ylim(-0.1 * top, 1.3 * top)
    ax.set_xlim(0.8 * wave_um.min(), 1.25 * wave_um.max())
    ax.legend(fontsize=8, loc="upper left")
    ax.grid(alpha=0.3)
    z_spec = f", z_spec = {data.z_spec:.3f}" if data.z_spec > 0 else ""
    ax.set_title(f"{title or f'id {data.id}'}: z_phot = {data.z_phot:.3f}{z_spec}", fontsize=10)

    axz = figure.add_subplot(grid[1])
    axz.plot(data.zgrid, data.pz, color="k", lw=1)
    axz.fill_between(data.zgrid, 0, np.nan_to_num(data.pz), color="0.7", alpha=0.5)
    if not np.isfinite(data.pz).any():
        axz.text(0.5, 0.5, "not fitted", transform=axz.transAxes, ha="center")
    if data.z_phot > 0:
        axz.axvline(data.z_phot, color="tab:blue", lw=1, label="z_phot")
    if data.z_spec > 0:
        axz.axvline(data.z_spec, color="tab:red", lw=1, ls="--", label="z_spec")
    axz.set_xscale("function", functions=(np.log1p, np.expm1))
    axz.set_xlim(0, data.zgrid.max())
    axz.set_xlabel("z")
    axz.set_ylabel("p(z)")
    if axz.get_legend_handles_labels()[0]:
        axz.legend(fontsize=8)
    axz.grid(alpha=0.3)
    figure.tight_layout()
    return _save(figure, path)
