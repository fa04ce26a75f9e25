"""Running pipeline stages: inputs from the database, skipping unchanged work, outputs with provenance.

Every stage is a module in `pipeline/stages/` with

- `DEFAULTS`: its parameters (a dict; `--param key=value` overrides, values parsed as JSON);
- optionally `prepare(engine, field, params, input_dir, progress)`: register raw inputs;
- `plan(conn, field, params, input_dir) -> list[Input]`: the products it will read, found in
  the database (the newest succeeded run of the stage upstream);
- `execute(run, field, inputs, params, outdir, progress)`: the thin part: load inputs, call
  the stage's pure compute functions, write rows and products through `run`.

`run_stage` wraps it: a stage whose parameters and input files (sha256) equal those of an
earlier succeeded run of the same field is skipped (unless `force`), otherwise it runs in one
`stage_run` (all rows or none) with its inputs recorded as `run_input`. `run_fields` runs the
stages of several fields, in this process one field after another; `pipeline.distributed` runs
the same on a dask cluster (fields in parallel, each field's stages in order).
"""
from __future__ import annotations

import importlib
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from sqlalchemy import Connection, Engine, text

from alcsdb import config
from alcsdb.errors import InputError
from alcsdb.fields import resolve_field
from alcsdb.provenance import params_hash, stage_run

log = logging.getLogger("alcsdb.pipeline")

STAGES = ("mosaic", "detect", "photometry", "irac", "photoz")
Progress = Callable[[str], None]


@dataclass(frozen=True)
class Field:
    field_id: int
    name: str
    ra: float
    dec: float
    z_cluster: float | None
    ebv: float | None


@dataclass(frozen=True)
class Input:
    """A product a stage reads, in a role (e.g. `sci`, `wht`, `seg`, `raw`)."""

    product_id: int
    role: str
    kind: str
    path: Path
    sha256: str
    filter: str | None
    run_id: int
    meta: dict


@dataclass
class StageResult:
    stage: str
    field: str
    run_id: int | None
    skipped: bool
    seconds: float
    rows: dict
    message: str = ""


def parse_params(pairs: tuple[str, ...] | list[str]) -> dict[str, Any]:
    """`key=value` pairs; values are JSON when they parse (numbers, lists, true), else strings."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip().isidentifier():
            raise InputError(f"--param {pair!r}: expected key=value with a parameter name as key")
        try:
            out[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip()] = value
    return out


def stage_module(stage: str):
    if stage not in STAGES:
        raise InputError(f"unknown stage {stage!r}: choose one of {', '.join(STAGES)}")
    return importlib.import_module(f"pipeline.stages.{stage}")


def merged_params(module, overrides: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(overrides) - set(module.DEFAULTS))
    if unknown:
        raise InputError(f"unknown parameter(s) {', '.join(unknown)} for stage {module.__name__.rsplit('.', 1)[-1]}: "
                         f"known are {', '.join(sorted(module.DEFAULTS))}")
    return {**module.DEFAULTS, **overrides}


def get_field(conn: Connection, name: str) -> Field:
    fid, fname = resolve_field(conn, name)
    row = conn.execute(text("SELECT ra, dec, z_cluster, ebv FROM field WHERE field_id = :f"), {"f": fid}).one()
    return Field(fid, fname, *row)


def products_dir(field: str, stage: str, run_id: int) -> Path:
    path = config.home() / "products" / field / f"{stage}-{run_id}"
    path.mkdir(parents=True, exist_ok=True)
    return path


def latest_stage_run(conn: Connection, field_id: int, stage: str) -> int | None:
    return conn.execute(text(
        "SELECT run_id FROM run WHERE field_id = :f AND stage = :s AND status = 'succeeded' "
        "ORDER BY finished_at DESC, run_id DESC LIMIT 1"), {"f": field_id, "s": stage}).scalar()


def run_products(conn: Connection, run_id: int, kinds: tuple[str, ...] | None = None, role: str | None = None
                 ) -> list[Input]:
    rows = conn.execute(text(
        "SELECT p.product_id, p.kind, p.path, p.sha256, f.name AS filter, p.run_id, p.meta FROM product p "
        "LEFT JOIN filter f USING (filter_id) WHERE p.run_id = :r ORDER BY p.kind, f.pivot_angstrom, p.path"),
        {"r": run_id}).mappings().all()
    return [Input(r["product_id"], role or r["kind"], r["kind"], Path(r["path"]), r["sha256"], r["filter"],
                  r["run_id"], r["meta"] or {}) for r in rows if kinds is None or r["kind"] in kinds]


def require_run(conn: Connection, field: Field, stage: str, needed_by: str) -> int:
    run = latest_stage_run(conn, field.field_id, stage)
    if run is None:
        raise InputError(f"stage {needed_by} of field {field.name} needs a succeeded {stage} run: "
                         f"run `alcsdb run {stage} --field {field.name}` first")
    return run


def equivalent_run(conn: Connection, field: Field, stage: str, params: dict, inputs: list[Input]) -> int | None:
    """A succeeded run of this stage with the same parameters and the same input files."""
    wanted = sorted((i.role, i.sha256) for i in inputs)
    candidates = conn.execute(text(
        "SELECT run_id FROM run WHERE field_id = :f AND stage = :s AND status = 'succeeded' AND params_hash = :h "
        "ORDER BY run_id DESC"), {"f": field.field_id, "s": stage, "h": params_hash(params)}).scalars().all()
    for run_id in candidates:
        got = sorted(tuple(r) for r in conn.execute(text(
            "SELECT ri.role, p.sha256 FROM run_input ri JOIN product p USING (product_id) WHERE ri.run_id = :r"),
            {"r": run_id}))
        if got == wanted:
            return run_id
    return None


def run_stage(engine: Engine, stage: str, field_name: str, *, overrides: dict | None = None,
              input_dir: Path | None = None, force: bool = False, progress: Progress | None = None,
              note: str | None = None) -> StageResult:
    """Run (or skip) one stage of a field. ``note`` goes to the run's `message` (e.g. the dask
    worker and cluster that ran it); it is not a parameter, so it never changes `params_hash`."""
    module = stage_module(stage)
    params = merged_params(module, overrides or {})
    say = progress or (lambda msg: log.info(msg))
    with engine.connect() as conn:
        field = get_field(conn, field_name)
    if hasattr(module, "prepare"):  # e.g. mosaic: register raw exposures as products (their own run)
        module.prepare(engine, field, params, input_dir, say)
    with engine.connect() as conn:
        inputs = module.plan(conn, field, params, input_dir)
        if not force:
            same = equivalent_run(conn, field, stage, params, inputs)
            if same is not None:
                return StageResult(stage, field.name, same, True, 0.0, {},
                                   f"unchanged inputs and parameters: run {same} stands")
    t0 = time.perf_counter()
    with stage_run(engine, stage, field_id=field.field_id, params=params, message=note) as run:
        for item in inputs:
            run.add_input(item.product_id, item.role)
        outdir = products_dir(field.name, stage, run.run_id)
        module.execute(run, field, inputs, params, outdir, lambda msg: say(f"{stage} {field.name}: {msg}"))
        rows = dict(run.n_rows)
    return StageResult(stage, field.name, run.run_id, False, time.perf_counter() - t0, rows)


def run_pipeline(engine: Engine, field_name: str, *, input_dir: Path | None = None, stages: tuple[str, ...] = STAGES,
                 overrides: dict[str, dict] | None = None, force: bool = False,
                 progress: Progress | None = None) -> list[StageResult]:
    """All stages in order; each is skipped when its inputs and parameters are unchanged."""
    results = []
    for stage in stages:
        results.append(run_stage(engine, stage, field_name, overrides=(overrides or {}).get(stage),
                                 input_dir=input_dir if stage == "mosaic" else None, force=force, progress=progress))
    return results


@dataclass(frozen=True)
class FieldJob:
    """A field to process, with its raw exposures folder (for the mosaic stage) if any."""

    field: str
    input_dir: Path | None = None


@dataclass
class FieldOutcome:
    """What happened to a field: the results of the stages that ran or were skipped, and the
    error that stopped it (``failed_stage``), if one did."""

    field: str
    results: list[StageResult]
    error: Exception | None = None
    failed_stage: str | None = None


def field_jobs(conn: Connection, input_dir: Path) -> list[FieldJob]:
    """`pipeline --all-fields`: one job per sub-folder of ``input_dir`` (named for a field, by
    name or root, holding that field's raw exposures as `alcsdb mock DIR/FIELD` writes them).

    Checked before anything runs: an unknown name, two folders for one field, a folder without
    HST exposures or no sub-folder at all is an InputError naming the folder.
    """
    from .stages.mosaic import RAW_PATTERNS

    folders = sorted(p for p in Path(input_dir).iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise InputError(f"{input_dir}: no field folders (expected one sub-folder per field, e.g. "
                         f"{Path(input_dir) / 'j001408m3023'}/hst/)")
    jobs: dict[str, FieldJob] = {}
    for folder in folders:
        try:
            _, name = resolve_field(conn, folder.name)
        except InputError as exc:
            raise InputError(f"{folder}: the folder name is not a known field ({exc})") from None
        if name in jobs:
            raise InputError(f"{folder} and {jobs[name].input_dir} are both field {name}")
        if not any(folder.glob(RAW_PATTERNS["raw_flt"])):
            raise InputError(f"{folder}: no HST exposures ({RAW_PATTERNS['raw_flt']})")
        jobs[name] = FieldJob(name, folder)
    return list(jobs.values())


def run_fields(engine: Engine, jobs: list[FieldJob], *, stages: tuple[str, ...] = STAGES,
               overrides: dict[str, dict] | None = None, force: bool = False, progress: Progress | None = None,
               on_result: Callable[[StageResult], None] | None = None) -> list[FieldOutcome]:
    """The ``stages`` of every field in this process, one field after another. A stage that
    fails stops its field (its run is marked failed) but not the other fields."""
    outcomes = []
    for job in jobs:
        outcome = FieldOutcome(job.field, [])
        for stage in stages:
            try:
                result = run_stage(engine, stage, job.field, overrides=(overrides or {}).get(stage),
                                   input_dir=job.input_dir if stage == "mosaic" else None, force=force,
                                   progress=progress)
            except Exception as exc:  # reported per field by the caller
                outcome.error, outcome.failed_stage = exc, stage
                break
            outcome.results.append(result)
            if on_result:
                on_result(result)
        outcomes.append(outcome)
    return outcomes
