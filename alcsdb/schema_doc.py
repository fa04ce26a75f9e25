"""Write docs/schema.md from the models' comments: `python -m alcsdb.schema_doc > docs/schema.md`.

A test checks the committed file is what this prints, so the documentation cannot drift.
"""
from __future__ import annotations

import sys

from sqlalchemy.dialects import postgresql

from .schema import SOURCE_FLOAT_COLUMNS, SOURCE_INT_COLUMNS, ZOUT_FLOAT_COLUMNS, ZOUT_INT_COLUMNS, Base

RELEASE_NOTE = {
    "source": "Release detection columns (sep; `phot_apcorr_columns.md`): pixel quantities in detection-image "
              "pixels, fluxes in microJansky.",
    "zout": "Release `zout_columns.md` columns, names lower-cased (restU -> restu, SFRp -> sfrp).",
}


def render() -> str:
    out = ["# alcsdb schema", "",
           "Generated from `alcsdb/schema.py` by `python -m alcsdb.schema_doc`; do not edit by hand.", "",
           "Fluxes are microJansky (AB zeropoint 23.9), positions ICRS degrees, missing values SQL NULL "
           "(-99 in exported FITS). Every measurement row carries the `run_id` of the run that wrote it.", ""]
    for table in Base.metadata.sorted_tables:
        out += [f"## `{table.name}`", ""]
        doc = (table.comment or "").strip()
        model = next((m.class_ for m in Base.registry.mappers if m.local_table is table), None)
        if model is not None and model.__doc__:
            doc = " ".join(model.__doc__.split())
        if doc:
            out += [doc, ""]
        if table.name in RELEASE_NOTE:
            out += [RELEASE_NOTE[table.name], ""]
        out += ["| column | type | null | description |", "|---|---|---|---|"]
        release = set(SOURCE_FLOAT_COLUMNS + SOURCE_INT_COLUMNS + ZOUT_FLOAT_COLUMNS + ZOUT_INT_COLUMNS)
        for col in table.columns:
            desc = col.comment or ("release column of the same name" if col.name in release else "")
            if col.foreign_keys:
                fk = next(iter(col.foreign_keys))
                desc = (desc + "; " if desc else "") + f"references `{fk.column.table.name}.{fk.column.name}`"
            key = " (key)" if col.primary_key else ""
            out.append(f"| `{col.name}`{key} | {col.type.compile(dialect=postgresql.dialect())} | {'yes' if col.nullable else 'no'} | {desc} |")
        out.append("")
    return "\n".join(out)


if __name__ == "__main__":
    sys.stdout.write(render())
