"""Photometric redshifts with eazy-py, as the release computed them (pure compute, no database).

Inputs are arrays: flux densities and errors per source and filter in units where
``AB mag = prior_abzp - 2.5 log10(flux)`` (microJansky, ``prior_abzp = 23.9``, for ALCS),
NaN for a missing value; the filters as EAZY numbers of ``FILTER.RES.latest``
(:func:`filter_numbers` maps our names). Outputs are an astropy Table with the columns of
the release's ``{field}_irac.eazypy.zout.fits`` (``alcs-docs/zout_columns.md``), the
p(z) of every source on the redshift grid and, when iterated, the zeropoint corrections.

The release ran grizli's ``eazy_photoz`` (eazy-py, template set ``tweak_fsps_QSF_12_v3``,
``SYS_ERR = 0.05``, ``Z_MAX = 12``, ``PRIOR_ABZP = 23.9``, ``CAT_HAS_EXTCORR = False`` with
the field's Milky Way E(B-V), ``standard_output(prior=False, beta_prior=True)``);
:class:`PhotozParams` holds those settings as defaults. Its README says the colour
aperture is D = 0.7" (``aperture_index = 2``) while the notebook called ``aper_ix=1``
(D = 0.5"): the index is recorded with the parameters, the caller picks the columns.

Running eazy-py offline: every eazy call runs inside a private temporary working
directory (never the caller's: eazy resolves ``templates/...`` against the working
directory first and writes zeropoint figures there) with ``eazy.utils.DATA_PATH`` set to
the EAZY data folder, so the template list's ``templates/...`` entries resolve; the
filter file, template list, template error function and prior are passed as absolute
paths (a relative ``PRIOR_FILE`` is silently ignored by eazy). Both settings are restored
afterwards; the change of working directory is process-wide, so do not run eazy from two
threads at once. The Milky Way E(B-V) is always a parameter, never looked up.

The template grid (templates integrated through the filters on the redshift grid,
``PhotoZ.tempfilt``) dominates the run time; it depends on the filters, the redshift grid,
the templates and the Milky Way E(B-V) only, so it can be built once and passed back in
(``tempfilt=``) for other sources with the same filters and field.

Columns: eazy-py 0.8 renamed some of the columns of the version the release used; the
zout table here uses the release's names:

====================  ========================  ==========================================
release (zout doc)    eazy-py 0.8 name          meaning
====================  ========================  ==========================================
``z_chi2_noprior``    ``z_raw_chi2``            grid redshift of minimum chi2 (no prior)
``chi2_noprior``      ``raw_chi2``              that minimum chi2
``SFR``               ``sfr``                   star formation rate, Msun/yr
``massp``             ``mass_p``                mass percentiles (2.5, 16, 50, 84, 97.5)
``SFRp``              ``sfr_p``                 SFR percentiles
``sSFRp``             ``ssfr_p``                specific SFR percentiles, 1/yr
``LIRp``              ``LIR_p``                 LIR percentiles
``line_flux_{L}``     (not computed any more)   template line flux, erg/s/cm2
``line_EW_{L}``       (not computed any more)   template rest-frame EW, Angstrom
====================  ========================  ==========================================

All other columns keep their names. ``z_phot`` is eazy's ``zbest``: the maximum of
p(z) (with the priors requested), refined by a parabola through the three grid points
around the peak (the zout doc's "integral of z p(z)" describes older EAZY); eazy sets it
to -1 when p(z) peaks at the first grid point (``Z_MIN``) or when the source has fewer
than two valid filters: such sources are kept (see :attr:`PhotozResult.n_at_zmin`), and
their ``z025`` .. ``z975`` are 0 as eazy leaves them. The line columns are computed as the
eazy-py version of the release did, from the template table ``{TEMPLATES_FILE}.fits``:
``flux = sum(coeffs * line_flux) * 10**(-0.4 (prior_abzp + 48.6)) / (1 + z_phot)`` and
``EW = sum(coeffs * line_flux) / sum(coeffs * line_C)``; NaN where ``z_phot <= 0``.
eazy marks non-finite derived values -9e29: they are NaN here (-99 on export). Columns
eazy-py 0.8 adds (``z_ml``, ``lw_age_V``, ``Lv_p``, ``Av_p``, ...) are left out.
"""
from __future__ import annotations

import contextlib
import io
import logging
import os
import tempfile
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from astropy.table import Table

from alcsdb import config
from alcsdb.errors import ConfigError, InputError

if TYPE_CHECKING:
    from eazy.photoz import PhotoZ, TemplateGrid

log = logging.getLogger(__name__)

RELEASE_TEMPLATES = "templates/fsps_full/tweak_fsps_QSF_12_v3.param"
"""The release's template set (eazy's default), relative to the EAZY data folder."""

NOT_OBSERVED = -99.0
"""What eazy reads as a missing flux or error (below its ``NOT_OBS_THRESHOLD = -90``)."""

EAZY_BAD_VALUE = -9e29
"""eazy's marker for a non-finite derived value in its zout table."""

PERCENTILES = (2.5, 16.0, 50.0, 84.0, 97.5)
"""Percentiles of the vector columns ``massp``, ``SFRp``, ``sSFRp``, ``LIRp``."""

EMISSION_LINES = ("Ha", "O3", "Hb", "O2", "Lya")

ZOUT_COLUMNS: tuple[str, ...] = (
    "id", "ra", "dec", "z_spec", "nusefilt", "lc_min", "lc_max", "numpeaks",
    "z_phot", "z_phot_chi2", "z_phot_risk", "z_min_risk", "min_risk",
    "z_chi2_noprior", "chi2_noprior", "z025", "z160", "z500", "z840", "z975",
    "restU", "restU_err", "restB", "restB_err", "restV", "restV_err", "restJ", "restJ_err",
    "dL", "Lv", "MLv", "Av", "mass", "SFR", "LIR", "energy_abs",
    "massp", "SFRp", "sSFRp", "LIRp",
    *(f"line_{kind}_{line}" for line in EMISSION_LINES for kind in ("flux", "EW")),
)
"""The zout columns of the release, in the order of ``alcs-docs/zout_columns.md``."""

EAZY_NAMES = {
    "z_chi2_noprior": "z_raw_chi2",
    "chi2_noprior": "raw_chi2",
    "SFR": "sfr",
    "massp": "mass_p",
    "SFRp": "sfr_p",
    "sSFRp": "ssfr_p",
    "LIRp": "LIR_p",
}
"""Release column name -> eazy-py 0.8 ``standard_output`` name, where they differ."""

_INPUT_COLUMNS = ("id", "ra", "dec", "z_spec")
_LINE_COLUMNS = tuple(c for c in ZOUT_COLUMNS if c.startswith("line_"))
_ZP_MIN_GOOD_FILTERS = 5
"""Zeropoint iterations use sources with S/N > 1 in at least this many filters (eazy's demo)."""


@dataclass(frozen=True)
class PhotozParams:
    """Settings of a photo-z run; the defaults are the release's.

    ``mw_ebv`` (the field's Milky Way E(B-V), ``fields.md``) has no default: it is never
    looked up. File names are relative to the EAZY data folder (or absolute).
    ``z_min``/``z_step`` are eazy's defaults (grid uniform in ``ln(1+z)``, step
    ``z_step``). ``prior_file``/``prior_filter`` (an EAZY filter number, which must be
    among the fitted filters) are used when ``apply_prior`` is true; ``prior_filter`` is
    also the reference filter of the zeropoint iterations. ``beta_prior`` is eazy's UV-slope
    prior. ``n_proc`` is the number of processes for the template grid and the fit (1 =
    serial in this process). ``aperture_index`` only records which HST aperture the
    fluxes came from (0..6, diameters 0.36 .. 3.0").
    """

    mw_ebv: float
    templates_file: str = RELEASE_TEMPLATES
    temp_err_file: str = "templates/TEMPLATE_ERROR.eazy_v1.0"
    temp_err_a2: float = 0.2
    sys_err: float = 0.05
    z_min: float = 0.01
    z_max: float = 12.0
    z_step: float = 0.01
    apply_prior: bool = False
    beta_prior: bool = True
    prior_file: str = "templates/prior_F160W_TAO.dat"
    prior_filter: int = 205
    prior_abzp: float = 23.9
    cat_has_extcorr: bool = False
    zeropoint_iterations: int = 0
    aperture_index: int = 2
    n_proc: int = 1

    def __post_init__(self) -> None:
        if not (np.isfinite(self.mw_ebv) and self.mw_ebv >= 0):
            raise InputError(f"mw_ebv = {self.mw_ebv}: the Milky Way E(B-V) must be finite and >= 0")
        if not 0 <= self.z_min < self.z_max or self.z_step <= 0:
            raise InputError(f"redshift grid z_min={self.z_min}, z_max={self.z_max}, "
                             f"z_step={self.z_step}: need 0 <= z_min < z_max and z_step > 0")
        if self.n_proc < 1:
            raise InputError(f"n_proc = {self.n_proc}: need at least 1 process")
        if self.zeropoint_iterations < 0:
            raise InputError(f"zeropoint_iterations = {self.zeropoint_iterations} is negative")
        if not 0 <= self.aperture_index <= 6:
            raise InputError(f"aperture_index = {self.aperture_index}: the release has apertures 0..6")

    def to_dict(self) -> dict[str, Any]:
        """The settings as a flat JSON-able dict (for provenance)."""
        return asdict(self)

    def zgrid(self) -> np.ndarray:
        """The redshift grid eazy builds from these settings (float32, as eazy stores it)."""
        grid = np.exp(np.arange(np.log(1 + self.z_min), np.log(1 + self.z_max), self.z_step)) - 1
        return grid.astype(np.float32)

    def eazy_params(self, eazy_dir: Path) -> dict[str, Any]:
        """eazy's parameter dict for these settings, with absolute file paths."""
        return {
            "FILTERS_RES": str(eazy_dir / "FILTER.RES.latest"),
            "TEMPLATES_FILE": str(eazy_dir / self.templates_file),
            "TEMP_ERR_FILE": str(eazy_dir / self.temp_err_file),
            "TEMP_ERR_A2": self.temp_err_a2,
            "SYS_ERR": self.sys_err,
            "Z_MIN": self.z_min,
            "Z_MAX": self.z_max,
            "Z_STEP": self.z_step,
            "MW_EBV": self.mw_ebv,
            "CAT_HAS_EXTCORR": self.cat_has_extcorr,
            "PRIOR_FILE": str(eazy_dir / self.prior_file),
            "PRIOR_FILTER": self.prior_filter,
            "PRIOR_ABZP": self.prior_abzp,
            "APPLY_PRIOR": self.apply_prior,
            "FIX_ZSPEC": False,
            "MAIN_OUTPUT_FILE": "photoz",
        }


@dataclass
class PhotozResult:
    """What :func:`run_photoz` returns.

    ``zout``: the release's columns (:data:`ZOUT_COLUMNS`) in the doc's order, one row
    per input source in input order. ``pz``: p(z) per source on ``zgrid`` (N x NZ,
    float32), normalized so that its trapezoid integral over ``zgrid`` is 1; NaN rows for
    sources eazy could not fit (fewer than two valid filters). ``zeropoints``: eazy's
    multiplicative flux corrections per filter (order of ``filter_numbers``) when
    ``zeropoint_iterations > 0``, else None. ``coeffs``: the best-fit template coefficients
    (N x NTEMP, float32) in the flux units of the template files (eazy's ``coeffs_best``
    times the grid's ``scale``) at ``z_phot``, or at the first grid redshift for sources with
    ``z_phot = -1`` that eazy fitted (where their p(z) peaks); NaN rows for sources not
    fitted; :func:`sed_from_coeffs` rebuilds the SED from them. ``photoz``: the fitted eazy object (its
    ``tempfilt`` is reusable; :func:`sed_data` reads SEDs from it). ``timings``: seconds
    spent building the template grid (0 when one was passed in), fitting (including
    zeropoint iterations) and computing the zout table.
    """

    zout: Table
    pz: np.ndarray
    zgrid: np.ndarray
    zeropoints: np.ndarray | None
    filter_numbers: tuple[int, ...]
    photoz: PhotoZ
    timings: dict[str, float]
    coeffs: np.ndarray

    @property
    def n_at_zmin(self) -> int:
        """Sources with ``z_phot = -1`` (p(z) peaked at Z_MIN, or not fitted)."""
        return int(np.sum(np.asarray(self.zout["z_phot"]) == -1))

    @property
    def tempfilt(self) -> TemplateGrid:
        """The template grid, to pass to another run with the same filters and field."""
        return self.photoz.tempfilt


@dataclass(frozen=True)
class EazyCatalog:
    """Photometry read from an EAZY-format ASCII catalog (see :func:`read_eazy_catalog`)."""

    fluxes: np.ndarray
    errors: np.ndarray
    filter_numbers: tuple[int, ...]
    ids: np.ndarray
    z_spec: np.ndarray


@dataclass(frozen=True)
class SedData:
    """One source's SED for plotting: fluxes in microJansky (corrected for Milky Way
    extinction and zeropoints), wavelengths in Angstrom (observed frame), NaN where a
    filter has no valid measurement; the best-fit template at ``z_plot`` (``z_phot``, or
    the first grid redshift when ``z_phot = -1``) and p(z) on ``zgrid``."""

    id: Any
    z_phot: float
    z_spec: float
    z_plot: float
    pivot: np.ndarray
    flux: np.ndarray
    error: np.ndarray
    model_flux: np.ndarray
    template_wave: np.ndarray
    template_flux: np.ndarray
    zgrid: np.ndarray
    pz: np.ndarray


# ---------------------------------------------------------------------------------------
# Filters


@lru_cache(maxsize=1)
def _filter_table() -> dict[str, int]:
    with resources.files("alcsdb.data").joinpath("filters.csv").open() as handle:
        table = Table.read(handle.read(), format="ascii.csv", comment="#")
    return {str(name): int(number) for name, number in zip(table["name"], table["eazy_id"])
            if not np.ma.is_masked(number)}


def filter_numbers(names: Sequence[str]) -> list[int]:
    """EAZY ``FILTER.RES.latest`` numbers of our filter names (``f160w``, ``ch1``, ...).

    The table is ``alcsdb/data/filters.csv`` (one table for the project). Choices, as
    grizli's ``FILTER_TRANS`` made them for the release: ``f435w`` .. ``f850lp`` without
    suffix are ACS/WFC, with the post-2006 ("t81") curves (233-240; e.g. 239 = ACS F814W);
    the WFC3/UVIS filters of CLASH (``f225w``, ``f275w``, ``f336w``, ``f390w``) are 207-210 and
    the UVIS versions of names ACS also has carry a ``u`` suffix (``f606wu`` = 214,
    ``f814wu`` = 217); WFC3/IR 201-205 and 241 (``f110w``); IRAC ``ch1`` = 18, ``ch2`` = 19.
    Raises InputError for a name with no EAZY filter.
    """
    table = _filter_table()
    unknown = [name for name in names if name not in table]
    if unknown:
        raise InputError(f"no EAZY filter for {', '.join(map(repr, unknown))} "
                         f"(known: {', '.join(sorted(table))}; alcsdb/data/filters.csv)")
    return [table[name] for name in names]


# ---------------------------------------------------------------------------------------
# eazy environment


def _import_eazy():
    """eazy.photoz, imported quietly (eazy prints about optional modules on import)."""
    with contextlib.redirect_stdout(io.StringIO()):
        import eazy.photoz
        import eazy.utils
    return eazy


def _template_list(path: Path) -> list[str]:
    """Template files named by an EAZY template list (second column of each line)."""
    lines = [line.split() for line in path.read_text().splitlines()]
    return [parts[1] for parts in lines if len(parts) > 1 and not parts[0].startswith("#")]


def resolve_eazy_dir(eazy_dir: Path | str | None, params: PhotozParams) -> Path:
    """The EAZY data folder (``alcsdb.config.eazy_dir()`` when None), checked to hold every
    file ``params`` needs; ConfigError naming what is missing otherwise."""
    folder = config.eazy_dir() if eazy_dir is None else Path(eazy_dir).expanduser().resolve()
    needed = [folder / "FILTER.RES.latest", folder / params.templates_file, folder / params.temp_err_file]
    if params.apply_prior:
        needed.append(folder / params.prior_file)
    missing = [str(p) for p in needed if not p.is_file()]
    if not missing:
        missing = [str(folder / t) for t in _template_list(folder / params.templates_file)
                   if not (folder / t).is_file()]
    if missing:
        raise ConfigError(
            f"EAZY data folder {folder} lacks {', '.join(missing)}: point ALCSDB_EAZY_DIR (or "
            "eazy_dir=) to a folder with FILTER.RES.latest and templates/ (the shared data's eazy/)")
    return folder


@contextlib.contextmanager
def _eazy_session(eazy_dir: Path) -> Iterator[None]:
    """Run eazy in a private temporary working directory with DATA_PATH = ``eazy_dir``;
    eazy's printout goes to the debug log; everything is restored on exit."""
    eazy = _import_eazy()
    import matplotlib.pyplot as plt

    old_cwd, old_data_path = os.getcwd(), eazy.utils.DATA_PATH
    old_figures = set(plt.get_fignums())
    printout = io.StringIO()
    with tempfile.TemporaryDirectory(prefix="alcsdb-eazy-") as work:
        try:
            os.chdir(work)
            eazy.utils.DATA_PATH = str(eazy_dir)
            with contextlib.redirect_stdout(printout), contextlib.redirect_stderr(printout), \
                    warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
                warnings.simplefilter("ignore", RuntimeWarning)
                yield
        finally:
            os.chdir(old_cwd)
            eazy.utils.DATA_PATH = old_data_path
            for number in set(plt.get_fignums()) - old_figures:
                plt.close(number)
            log.debug("eazy output:\n%s", printout.getvalue())


def _eazy_n_proc(n_proc: int, serial: int) -> int:
    """eazy's n_proc for our process count: eazy's serial code is ``serial`` (0 for
    ``fit_catalog``, -1 for the template grid), any other value is a pool size."""
    return serial if n_proc == 1 else n_proc


# ---------------------------------------------------------------------------------------
# Building and running


def _as_column(values: Any, n: int, name: str, fill: float) -> np.ndarray:
    if values is None:
        return np.full(n, fill)
    array = np.asarray(values, dtype=float)
    if array.shape != (n,):
        raise InputError(f"{name} has shape {array.shape}, expected ({n},)")
    return array


def _input_table(fluxes: np.ndarray, errors: np.ndarray, numbers: Sequence[int], ids: Any,
                 z_spec: Any, ra: Any, dec: Any) -> tuple[Table, Table]:
    """eazy's catalog and translate tables; NaN fluxes/errors -> -99 (missing)."""
    fluxes = np.asarray(fluxes, dtype=float)
    errors = np.asarray(errors, dtype=float)
    if fluxes.ndim != 2 or fluxes.shape != errors.shape or fluxes.shape[1] != len(numbers):
        raise InputError(f"fluxes {fluxes.shape} and errors {errors.shape} must both be "
                         f"(N sources, {len(numbers)} filters)")
    if len(set(numbers)) != len(numbers):
        raise InputError(f"filter numbers {list(numbers)} repeat a filter")
    n = fluxes.shape[0]
    ids = np.asarray(ids)
    if ids.shape != (n,) or len(np.unique(ids)) != n:
        raise InputError(f"ids must be {n} unique values, one per source")
    missing = ~(np.isfinite(fluxes) & np.isfinite(errors))
    catalog = Table()
    catalog["id"] = ids
    catalog["ra"] = _as_column(ra, n, "ra", np.nan)
    catalog["dec"] = _as_column(dec, n, "dec", np.nan)
    catalog["z_spec"] = np.nan_to_num(_as_column(z_spec, n, "z_spec", -1.0), nan=-1.0)
    rows = []
    for j, number in enumerate(numbers):
        catalog[f"flux_F{number}"] = np.where(missing[:, j], NOT_OBSERVED, fluxes[:, j])
        catalog[f"err_F{number}"] = np.where(missing[:, j], NOT_OBSERVED, errors[:, j])
        rows += [(f"flux_F{number}", f"F{number}", 1.0), (f"err_F{number}", f"E{number}", 1.0)]
    translate = Table(rows=rows, names=("column", "trans", "error"), dtype=(str, str, float))
    return catalog, translate


def _check_tempfilt(tempfilt: TemplateGrid, numbers: Sequence[int], params: PhotozParams,
                    eazy_dir: Path) -> None:
    """A reused template grid must match the filters, field E(B-V), grid and templates."""
    templates = [Path(t).name for t in _template_list(eazy_dir / params.templates_file)]
    problems = []
    if [int(f) for f in tempfilt.f_numbers] != [int(f) for f in numbers]:
        problems.append(f"filters {list(tempfilt.f_numbers)} != {list(numbers)}")
    if float(tempfilt.galactic_ebv) != float(params.mw_ebv):
        problems.append(f"MW E(B-V) {tempfilt.galactic_ebv} != {params.mw_ebv}")
    if not np.array_equal(tempfilt.zgrid, params.zgrid()):
        problems.append("redshift grid differs")
    if [t.name for t in tempfilt.templates] != templates:
        problems.append(f"templates differ from {params.templates_file}")
    if problems:
        raise InputError("the template grid passed (tempfilt) was built for other inputs: "
                         + "; ".join(problems))


def build_photoz(
    fluxes_ujy: np.ndarray,
    errors_ujy: np.ndarray,
    filter_numbers: Sequence[int],
    ids: Sequence[Any] | np.ndarray,
    *,
    z_spec: np.ndarray | None = None,
    ra: np.ndarray | None = None,
    dec: np.ndarray | None = None,
    params: PhotozParams,
    eazy_dir: Path | str | None = None,
    tempfilt: TemplateGrid | None = None,
) -> PhotoZ:
    """An eazy ``PhotoZ`` object for these sources, not yet fitted.

    ``fluxes_ujy``, ``errors_ujy``: (N, NFILT) flux densities and errors in the units of
    ``params.prior_abzp`` (microJansky for 23.9); NaN (either value) = not observed.
    ``filter_numbers``: EAZY numbers of the columns. ``ids``: N unique identifiers.
    ``z_spec``, ``ra``, ``dec`` (deg): optional, NaN where unknown. ``eazy_dir``: EAZY data
    folder (default ``alcsdb.config.eazy_dir()``). ``tempfilt``: a template grid from an
    earlier run with the same filters, E(B-V), redshift grid and templates (checked);
    otherwise the grid is built (``params.n_proc`` processes), the slow part.
    """
    folder = resolve_eazy_dir(eazy_dir, params)
    numbers = [int(n) for n in filter_numbers]
    catalog, translate = _input_table(fluxes_ujy, errors_ujy, numbers, ids, z_spec, ra, dec)
    needs_prior_filter = params.apply_prior or params.zeropoint_iterations > 0
    if needs_prior_filter and params.prior_filter not in numbers:
        raise InputError(f"prior_filter {params.prior_filter} (used by the prior and the zeropoint "
                         f"iterations) is not among the filters {numbers}")
    if tempfilt is not None:
        _check_tempfilt(tempfilt, numbers, params, folder)
    eazy = _import_eazy()
    with _eazy_session(folder):
        return eazy.photoz.PhotoZ(
            param_file=None, translate_file=translate, zeropoint_file=None,
            params={**params.eazy_params(folder), "CATALOG_FILE": catalog},
            load_prior=params.apply_prior, n_proc=_eazy_n_proc(params.n_proc, serial=-1),
            tempfilt=tempfilt,
        )


def _iterate_zeropoints(photoz: PhotoZ, params: PhotozParams) -> np.ndarray:
    """eazy's zeropoint iterations as its HDF-N demo runs them: each iteration fits the
    sources with S/N > 1 in at least 5 filters and rescales the zeropoints from the
    residuals (``iterate_zp_templates``, templates left unchanged, reference filter
    ``prior_filter``); then the errors are reset from the catalog + SYS_ERR."""
    for iteration in range(params.zeropoint_iterations):
        good = (photoz.fnu / photoz.efnu > 1).sum(axis=1) >= _ZP_MIN_GOOD_FILTERS
        photoz.iterate_zp_templates(
            idx=photoz.idx[good], update_templates=False, update_zeropoints=True,
            iter=iteration, n_proc=_eazy_n_proc(params.n_proc, serial=0), save_templates=False,
            error_residuals=False, get_spatial_offset=False, prior=params.apply_prior)
    photoz.set_sys_err(positive=True)
    return np.array(photoz.zp, dtype=float)


def _line_columns(photoz: PhotoZ, params: PhotozParams) -> dict[str, np.ndarray]:
    """Template emission-line fluxes and EWs at z_phot, as the release's eazy-py computed them."""
    table = Table.read(photoz.param["TEMPLATES_FILE"] + ".fits")
    coeffs = np.asarray(photoz.coeffs_best, dtype=float) * np.asarray(photoz.tempfilt.scale)
    z = np.asarray(photoz.zbest, dtype=float)
    fitted = z > 0
    to_cgs = 10 ** (-0.4 * (params.prior_abzp + 48.6))
    columns = {}
    for line in EMISSION_LINES:
        if f"line_flux_{line}" not in table.colnames:
            columns[f"line_flux_{line}"] = columns[f"line_EW_{line}"] = np.full(len(z), np.nan)
            continue
        line_sum = coeffs @ np.asarray(table[f"line_flux_{line}"], dtype=float)
        continuum = coeffs @ np.asarray(table[f"line_C_{line}"], dtype=float)
        with np.errstate(divide="ignore", invalid="ignore"):
            columns[f"line_flux_{line}"] = np.where(fitted, line_sum * to_cgs / (1 + z), np.nan)
            columns[f"line_EW_{line}"] = np.where(fitted, line_sum / continuum, np.nan)
    return columns


def _release_zout(eazy_zout: Table, photoz: PhotoZ, params: PhotozParams,
                  inputs: dict[str, np.ndarray]) -> Table:
    lines = _line_columns(photoz, params)
    zout = Table(meta=dict(eazy_zout.meta))
    for name in ZOUT_COLUMNS:
        if name in inputs:
            zout[name] = inputs[name]
        elif name in lines:
            zout[name] = lines[name]
            zout[name].unit = "erg / (s cm2)" if name.startswith("line_flux") else "Angstrom"
        else:
            zout[name] = eazy_zout[EAZY_NAMES.get(name, name)]
            column = zout[name]
            if column.dtype.kind == "f":
                column[column == np.asarray(EAZY_BAD_VALUE, dtype=column.dtype)] = np.nan
    return zout


def _fitted(photoz: PhotoZ) -> np.ndarray:
    """Sources eazy fitted (at least two valid filters): a chi2 on the grid."""
    return (photoz.chi2_fit != 0).any(axis=1)


def _pz(photoz: PhotoZ) -> np.ndarray:
    fitted = _fitted(photoz)
    pz = np.exp(np.asarray(photoz.lnp, dtype=np.float64)).astype(np.float32)
    pz[~fitted] = np.nan
    return pz


def _coeffs(photoz: PhotoZ) -> np.ndarray:
    """Best-fit coefficients in template-file flux units (see :class:`PhotozResult`)."""
    scale = np.asarray(photoz.tempfilt.scale, dtype=float)
    coeffs = np.asarray(photoz.coeffs_best, dtype=float) * scale
    fitted = _fitted(photoz)
    z_first = float(photoz.zgrid[0])
    for index in np.flatnonzero(fitted & ~(np.asarray(photoz.zbest) > 0)):
        # eazy leaves coeffs_best at 0 where zbest = -1: fit at the grid's first redshift
        spec = photoz.show_fit(int(index), id_is_idx=True, zshow=z_first, show_fnu=1, get_spec=True,
                               ndraws=0)
        coeffs[index] = np.nan if spec is None else np.asarray(spec["coeffs"], dtype=float) * scale
    coeffs[~fitted] = np.nan
    return coeffs.astype(np.float32)


def run_photoz(
    fluxes_ujy: np.ndarray,
    errors_ujy: np.ndarray,
    filter_numbers: Sequence[int],
    ids: Sequence[Any] | np.ndarray,
    *,
    z_spec: np.ndarray | None = None,
    ra: np.ndarray | None = None,
    dec: np.ndarray | None = None,
    params: PhotozParams,
    eazy_dir: Path | str | None = None,
    tempfilt: TemplateGrid | None = None,
) -> PhotozResult:
    """Photometric redshifts of N sources: :func:`build_photoz` (same arguments), then
    ``params.zeropoint_iterations`` zeropoint iterations, the fit on the redshift grid
    (``params.n_proc`` processes) and eazy's ``standard_output`` (p(z) statistics,
    rest-frame U, B, V, J fluxes, stellar population parameters with 100 draws from the
    fit covariance) with the magnitude prior if ``params.apply_prior`` and the UV-slope
    prior if ``params.beta_prior``. See the module docstring for the columns.
    """
    folder = resolve_eazy_dir(eazy_dir, params)
    start = time.perf_counter()
    photoz = build_photoz(fluxes_ujy, errors_ujy, filter_numbers, ids, z_spec=z_spec, ra=ra,
                          dec=dec, params=params, eazy_dir=folder, tempfilt=tempfilt)
    built = time.perf_counter()
    fit_n_proc = _eazy_n_proc(params.n_proc, serial=0)
    with _eazy_session(folder):
        zeropoints = _iterate_zeropoints(photoz, params) if params.zeropoint_iterations else None
        photoz.fit_catalog(n_proc=fit_n_proc, prior=params.apply_prior, beta_prior=params.beta_prior)
        fitted = time.perf_counter()
        eazy_zout, _ = photoz.standard_output(
            prior=params.apply_prior, beta_prior=params.beta_prior, extra_rf_filters=[],
            absmag_filters=[], save_fits=False, get_err=True, n_proc=fit_n_proc,
            run_find_peaks=True)
        coeffs = _coeffs(photoz)
    n = len(photoz.cat)
    inputs = {
        "id": np.asarray(photoz.OBJID),
        "ra": _as_column(ra, n, "ra", np.nan),
        "dec": _as_column(dec, n, "dec", np.nan),
        "z_spec": _as_column(z_spec, n, "z_spec", np.nan),
    }
    zout = _release_zout(eazy_zout, photoz, params, inputs)
    done = time.perf_counter()
    timings = {"grid": built - start if tempfilt is None else 0.0,
               "fit": fitted - built, "zout": done - fitted}
    return PhotozResult(zout=zout, pz=_pz(photoz), zgrid=np.array(photoz.zgrid),
                        zeropoints=zeropoints, filter_numbers=tuple(int(f) for f in filter_numbers),
                        photoz=photoz, timings=timings, coeffs=coeffs)


# ---------------------------------------------------------------------------------------
# Validation and plotting helpers


def metrics(z_phot: np.ndarray, z_spec: np.ndarray) -> dict[str, float]:
    """Photo-z quality against spectroscopic redshifts, over sources with ``z_spec > 0``.

    ``dz = z_phot - z_spec``; ``sigma_nmad = 1.48 median(|dz - median(dz)| / (1 + z_spec))``;
    ``outlier_frac``: fraction with ``|dz| / (1 + z_spec) > 0.15``; ``bias = median(dz / (1 +
    z_spec))``. Sources with ``z_phot = -1`` count (as outliers, usually). N = 0 gives NaNs.
    """
    z_phot = np.asarray(z_phot, dtype=float)
    z_spec = np.asarray(z_spec, dtype=float)
    with np.errstate(invalid="ignore"):
        use = z_spec > 0
    if not np.all(np.isfinite(z_phot[use])):
        raise InputError("z_phot is not finite for some sources with z_spec > 0")
    n = int(use.sum())
    if n == 0:
        return {"N": 0, "sigma_nmad": np.nan, "outlier_frac": np.nan, "bias": np.nan}
    dz = z_phot[use] - z_spec[use]
    one_plus = 1 + z_spec[use]
    return {
        "N": n,
        "sigma_nmad": float(1.48 * np.median(np.abs(dz - np.median(dz)) / one_plus)),
        "outlier_frac": float(np.mean(np.abs(dz) / one_plus > 0.15)),
        "bias": float(np.median(dz / one_plus)),
    }


def sed_data(photoz: PhotoZ, index: int) -> SedData:
    """The observed and best-fit SED and p(z) of source ``index`` (row) of a fitted PhotoZ."""
    z_phot = float(photoz.zbest[index])
    z_plot = max(z_phot, float(photoz.zgrid[0]))
    with np.errstate(divide="ignore", invalid="ignore"):
        spec = photoz.show_fit(index, id_is_idx=True, zshow=z_plot, show_fnu=1, get_spec=True,
                               ndraws=0)
    if spec is None:
        raise InputError(f"eazy could not evaluate the SED of source index {index}")
    valid = np.asarray(spec["valid"], dtype=bool)
    lnp = np.asarray(photoz.lnp[index], dtype=float)
    fitted = bool((photoz.chi2_fit[index] != 0).any())
    return SedData(
        id=photoz.OBJID[index], z_phot=z_phot, z_spec=float(photoz.ZSPEC[index]), z_plot=z_plot,
        pivot=np.asarray(spec["pivot"], dtype=float),
        flux=np.where(valid, spec["fobs"], np.nan), error=np.where(valid, spec["efobs"], np.nan),
        model_flux=np.asarray(spec["model"], dtype=float),
        template_wave=np.asarray(spec["templz"], dtype=float),
        template_flux=np.asarray(spec["templf"], dtype=float),
        zgrid=np.asarray(photoz.zgrid, dtype=float),
        pz=np.exp(lnp) if fitted else np.full(lnp.shape, np.nan),
    )


@lru_cache(maxsize=2)
def _eazy_templates(eazy_dir: Path, templates_file: str) -> tuple[Any, ...]:
    """The templates as eazy's PhotoZ reads them (its default smoothing, resampling, IGM)."""
    _import_eazy()  # quietly first: eazy prints on import
    import eazy.param
    import eazy.templates

    with _eazy_session(eazy_dir):
        param = eazy.param.read_param_file(None, verbose=False)
        return tuple(eazy.templates.read_templates_file(
            templates_file=str(eazy_dir / templates_file), velocity_smooth=param["TEMPLATE_SMOOTH"],
            resample_wave=param["RESAMPLE_WAVE"], **param.igm_kwargs))


@lru_cache(maxsize=2)
def _eazy_filter_file(eazy_dir: Path) -> Any:
    _import_eazy()
    import eazy.filters

    with _eazy_session(eazy_dir):
        return eazy.filters.FilterFile(str(eazy_dir / "FILTER.RES.latest"))


def sed_from_coeffs(
    coeffs: np.ndarray,
    z_phot: float,
    fluxes: np.ndarray,
    errors: np.ndarray,
    filter_numbers: Sequence[int],
    *,
    params: PhotozParams,
    zgrid: np.ndarray,
    pz: np.ndarray,
    zeropoints: np.ndarray | None = None,
    z_spec: float = np.nan,
    id: Any = None,
    eazy_dir: Path | str | None = None,
) -> SedData:
    """One source's SED rebuilt without refitting, from what a photo-z run stored.

    ``coeffs``: the source's row of :attr:`PhotozResult.coeffs`; ``z_phot`` its redshift (-1:
    the coefficients are at ``zgrid[0]``); ``fluxes``, ``errors``: its input fluxes (units of
    ``params.prior_abzp``, NaN = missing) in ``filter_numbers``; ``zeropoints``: the run's
    (None = 1). Returns what :func:`sed_data` returns for the fitted eazy object, in the same
    frame (microJansky, corrected for Milky Way extinction and zeropoints, errors with
    ``SYS_ERR``): the template SED is ``sum(coeffs * template f_nu(z)) * IGM(z)`` and its
    photometry the templates integrated through the filters (eazy's template grid, without
    the Milky Way extinction that eazy then removes again).
    """
    folder = resolve_eazy_dir(eazy_dir, params)
    templates = _eazy_templates(folder, params.templates_file)
    coeffs = np.asarray(coeffs, dtype=float)
    if coeffs.shape != (len(templates),):
        raise InputError(f"{coeffs.shape[0] if coeffs.ndim else 0} template coefficients for "
                         f"{len(templates)} templates of {params.templates_file}")
    filter_file = _eazy_filter_file(folder)
    filters = [filter_file[int(n)] for n in filter_numbers]
    fluxes, errors = np.asarray(fluxes, dtype=float), np.asarray(errors, dtype=float)
    zp = np.ones(len(filters)) if zeropoints is None else np.asarray(zeropoints, dtype=float)
    if not fluxes.shape == errors.shape == zp.shape == (len(filters),):
        raise InputError(f"fluxes {fluxes.shape}, errors {errors.shape} and zeropoints {zp.shape} "
                         f"must each have one value per filter ({len(filters)})")
    zgrid = np.asarray(zgrid, dtype=float)
    z_plot = max(float(z_phot), float(zgrid[0]))
    ext_corr = 10 ** (0.4 * np.array([f.extinction_correction(params.mw_ebv) for f in filters]))
    ext_redden = ext_corr if params.cat_has_extcorr else np.ones(len(filters))
    to_ujy = 10 ** (-0.4 * (params.prior_abzp + 48.6)) * 1e29
    valid = np.isfinite(fluxes) & np.isfinite(errors) & (errors > 0)
    frame = ext_redden * zp / ext_corr * to_ujy  # catalog units -> the fit's frame, uJy
    fitted_error = np.sqrt(errors**2 + (params.sys_err * np.maximum(fluxes, 0)) ** 2)

    wave = templates[0].wave
    with np.errstate(divide="ignore", invalid="ignore"):
        tempflux = np.array([np.interp(wave, t.wave, t.flux_fnu(z=z_plot, redshift_type="nearest"))
                             for t in templates])
        igm = templates[0].igm_absorption(z=z_plot)
        model = np.array([[t.integrate_filter(f, z=z_plot, include_igm=True, redshift_type="nearest")
                           for f in filters] for t in templates])
    return SedData(
        id=id, z_phot=float(z_phot), z_spec=float(z_spec) if np.isfinite(z_spec) else -1.0, z_plot=z_plot,
        pivot=np.array([f.pivot for f in filters], dtype=float),
        flux=np.where(valid, fluxes * frame, np.nan), error=np.where(valid, fitted_error * frame, np.nan),
        model_flux=coeffs @ model * to_ujy,
        template_wave=wave * (1 + z_plot), template_flux=coeffs @ tempflux * igm * to_ujy,
        zgrid=zgrid, pz=np.asarray(pz, dtype=float),
    )


def read_eazy_catalog(catalog: Path | str, translate: Path | str) -> EazyCatalog:
    """Fluxes, errors, filter numbers, ids and z_spec of an EAZY ASCII catalog
    (``ascii.commented_header``) and its translate file (``column F12`` / ``column E12``
    lines), in the translate file's filter order. Values below eazy's -90 are NaN, as are
    ``z_spec <= 0``."""
    table = Table.read(catalog, format="ascii.commented_header")
    pairs = [line.split()[:2] for line in Path(translate).read_text().splitlines() if line.split()]
    by_code = {code: column for column, code in pairs}
    numbers = [int(code[1:]) for column, code in pairs if code.startswith("F")]
    flux_cols = [by_code[f"F{n}"] for n in numbers]
    err_cols = [by_code[f"E{n}"] for n in numbers]
    fluxes = np.array([table[c] for c in flux_cols], dtype=float).T
    errors = np.array([table[c] for c in err_cols], dtype=float).T
    fluxes[fluxes < -90] = np.nan
    errors[errors < -90] = np.nan
    z_spec = np.asarray(table["z_spec"], dtype=float) if "z_spec" in table.colnames \
        else np.full(len(table), np.nan)
    z_spec[~(z_spec > 0)] = np.nan
    return EazyCatalog(fluxes=fluxes, errors=errors, filter_numbers=tuple(numbers),
                       ids=np.asarray(table["id"]), z_spec=z_spec)
