"""`alcsdb audit`: check that the database still vouches for everything it holds.

Checks (each violation names its check, its subject and what is wrong):

| check          | violation                                                                          |
|----------------|------------------------------------------------------------------------------------|
| `files`        | a product of a succeeded run whose file is missing, or whose size or sha256 changed |
| `run_status`   | a row (any measurement table, `run_input`, a version pin) of a run not `succeeded` |
| `abandoned`    | a run left `running` by a process that is gone; the audit marks it `abandoned`     |
| `version_hash` | a catalog version whose rows no longer hash to its stored content hash             |
| `version_snapshot` | a version's stored release tables (`alcsdb.snapshot`) differ from the tables   |
|                | its rows give (checked when the rows still match the content hash)                 |
| `orphans`      | rows that no stage could have written: a table its run's stage does not write, a   |
|                | field other than the run's, measurements of sources of several detection runs, BCDs |
|                | written by another run than their AOR, a version pin of the wrong stage or field   |

A stage's writes commit together with its `succeeded` status (`alcsdb.provenance`), so rows of
a run in any other status, or of a stage that does not write that table, can only come from
writes outside alcsdb. With `field`, the checks cover that field's products, runs, sources
and the versions that include it; abandoned runs are reported whatever the field (marking
them is global, and reporting only some would hide the others).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Callable

from sqlalchemy import Connection, Engine, text

from .fields import resolve_field
from .provenance import abandoned_runs, file_sha256
from .schema import MEASUREMENT_TABLES
from .snapshot import check as check_snapshot
from .versions import ROLE_TABLE, verify_hash, version_runs

#: the stages that write each table (ingest loads release files into all catalog tables)
WRITERS = {
    "source": ("detect", "ingest"),
    "aperture_flux": ("photometry", "ingest"),
    "total_correction": ("photometry", "ingest"),
    "irac_flux": ("irac", "ingest"),
    "zout": ("photoz", "ingest"),
    "external_source": ("external",),
    "crossmatch": ("crossmatch",),
}
#: tables whose rows measure the sources of one detection run
PER_SOURCE_TABLES = ("aperture_flux", "total_correction", "irac_flux", "zout")
#: tables with their own field_id
FIELD_TABLES = ("source", "exposure", "aor", "product")
#: tables whose rows must belong to a succeeded run
RUN_TABLES = (*MEASUREMENT_TABLES, "run_input", "catalog_version_run")


@dataclass(frozen=True)
class Violation:
    check: str
    subject: str
    message: str

    def __str__(self) -> str:
        return f"{self.check}: {self.subject}: {self.message}"


@dataclass
class AuditReport:
    violations: list[Violation] = field(default_factory=list)
    checked: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.violations

    def summary(self) -> str:
        c = self.checked
        return (f"{c.get('products', 0)} product files checked ({c.get('bytes', 0) / 1e6:.1f} MB), "
                f"{c.get('runs', 0)} runs, {c.get('versions', 0)} version hashes "
                f"({c.get('snapshots', 0)} field snapshots), "
                f"{c.get('live_runs', 0)} run(s) running now")


def _field_sql(column: str, field_id: int | None) -> str:
    return f" AND {column} = :f" if field_id is not None else ""


def check_files(conn: Connection, field_id: int | None, report: AuditReport, *, sha256: bool = True) -> None:
    """Every product of a succeeded run: the file exists with its registered size and sha256."""
    rows = conn.execute(text(
        "SELECT p.product_id, p.kind, p.path, p.sha256, p.size_bytes FROM product p JOIN run r USING (run_id) "
        f"WHERE r.status = 'succeeded'{_field_sql('p.field_id', field_id)} ORDER BY p.product_id"),
        {"f": field_id}).all()
    for pid, kind, path, sha, size in rows:
        subject = f"product {pid} ({kind}) {path}"
        try:
            now = os.stat(path).st_size
        except FileNotFoundError:
            report.violations.append(Violation("files", subject, "file missing"))
            continue
        except OSError as exc:
            report.violations.append(Violation("files", subject, f"cannot read: {exc.strerror}"))
            continue
        if now != size:
            report.violations.append(Violation("files", subject, f"size {now} bytes, registered {size}"))
            continue
        digest = file_sha256(path) if sha256 else sha
        if digest != sha:
            report.violations.append(Violation("files", subject, f"sha256 {digest}, registered {sha}"))
        report.checked["bytes"] = report.checked.get("bytes", 0) + now
    report.checked["products"] = len(rows)


def check_abandoned(conn: Connection, report: AuditReport) -> None:
    """Runs `running` without a live process: marked `abandoned` and reported."""
    dead = abandoned_runs(conn, mark=True)
    for run_id, stage, fname, host, pid, started in conn.execute(text(
            "SELECT r.run_id, r.stage, f.name, r.host, r.pid, r.started_at FROM run r "
            "LEFT JOIN field f USING (field_id) WHERE r.run_id = ANY(:ids) ORDER BY r.run_id"), {"ids": dead}):
        report.violations.append(Violation(
            "abandoned", f"run {run_id} ({stage}{', ' + fname if fname else ''})",
            f"started {started:%Y-%m-%d %H:%M:%S} on {host} pid {pid}, process gone without finishing: "
            "marked abandoned (its writes were rolled back)"))
    report.checked["live_runs"] = conn.execute(text("SELECT count(*) FROM run WHERE status = 'running'")).scalar()


def check_run_status(conn: Connection, field_id: int | None, report: AuditReport) -> None:
    """Rows of runs whose status is not `succeeded` (a failed or abandoned run commits nothing)."""
    for table in RUN_TABLES:
        for run_id, stage, status, n in conn.execute(text(
                f"SELECT r.run_id, r.stage, r.status, count(*) FROM {table} t JOIN run r ON r.run_id = t.run_id "
                f"WHERE r.status <> 'succeeded'{_field_sql('r.field_id', field_id)} "
                "GROUP BY r.run_id, r.stage, r.status ORDER BY r.run_id"), {"f": field_id}):
            report.violations.append(Violation(
                "run_status", f"run {run_id} ({stage}, {status})",
                f"{n} {table} row(s), but only a succeeded run has rows"))
    report.checked["runs"] = conn.execute(text(
        f"SELECT count(*) FROM run r WHERE true{_field_sql('r.field_id', field_id)}"), {"f": field_id}).scalar()


def check_versions(conn: Connection, field_id: int | None, report: AuditReport) -> None:
    """Every catalog version (including `field`) still hashes to its stored content hash."""
    names = conn.execute(text(
        "SELECT v.name FROM catalog_version v WHERE :f IS NULL OR EXISTS (SELECT 1 FROM catalog_version_run c "
        "WHERE c.version_id = v.version_id AND c.field_id = :f) ORDER BY v.version_id"),
        {"f": field_id}).scalars().all()
    snapshots = 0
    for name in names:
        stored, now = verify_hash(conn, name)
        if stored != now:
            report.violations.append(Violation(
                "version_hash", f"version {name}",
                f"rows hash to {now}, stored {stored}: rows of its pinned runs were added or changed"))
            continue  # the rows are in doubt: comparing the snapshot with them would say nothing more
        version, fields = version_runs(conn, name)
        for fr in fields:
            if field_id is not None and fr.field_id != field_id:
                continue
            problems = check_snapshot(conn, version["version_id"], fr)
            snapshots += problems is not None
            for problem in problems or []:
                report.violations.append(Violation("version_snapshot", f"version {name}", f"{fr.field} {problem}"))
    report.checked["versions"] = len(names)
    report.checked["snapshots"] = snapshots


def check_orphans(conn: Connection, field_id: int | None, report: AuditReport) -> None:
    """Rows that do not fit the run that claims them (see the module table)."""
    add = report.violations.append
    for table, stages in WRITERS.items():
        for run_id, stage, n in conn.execute(text(
                f"SELECT r.run_id, r.stage, count(*) FROM {table} t JOIN run r ON r.run_id = t.run_id "
                f"WHERE r.stage <> ALL(:stages){_field_sql('r.field_id', field_id)} GROUP BY r.run_id, r.stage "
                "ORDER BY r.run_id"), {"stages": list(stages), "f": field_id}):
            add(Violation("orphans", f"run {run_id} ({stage})",
                          f"{n} {table} row(s), but only {' or '.join(stages)} runs write {table}"))
    fields = dict(conn.execute(text("SELECT field_id, name FROM field")).all())
    for table in FIELD_TABLES:
        for run_id, stage, run_field, row_field, n in conn.execute(text(
                f"SELECT r.run_id, r.stage, r.field_id, t.field_id, count(*) FROM {table} t JOIN run r "
                "ON r.run_id = t.run_id WHERE r.field_id IS NOT NULL AND t.field_id IS DISTINCT FROM r.field_id"
                f"{_field_sql('r.field_id', field_id)} GROUP BY 1, 2, 3, 4 ORDER BY 1"), {"f": field_id}):
            add(Violation("orphans", f"run {run_id} ({stage}, {fields[run_field]})",
                          f"{n} {table} row(s) of field {fields.get(row_field)}"))
    for table in PER_SOURCE_TABLES:
        by_run: dict[int, list[tuple]] = {}
        for row in conn.execute(text(
                f"SELECT t.run_id, r.stage, r.field_id, s.run_id, s.field_id, count(*) FROM {table} t "
                "JOIN source s ON s.source_id = t.source_id JOIN run r ON r.run_id = t.run_id "
                f"WHERE true{_field_sql('s.field_id', field_id)} GROUP BY 1, 2, 3, 4, 5 ORDER BY 1, 4"),
                {"f": field_id}):
            by_run.setdefault(row[0], []).append(row)
        for run_id, rows in by_run.items():
            stage, run_field = rows[0][1], rows[0][2]
            subject = f"run {run_id} ({stage}{', ' + fields[run_field] if run_field else ''})"
            for _, _, _, source_run, source_field, n in rows:
                if run_field is not None and source_field != run_field:
                    add(Violation("orphans", subject, f"{n} {table} row(s) of sources of field "
                                                      f"{fields[source_field]} (source run {source_run})"))
            if len(rows) > 1:
                add(Violation("orphans", subject, f"{table} rows measure sources of {len(rows)} detection runs "
                                                  f"({', '.join(str(r[3]) for r in rows)}), a stage measures one"))
    for aor_id, aor_run, bcd_run, n in conn.execute(text(
            "SELECT a.aor_id, a.run_id, b.run_id, count(*) FROM bcd b JOIN aor a USING (aor_id) "
            f"WHERE b.run_id <> a.run_id{_field_sql('a.field_id', field_id)} GROUP BY 1, 2, 3 ORDER BY 1"),
            {"f": field_id}):
        add(Violation("orphans", f"run {bcd_run}", f"{n} bcd row(s) of AOR {aor_id}, which run {aor_run} wrote"))
    role_stages = {role: WRITERS[table] for role, table in ROLE_TABLE.items()}
    for name, role, pin_field, run_id, stage, run_field in conn.execute(text(
            "SELECT v.name, c.stage, c.field_id, r.run_id, r.stage, r.field_id FROM catalog_version_run c "
            "JOIN catalog_version v USING (version_id) JOIN run r ON r.run_id = c.run_id"
            f" WHERE true{_field_sql('c.field_id', field_id)} ORDER BY v.version_id, c.field_id, c.stage"),
            {"f": field_id}):
        problems = []
        if role not in role_stages:
            problems.append(f"unknown role {role!r}")
        elif stage not in role_stages[role]:
            problems.append(f"a {stage} run cannot fill role {role}")
        if run_field is not None and run_field != pin_field:
            problems.append(f"run of field {fields[run_field]}")
        if problems:
            add(Violation("orphans", f"version {name}", f"{fields[pin_field]} {role} pins run {run_id}: "
                                                        + "; ".join(problems)))


def audit(engine: Engine, *, field: str | None = None, quick: bool = False,
          progress: Callable[[str], None] | None = None) -> AuditReport:
    """Run every check (on one field with `field`). `quick` skips what reads every byte: file
    sha256 (existence and size are still checked) and version content hashes."""
    report = AuditReport()
    with engine.begin() as conn:
        field_id = resolve_field(conn, field)[0] if field else None
        steps: list[tuple[str, Callable[[], None]]] = [
            ("runs left running", lambda: check_abandoned(conn, report)),
            ("rows of unsuccessful runs", lambda: check_run_status(conn, field_id, report)),
            ("orphan rows", lambda: check_orphans(conn, field_id, report)),
            ("product files", lambda: check_files(conn, field_id, report, sha256=not quick)),
        ]
        if not quick:
            steps.append(("version hashes", lambda: check_versions(conn, field_id, report)))
        for label, step in steps:
            if progress:
                progress(label)
            step()
    return report
