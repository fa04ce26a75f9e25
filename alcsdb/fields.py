"""Fields: look-up by any of the names the release uses, and adding new fields."""
from __future__ import annotations

import math
import re

from sqlalchemy import Connection, text

from .errors import InputError

_FIELD_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}$")


def normalise_root(name: str) -> str:
    """`hff-j001408m3023`, `A2744_hff-j001408m3023` and `j001408m3023` all give `j001408m3023`."""
    name = name.strip()
    if "_" in name:  # IRAC roots: CLUSTER_hstroot
        name = name.split("_", 1)[1]
    return name[4:] if name.lower().startswith("hff-") else name


def resolve_field(conn: Connection, name: str) -> tuple[int, str]:
    """(field_id, name) of a field given its name, HST root or IRAC root; InputError if unknown."""
    row = conn.execute(
        text("SELECT field_id, name FROM field WHERE name = :n OR hst_root = :n OR irac_root = :n "
             "OR name = :norm ORDER BY (name = :n) DESC LIMIT 1"),
        {"n": name, "norm": normalise_root(name)},
    ).first()
    if row is None:
        # the release's file lists truncate some roots (hff-j224900m443 for hff-j224900m4432)
        norm = normalise_root(name)
        if len(norm) >= 11:
            rows = conn.execute(text("SELECT field_id, name FROM field WHERE name LIKE :p"),
                                {"p": norm.replace("%", "").replace("_", "") + "%"}).all()
            if len(rows) == 1:
                row = rows[0]
    if row is None:
        raise InputError(f"unknown field {name!r}: see `alcsdb fields list`, or add it with `alcsdb fields add`")
    return int(row[0]), str(row[1])


def add_field(conn: Connection, name: str, ra: float, dec: float, *, hst_root: str | None = None,
              irac_root: str | None = None, cluster: str | None = None, survey: str | None = None,
              z_cluster: float | None = None, ebv: float | None = None) -> int:
    if not _FIELD_NAME.match(name or ""):
        raise InputError(f"invalid field name {name!r}: letters, digits and _.+- only, at most 64 characters")
    if not (math.isfinite(ra) and math.isfinite(dec)) or not (0 <= ra < 360) or not (-90 <= dec <= 90):
        raise InputError(f"field {name}: position ({ra}, {dec}) out of range (0 <= ra < 360, |dec| <= 90)")
    for label, value in (("--z", z_cluster), ("--ebv", ebv)):
        if value is not None and (not math.isfinite(value) or value < 0):
            raise InputError(f"field {name}: {label} must be a non-negative number, got {value}")
    exists = conn.execute(text("SELECT name FROM field WHERE name = :n OR hst_root = :r"),
                          {"n": name, "r": hst_root or name}).scalar()
    if exists:
        raise InputError(f"field {name!r} already exists (as {exists})")
    return conn.execute(
        text("INSERT INTO field (name, hst_root, irac_root, cluster, survey, ra, dec, z_cluster, ebv) "
             "VALUES (:n, :hr, :ir, :c, :s, :ra, :dec, :z, :ebv) RETURNING field_id"),
        {"n": name, "hr": hst_root or name, "ir": irac_root, "c": cluster or name, "s": survey, "ra": ra,
         "dec": dec, "z": z_cluster, "ebv": ebv},
    ).scalar_one()
