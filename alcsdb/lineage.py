"""Lineage: every run that produced a source, a product or a catalog version, back to raw inputs.

The graph is in the database: a run read its `run_input` products (each in a role); a product
was made by `product.run_id`. Walking it from a run gives the run's inputs, the runs that made
them, their inputs, and so on. The walk stops at raw inputs: a release file is registered by
the ingest run that reads it (a product its own run lists as input), exposures' FLT files and
AOR logs are products no earlier run made from other products.

The same lineage in SQL (migration 0004):

- ``alcs_lineage(start_runs bigint[])`` -> (reader_run_id, product_id, role, producer_run_id,
  depth): every product read by the start runs (depth 1) or by the runs upstream of them;
- view ``run_lineage`` (run_id, reader_run_id, input_product_id, role, producer_run_id, depth):
  `alcs_lineage` of each run;
- view ``product_lineage`` (product_id, ancestor_product_id, run_id, role, depth): each
  product's ancestors; `run_id` is the run that read the ancestor.

For example, every release file behind an exported catalog::

    SELECT a.path, a.sha256, l.depth FROM product_lineage l JOIN product a
        ON a.product_id = l.ancestor_product_id
    WHERE l.product_id = 42 AND a.ingested ORDER BY l.depth;

and every run behind the rows of source 1234 (its detection and measurement runs and all
their upstream runs)::

    WITH rows AS (SELECT run_id FROM source WHERE source_id = 1234
                  UNION SELECT run_id FROM aperture_flux WHERE source_id = 1234
                  UNION SELECT run_id FROM irac_flux WHERE source_id = 1234
                  UNION SELECT run_id FROM zout WHERE source_id = 1234)
    SELECT run_id FROM rows
    UNION SELECT producer_run_id FROM alcs_lineage(ARRAY(SELECT run_id FROM rows));

`source_lineage`, `product_lineage` and `version_lineage` collect that graph into a `Lineage`;
`render_tree` prints it as a text tree, `to_prov` as a W3C PROV document (entities: products
and row sets; activities: runs; agents: user@host).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from sqlalchemy import Connection, text

from .errors import InputError
from .fields import resolve_field
from .provenance import canonical_json, file_sha256
from .versions import ROLES, ROLE_TABLE, latest_runs, version_runs

#: tables whose rows belong to one source, in the order a source's lineage lists them
SOURCE_TABLES = ("source", "aperture_flux", "total_correction", "irac_flux", "zout", "crossmatch")
PROV_NAMESPACE = ("alcs", "urn:alcsdb:")

_RUN_COLUMNS = ("run_id", "stage", "status", "field", "started_at", "finished_at", "wall_time_s", "software_version",
                "git_commit", "package_versions", "params", "params_hash", "host", "username", "pid", "n_rows",
                "message")
_PRODUCT_COLUMNS = ("product_id", "run_id", "kind", "field", "filter", "path", "sha256", "size_bytes", "ingested",
                    "created_at")


@dataclass
class Part:
    """Rows of the subject written by one run: `table` rows (count `n_rows`), or a role of a version."""

    label: str
    run_id: int
    table: str | None = None
    n_rows: int | None = None


@dataclass
class Subject:
    kind: str  # source | product | version
    key: str  # identifier local part: "source/1234", "product/42", "version/v1.0"
    label: str  # one line for humans
    attrs: dict[str, Any]
    parts: list[Part]
    notes: list[str] = field(default_factory=list)


@dataclass
class Lineage:
    """A subject, the runs that produced it and everything upstream of them."""

    subject: Subject
    runs: dict[int, dict]  # run_id -> run row (_RUN_COLUMNS)
    products: dict[int, dict]  # product_id -> product row (_PRODUCT_COLUMNS) + "raw": [annotations]
    inputs: dict[int, list[tuple[int, str]]] = field(default_factory=dict)  # reader run -> [(product, role)]

    def made_by(self, product_id: int) -> int:
        return self.products[product_id]["run_id"]

    def outputs(self, run_id: int) -> list[int]:
        return [pid for pid, p in self.products.items() if p["run_id"] == run_id]

    def raw_inputs(self) -> list[int]:
        """Products at the end of the walk: registered by the run that read them, or made by no run we read."""
        out = []
        for reader, edges in self.inputs.items():
            for pid, _ in edges:
                producer = self.made_by(pid)
                if (producer == reader or not self.inputs.get(producer)) and pid not in out:
                    out.append(pid)
        return sorted(out)


def _collect(conn: Connection, subject: Subject, extra_products: Iterable[int] = ()) -> Lineage:
    start = sorted({p.run_id for p in subject.parts})
    edges = conn.execute(text(
        "SELECT reader_run_id, product_id, role, producer_run_id FROM alcs_lineage(CAST(:r AS bigint[])) "
        "ORDER BY reader_run_id, role, product_id"), {"r": start}).all()
    inputs: dict[int, list[tuple[int, str]]] = {}
    for reader, pid, role, _ in edges:
        inputs.setdefault(reader, []).append((pid, role))
    run_ids = set(start) | {e[0] for e in edges} | {e[3] for e in edges}
    product_ids = {e[1] for e in edges} | set(extra_products)
    runs = {r["run_id"]: dict(r) for r in conn.execute(text(
        f"SELECT {', '.join('f.name AS field' if c == 'field' else 'r.' + c for c in _RUN_COLUMNS)} "
        "FROM run r LEFT JOIN field f USING (field_id) WHERE r.run_id = ANY(:ids)"),
        {"ids": sorted(run_ids)}).mappings()}
    cols = {"field": "f.name AS field", "filter": "fl.name AS filter"}
    products = {p["product_id"]: {**p, "raw": []} for p in conn.execute(text(
        f"SELECT {', '.join(cols.get(c, 'p.' + c) for c in _PRODUCT_COLUMNS)} FROM product p "
        "LEFT JOIN field f ON f.field_id = p.field_id LEFT JOIN filter fl ON fl.filter_id = p.filter_id "
        "WHERE p.product_id = ANY(:ids)"), {"ids": sorted(product_ids)}).mappings()}
    for pid, rootname, instrument, filt, exptime in conn.execute(text(
            "SELECT e.product_id, e.rootname, e.instrument, f.name, e.exptime FROM exposure e "
            "LEFT JOIN filter f USING (filter_id) WHERE e.product_id = ANY(:ids) ORDER BY e.rootname"),
            {"ids": sorted(product_ids)}):
        products[pid]["raw"].append(f"exposure {rootname} ({instrument or '?'} {filt or '?'}, {exptime or 0:g} s)")
    for pid, aorkey, channel, n_bcd in conn.execute(text(
            "SELECT product_id, aorkey, channel, n_bcd FROM aor WHERE product_id = ANY(:ids) ORDER BY aorkey, channel"),
            {"ids": sorted(product_ids)}):
        products[pid]["raw"].append(f"AOR {aorkey} ch{channel} ({n_bcd} BCDs)")
    return Lineage(subject, runs, products, inputs)


# --- subjects ---------------------------------------------------------------------------

def resolve_source(conn: Connection, ident: int, *, field: str | None = None, version: str | None = None) -> int:
    """The source_id of `ident`: a source_id, or with `field` a catalog id in that field's detection
    run (the one `version` pins, else the field's newest)."""
    if field is None:
        if version is not None:
            raise InputError("--version needs --field (the catalog id is looked up in that field's detection run)")
        return int(ident)
    fid, fname = resolve_field(conn, field)
    if version is not None:
        _, fields = version_runs(conn, version)
        runs = next((fr.runs for fr in fields if fr.field_id == fid), None)
        if runs is None:
            raise InputError(f"version {version} has no field {fname}")
    else:
        runs = latest_runs(conn, fid)
    if "detect" not in runs:
        raise InputError(f"field {fname} has no sources")
    sid = conn.execute(text("SELECT source_id FROM source WHERE run_id = :r AND id = :i"),
                       {"r": runs["detect"], "i": int(ident)}).scalar()
    if sid is None:
        raise InputError(f"field {fname}: no source with id {ident} in detection run {runs['detect']}")
    return sid


def source_lineage(conn: Connection, source_id: int) -> Lineage:
    """Lineage of one source: its detection row and every measurement row of it, by run."""
    src = conn.execute(text("SELECT s.source_id, s.id, s.ra, s.dec, s.run_id, f.name AS field FROM source s "
                            "JOIN field f USING (field_id) WHERE s.source_id = :s"),
                       {"s": source_id}).mappings().first()
    if src is None:
        raise InputError(f"no source with source_id {source_id} (give --field F to look up a catalog id)")
    parts = []
    for table in SOURCE_TABLES:
        for run_id, n in conn.execute(text(f"SELECT run_id, count(*) FROM {table} WHERE source_id = :s "
                                           "GROUP BY run_id ORDER BY run_id"), {"s": source_id}):
            parts.append(Part(f"{table} ({n} row{'s' if n != 1 else ''})", run_id, table, n))
    subject = Subject("source", f"source/{source_id}",
                      f"source {source_id}: field {src['field']} id {src['id']} "
                      f"(ra {src['ra']:.6f}, dec {src['dec']:.6f})",
                      {"source_id": source_id, "field": src["field"], "id": src["id"], "ra": src["ra"],
                       "dec": src["dec"]}, parts)
    return _collect(conn, subject)


def resolve_product(conn: Connection, path_or_id: str) -> tuple[int, str | None]:
    """(product_id, note) of a product id or a file path (absolute after resolving).

    A path registered several times (an export re-written in place) gives the newest product
    whose sha256 is the file's current one, else the newest; the note says which and why.
    """
    if path_or_id.isdigit():
        pid = conn.execute(text("SELECT product_id FROM product WHERE product_id = :p"),
                           {"p": int(path_or_id)}).scalar()
        if pid is None:
            raise InputError(f"no product with id {path_or_id}")
        return pid, None
    path = Path(path_or_id).expanduser().resolve()
    rows = conn.execute(text("SELECT product_id, sha256 FROM product WHERE path = :p ORDER BY product_id DESC"),
                        {"p": str(path)}).all()
    if not rows:
        raise InputError(f"{path}: no product has this path (products are registered by absolute path)")
    if len(rows) == 1:
        return rows[0][0], None
    current = file_sha256(path) if path.is_file() else None
    same = [pid for pid, sha in rows if sha == current]
    chosen = same[0] if same else rows[0][0]
    why = f"product {chosen} matches the file's sha256" if same else "none matches the file now; showing the newest"
    others = ", ".join(str(pid) for pid, _ in rows if pid != chosen)
    return chosen, f"{len(rows)} products have this path; {why} (others: {others})"


def product_lineage(conn: Connection, path_or_id: str) -> Lineage:
    pid, note = resolve_product(conn, path_or_id)
    row = conn.execute(text("SELECT product_id, run_id, kind, path FROM product WHERE product_id = :p"),
                       {"p": pid}).mappings().one()
    subject = Subject("product", f"product/{pid}", f"product {pid}: {row['kind']} {row['path']}", {},
                      [Part("made by", row["run_id"])], [note] if note else [])
    return _collect(conn, subject, extra_products=[pid])


def version_lineage(conn: Connection, name: str) -> Lineage:
    """Lineage of a catalog version: per field and role, the pinned run and everything upstream."""
    version, fields = version_runs(conn, name)
    parts = [Part(f"{fr.field} {role} ({ROLE_TABLE[role]} rows)", fr.runs[role], ROLE_TABLE[role])
             for fr in fields for role in ROLES if role in fr.runs]
    subject = Subject("version", f"version/{name}",
                      f"catalog version {name}: {len(fields)} field(s), "
                      f"created {version['created_at']:%Y-%m-%d %H:%M:%S} by {version['created_by']}, "
                      f"content hash {version['content_hash']}",
                      {"name": name, "content_hash": version["content_hash"], "created_at": version["created_at"],
                       "created_by": version["created_by"], "note": version["note"]}, parts)
    return _collect(conn, subject)


# --- text tree ----------------------------------------------------------------------------

@dataclass
class _Node:
    label: str
    details: list[str] = field(default_factory=list)
    children: list["_Node"] = field(default_factory=list)


def _when(value) -> str:
    return "-" if value is None else value.strftime("%Y-%m-%d %H:%M:%S")


def _run_node(lin: Lineage, run_id: int, shown: set[int]) -> _Node:
    run = lin.runs[run_id]
    head = f"run {run_id} {run['stage']} {run['status']}" + (f" field {run['field']}" if run["field"] else "")
    if run_id in shown:
        return _Node(head + " (shown above)")
    shown.add(run_id)
    wall = f" ({run['wall_time_s']:.1f} s)" if run["wall_time_s"] is not None else ""
    details = [f"{_when(run['started_at'])} -> {_when(run['finished_at'])}{wall} by {run['username']}@{run['host']} "
               f"pid {run['pid']}",
               f"alcsdb {run['software_version']} git {run['git_commit'] or 'unknown'}",
               "packages " + ", ".join(f"{k} {v}" for k, v in sorted((run["package_versions"] or {}).items())),
               f"params {canonical_json(run['params'])}"]
    if run["n_rows"]:
        details.append("wrote " + ", ".join(f"{k} {v}" for k, v in sorted(run["n_rows"].items())))
    if run["message"]:
        details.append(f"message {run['message']}")
    node = _Node(head, details)
    for pid, role in lin.inputs.get(run_id, []):
        node.children.append(_product_node(lin, pid, f"reads {role}: ", reader=run_id, shown=shown))
    return node


def _product_node(lin: Lineage, pid: int, prefix: str, *, reader: int | None, shown: set[int]) -> _Node:
    p = lin.products[pid]
    where = " ".join(x for x in (p["field"], p["filter"]) if x)
    node = _Node(f"{prefix}product {pid} {p['kind']}{' ' + where if where else ''} {p['path']}",
                 [f"sha256 {p['sha256']} size {p['size_bytes']} bytes"] + [f"raw input: {a}" for a in p["raw"]])
    producer = p["run_id"]
    if producer == reader:
        node.details.append("raw input: registered by this run" + (" (release file)" if p["ingested"] else ""))
    else:
        node.children.append(_run_node(lin, producer, shown))
    return node


def _render(node: _Node, lines: list[str], lead: str = "", branch: str = "") -> None:
    lines.append(branch + node.label)
    for d in node.details:
        lines.append(lead + ("│   " if node.children else "    ") + d)
    for i, child in enumerate(node.children):
        last = i == len(node.children) - 1
        _render(child, lines, lead + ("    " if last else "│   "), lead + ("└── " if last else "├── "))


def render_tree(lin: Lineage) -> str:
    """The lineage as an indented tree: each run with its times, code, packages, parameters,
    host and user, then the products it read and, under each, the run that made it."""
    shown: set[int] = set()
    root = _Node(lin.subject.label)
    if lin.subject.kind == "product":
        pid = int(lin.subject.key.split("/")[1])
        root = _product_node(lin, pid, "", reader=None, shown=shown)
        root.label = lin.subject.label
    else:
        for part in lin.subject.parts:
            child = _run_node(lin, part.run_id, shown)
            root.children.append(_Node(f"{part.label} <- {child.label}", child.details, child.children))
    root.details += [f"note: {note}" for note in lin.subject.notes]
    raw = lin.raw_inputs()
    root.details.append(f"{len(lin.runs)} run(s), {len(raw)} raw input file(s)")
    lines: list[str] = []
    _render(root, lines)
    return "\n".join(lines)


# --- W3C PROV -----------------------------------------------------------------------------

def _json_attr(value: Any) -> Any:
    return value if isinstance(value, (str, int, float)) else canonical_json(value)


def to_prov(lin: Lineage):
    """The lineage as a `prov.model.ProvDocument`.

    Entities: the subject, the row sets that make it (`rows/...`, generated by their run) and
    every product (location, sha256, size); activities: runs (start and end time, stage,
    status, parameters and package versions as canonical JSON); agents: `user@host`. Relations:
    used (with the input role), wasGeneratedBy, wasDerivedFrom (every output of a run from each
    of its inputs; the subject from its row sets), wasAssociatedWith.
    """
    from prov.model import PROV_LOCATION, PROV_ROLE, PROV_TYPE, ProvDocument

    doc = ProvDocument()
    prefix, uri = PROV_NAMESPACE
    ns = doc.add_namespace(prefix, uri)

    def attrs(values: dict[str, Any]) -> dict:
        return {ns[k]: _json_attr(v) for k, v in values.items() if v is not None}

    for user, host in sorted({(run["username"], run["host"]) for run in lin.runs.values()}):
        doc.agent(ns[f"agent/{user}@{host}"], {PROV_TYPE: ns["User"], ns["user"]: user, ns["host"]: host})
    for run_id, run in sorted(lin.runs.items()):
        activity = doc.activity(ns[f"run/{run_id}"], run["started_at"], run["finished_at"], attrs({
            k: run[k] for k in ("stage", "status", "field", "software_version", "git_commit", "params",
                                "params_hash", "package_versions", "pid", "wall_time_s", "n_rows", "message")}))
        doc.wasAssociatedWith(activity, ns[f"agent/{run['username']}@{run['host']}"])
    raw = set(lin.raw_inputs())
    for pid, p in sorted(lin.products.items()):
        entity = doc.entity(ns[f"product/{pid}"], {
            PROV_TYPE: ns["RawInput" if pid in raw else "Product"], PROV_LOCATION: p["path"],
            **attrs({k: p[k] for k in ("kind", "field", "filter", "sha256", "size_bytes")}),
            **({ns["raw"]: "; ".join(p["raw"])} if p["raw"] else {})})
        doc.wasGeneratedBy(entity, ns[f"run/{p['run_id']}"])
    for reader, edges in sorted(lin.inputs.items()):
        for pid, role in edges:
            doc.used(ns[f"run/{reader}"], ns[f"product/{pid}"], other_attributes={PROV_ROLE: role})
            for out in lin.outputs(reader):
                if out != pid:
                    doc.wasDerivedFrom(ns[f"product/{out}"], ns[f"product/{pid}"])
    subject = lin.subject
    if subject.kind != "product":
        entity = doc.entity(ns[subject.key], {PROV_TYPE: ns[subject.kind.capitalize()], **attrs(subject.attrs)})
        for part in subject.parts:
            rows = doc.entity(ns[f"rows/{subject.key}/{part.table or 'run'}/run{part.run_id}"], {
                PROV_TYPE: ns["RowSet"], **attrs({"table": part.table, "n_rows": part.n_rows, "label": part.label})})
            doc.wasGeneratedBy(rows, ns[f"run/{part.run_id}"])
            doc.wasDerivedFrom(entity, rows)
            for pid, role in lin.inputs.get(part.run_id, []):
                doc.wasDerivedFrom(rows, ns[f"product/{pid}"])
    return doc


def prov_json(lin: Lineage, indent: int = 1) -> str:
    """PROV-JSON (https://www.w3.org/submissions/prov-json/) of the lineage."""
    return to_prov(lin).serialize(format="json", indent=indent)


def as_dict(lin: Lineage) -> dict:
    """Plain JSON-able form (for tests and scripts): subject, runs, products, inputs."""
    return json.loads(json.dumps({
        "subject": {"kind": lin.subject.kind, "key": lin.subject.key, "label": lin.subject.label,
                    "parts": [vars(p) for p in lin.subject.parts]},
        "runs": lin.runs, "products": lin.products,
        "inputs": {r: [{"product_id": p, "role": role} for p, role in e] for r, e in lin.inputs.items()},
        "raw_inputs": lin.raw_inputs()}, default=str))
