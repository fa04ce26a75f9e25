"""HATS export of a catalog version, for LSDB: `alcsdb export --version NAME --format hats --out DIR`.

DIR becomes one HATS catalog (``hats.properties``, ``partition_info.csv``,
``dataset/Norder=K/Dir=D/Npix=P.parquet``, ``dataset/_metadata``, ``skymap.fits``) holding every
field of the version, one row per source:

- ``_healpix_29``: our `source.hpx29` (NESTED, order 29, int64), HATS's spatial index;
- ``field`` (release field name), ``source_id`` (the database key of the version's detect run);
- the release photometry columns of the FITS export (`export.version_tables`: the version's
  snapshot; order of `phot_apcorr_columns.md`, over the union of the version's filters), then
  the zout columns (``id``/``ra``/``dec`` dropped, ``z_spec`` renamed ``zout_z_spec``;
  the 5-percentile columns ``massp`` ... flattened to ``massp_0`` ... ``massp_4`` as in the CSV
  export). Values as in the FITS export: microJansky, -99 for missing values.

Rows are sorted by (``_healpix_29``, field, id). Two writers, chosen by size:

- up to `SMALL_MAX_ROWS` rows and `SMALL_MAX_BYTES` in memory (lsdb's documented limits for
  `from_dataframe`, halved for the bytes because the frames are concatenated):
  ``lsdb.from_dataframe(...).write_catalog(...)`` in this process (lsdb 0.11's name for the
  deprecated ``to_hats``). `from_dataframe` computes
  ``_healpix_29`` itself from ra/dec (cdshealpix); the export checks that it equals `hpx29`
  for every row and otherwise uses the second writer;
- beyond: each field is written to a staging parquet file and ``hats-import`` partitions them
  on a dask LocalCluster with ``use_healpix_29=True``, so `hpx29` is the spatial index as is.

``hats.properties`` carries, besides hats's own keys, ``alcsdb_version`` (name),
``alcsdb_content_hash``, ``alcsdb_runs`` (``field/role/run_id`` for every pinned run),
``alcsdb_software_version``, ``alcsdb_missing`` and ``alcsdb_flux_unit``, written with hats's
`TableProperties` API (extra keys are allowed by it); ``hats_creation_date`` is the version's
creation time. The export run id is not written (it would differ at every export): the run's
`product` rows point at the files instead. The catalog is built in a hidden sibling folder and
renamed to DIR at the end, so a failed export leaves no partial catalog; DIR must not exist
or be empty. Every file of the catalog is one `product` row (kind ``export_hats``, its sha256
and size; ``meta.relpath``), so `alcsdb audit` checks them like any file.
"""
from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable
from datetime import UTC
from pathlib import Path

import numpy as np
from sqlalchemy import Connection, text

from . import columns as rc
from .copyload import fetch_columns
from .errors import InputError
from .provenance import RunContext, file_sha256
from .versions import FieldRuns

log = logging.getLogger(__name__)

SMALL_MAX_ROWS = 1_000_000
SMALL_MAX_BYTES = 512 * 2**20
PROPERTY_PREFIX = "alcsdb_"
HEALPIX_COLUMN = "_healpix_29"  # hats.pixel_math.spatial_index.SPATIAL_INDEX_COLUMN
ZOUT_RENAMES = {"z_spec": "zout_z_spec"}
METHODS = ("auto", "lsdb", "import")
# hats-import partitioning: pixels of order <= 9 (6.9'), each at most 512 MiB in memory (hats's
# alignment cost grows as 4**order over the whole sky: order 10 took 13 s even for 800 rows)
IMPORT_HIGHEST_ORDER = 9
IMPORT_PIXEL_BYTES = 512 * 2**20


def check_out_dir(out_dir: Path) -> None:
    """DIR must be absent or an empty folder (a HATS catalog is a whole folder, never merged)."""
    out_dir = Path(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise InputError(f"{out_dir}: --format hats needs an absent or empty output folder (it becomes the catalog)")


def version_filters(conn: Connection, fields: list[FieldRuns]) -> list[str]:
    """HST filters measured by any photometry run of the version, in the FITS export's order."""
    runs = sorted(fr.runs["photometry"] for fr in fields if "photometry" in fr.runs)
    return [r[0] for r in conn.execute(text(
        "SELECT f.name FROM filter f WHERE f.name <> 'det' AND f.filter_id IN (SELECT DISTINCT filter_id FROM "
        "total_correction WHERE run_id = ANY(:p) UNION SELECT DISTINCT filter_id FROM aperture_flux WHERE "
        "run_id = ANY(:p)) ORDER BY f.pivot_angstrom NULLS LAST, f.name"), {"p": runs})]


def _flat(name: str, values: np.ndarray) -> dict[str, np.ndarray]:
    values = values.astype(values.dtype.newbyteorder("="), copy=False)  # snapshots are big-endian, arrow is not
    if values.ndim == 1:
        return {name: values}
    return {f"{name}_{k}": np.ascontiguousarray(values[:, k]) for k in range(values.shape[1])}


def field_columns(conn: Connection, version: dict, fr: FieldRuns, filters: list[str], *, zspec: str | None = None,
                  zspec_radius: float = 0.5) -> dict[str, np.ndarray]:
    """One field of the version as HATS columns (see the module docstring), rows in catalog id order."""
    from .export import _fill, _fill_zspec, version_tables

    tables = dict(version_tables(conn, version, fr)[0])  # the version's snapshot, as the FITS export reads
    if zspec:
        _fill_zspec(conn, fr, tables, zspec, zspec_radius)
    phot, zout = tables["phot"], tables["zout"]
    keys = fetch_columns(conn, [("id", "id", "i8"), ("source_id", "source_id", "i8"), ("hpx29", "hpx29", "i8")],
                         "FROM source WHERE run_id = :d ORDER BY id", {"d": fr.runs["detect"]})
    n = len(keys["id"])
    if not np.array_equal(keys["id"], phot["id"]):
        raise RuntimeError(f"{fr.field}: source ids of the detect run changed while exporting")
    out: dict[str, np.ndarray] = {HEALPIX_COLUMN: keys["hpx29"], "field": np.full(n, fr.field, dtype=object),
                                  "source_id": keys["source_id"]}
    for name in rc.phot_apcorr_columns(filters, with_irac=True):
        out.update(_flat(name, phot[name] if name in phot else _fill(n, rc.phot_column_spec(name))))
    rows = np.searchsorted(keys["id"], zout["id"]) if zout is not None else None
    for spec in rc.ZOUT_SPECS:
        if spec.name in ("id", "ra", "dec"):
            continue
        col = _fill(n, spec)
        if zout is not None:
            col[rows] = zout[spec.name]
        out.update(_flat(ZOUT_RENAMES.get(spec.name, spec.name), col))
    return out


def _frame(columns: dict[str, np.ndarray]):
    import pandas as pd

    frame = pd.DataFrame(columns)
    frame["field"] = frame["field"].astype("string[pyarrow]")
    return frame


def hats_properties(conn: Connection, version: dict, fields: list[FieldRuns]) -> dict[str, str]:
    """The alcsdb keys of hats.properties (and hats_creation_date = the version's creation time)."""
    runs = " ".join(f"{fr.field}/{role}/{run}" for fr in fields for role, run in sorted(fr.runs.items()))
    return {
        f"{PROPERTY_PREFIX}version": version["name"],
        f"{PROPERTY_PREFIX}content_hash": version["content_hash"] or "",
        f"{PROPERTY_PREFIX}runs": runs,
        f"{PROPERTY_PREFIX}software_version": version["software_version"] or "",
        f"{PROPERTY_PREFIX}missing": str(rc.MISSING),
        f"{PROPERTY_PREFIX}flux_unit": "uJy (AB zeropoint 23.9)",
        "obs_title": f"ALCS HST + IRAC photometric catalog, version {version['name']}",
        "healpix_column": HEALPIX_COLUMN,  # hats-import leaves these unset with use_healpix_29
        "healpix_order": 29,
        "hats_creation_date": version["created_at"].astimezone(UTC).strftime("%Y-%m-%dT%H:%M%Z"),
    }


def _spatial_index_agrees(columns: dict[str, np.ndarray]) -> bool:
    """hats's own order-29 index of (ra, dec) equals our hpx29 (what from_dataframe would store)."""
    from hats.pixel_math.spatial_index import compute_spatial_index

    return bool(np.array_equal(compute_spatial_index(columns["ra"], columns["dec"]), columns[HEALPIX_COLUMN]))


def _write_with_lsdb(parts: list[dict[str, np.ndarray]], target: Path, name: str) -> None:
    import lsdb
    import pandas as pd

    frame = pd.concat([_frame(p) for p in parts], ignore_index=True)
    frame = frame.sort_values([HEALPIX_COLUMN, "field", "id"], kind="stable", ignore_index=True)
    # from_dataframe computes _healpix_29 from ra/dec; _spatial_index_agrees checked it equals hpx29
    catalog = lsdb.from_dataframe(frame.drop(columns=[HEALPIX_COLUMN]), ra_column="ra", dec_column="dec",
                                  catalog_name=name, margin_threshold=None)
    # write_catalog replaces the deprecated to_hats; as_collection=False: one catalog, no collection wrapper
    catalog.write_catalog(target, catalog_name=name, as_collection=False, progress_bar=False)


def _write_with_import(staged: list[Path], target: Path, name: str, workers: int) -> None:
    from dask.distributed import Client, LocalCluster
    from hats_import.catalog.arguments import ImportArguments
    from hats_import.pipeline import pipeline_with_client

    args = ImportArguments(
        output_path=str(target.parent), output_artifact_name=target.name, input_file_list=[str(p) for p in staged],
        file_reader="parquet", ra_column="ra", dec_column="dec", use_healpix_29=True, catalog_type="object",
        highest_healpix_order=IMPORT_HIGHEST_ORDER, byte_pixel_threshold=IMPORT_PIXEL_BYTES, tmp_dir=str(target.parent / f"{target.name}.tmp"),
        resume=False, progress_bar=False, expected_total_rows=0)
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                      local_directory=str(target.parent)) as cluster, Client(cluster) as client:
        pipeline_with_client(args, client)
    # hats-import keeps the catalog name of its arguments: set it to ours
    _update_properties(target, {"catalog_name": name})


def _update_properties(target: Path, values: dict) -> None:
    from hats.catalog import TableProperties

    props = TableProperties.read_from_dir(target)
    props.copy_and_update(**values).to_properties_file(target)


def write_hats(run: RunContext, version: dict, fields: list[FieldRuns], out_dir: Path, *, zspec: str | None = None,
               zspec_radius: float = 0.5, method: str = "auto", workers: int | None = None,
               progress: Callable[[str], None] | None = None) -> list:
    """Write the version's fields as one HATS catalog at `out_dir` inside the export `run`; return its files."""
    from .export import ExportedFile

    if method not in METHODS:
        raise InputError(f"unknown HATS writer {method!r}: choose one of {', '.join(METHODS)}")
    out_dir = Path(out_dir).resolve()
    check_out_dir(out_dir)
    conn = run.conn
    say = progress or (lambda msg: None)
    detect = [fr.runs["detect"] for fr in fields]
    total = conn.execute(text("SELECT count(*) FROM source WHERE run_id = ANY(:d)"), {"d": detect}).scalar()
    if not total:
        raise InputError(f"version {version['name']} has no sources to export")
    filters = version_filters(conn, fields)
    build = out_dir.parent / f".{out_dir.name}.hats-build-{run.run_id}"
    shutil.rmtree(build, ignore_errors=True)
    stage = build / "staging"
    target = build / "catalog"
    stage.mkdir(parents=True)
    try:
        parts: list[dict[str, np.ndarray]] = []
        staged: list[Path] = []
        chosen = method
        for fr in fields:
            say(f"{fr.field}: reading rows")
            cols = field_columns(conn, version, fr, filters, zspec=zspec, zspec_radius=zspec_radius)
            if chosen == "auto":
                row_bytes = _frame(cols).memory_usage(deep=True).sum() / max(len(cols["id"]), 1)
                small = total <= SMALL_MAX_ROWS and row_bytes * total <= SMALL_MAX_BYTES
                chosen = "lsdb" if small else "import"
                log.info("HATS export of %d rows (~%.0f MB in memory): %s", total, row_bytes * total / 2**20,
                         "lsdb.from_dataframe" if small else "hats-import")
            if chosen == "lsdb" and not _spatial_index_agrees(cols):
                log.warning("%s: hats's _healpix_29 differs from hpx29 for some rows: using hats-import", fr.field)
                chosen = "import"
                for k, part in enumerate(parts):
                    staged.append(_stage(part, stage / f"{k:05d}.parquet"))
                parts = []
            if chosen == "lsdb":
                parts.append(cols)
            else:
                staged.append(_stage(cols, stage / f"{len(staged):05d}.parquet"))
        say(f"writing the HATS catalog ({total} rows, {'lsdb' if chosen == 'lsdb' else 'hats-import'})")
        if chosen == "lsdb":
            _write_with_lsdb(parts, target, version["name"])
        else:
            _write_with_import(staged, target, version["name"], workers or min(2, os.cpu_count() or 1))
        _update_properties(target, hats_properties(conn, version, fields))
        if out_dir.exists():
            out_dir.rmdir()  # checked empty above
        target.rename(out_dir)
    finally:
        shutil.rmtree(build, ignore_errors=True)
    return _register(run, out_dir, version["name"], chosen, ExportedFile)


def _stage(cols: dict[str, np.ndarray], path: Path) -> Path:
    frame = _frame(cols).sort_values([HEALPIX_COLUMN, "field", "id"], kind="stable", ignore_index=True)
    frame.to_parquet(path, index=False)
    return path


def _register(run: RunContext, out_dir: Path, version_name: str, method: str, exported) -> list:
    """One product row per file of the catalog (sorted by path), rows counted for the data files."""
    import pyarrow.parquet as pq

    written = []
    for path in sorted(p for p in out_dir.rglob("*") if p.is_file()):
        rel = path.relative_to(out_dir).as_posix()
        rows = pq.ParquetFile(path).metadata.num_rows if rel.startswith("dataset/Norder=") else 0
        sha = file_sha256(path)
        run.register_product(path, "export_hats", sha256=sha,
                             meta={"version": version_name, "format": "hats", "catalog": str(out_dir),
                                   "relpath": rel, "writer": method, "rows": rows})
        written.append(exported("", "hats", path, sha, rows))
    return written
