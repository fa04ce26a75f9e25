"""alcsdb.columns against the release documentation (alcs-docs) and the real file list."""
from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import astropy.units as u
import pytest

from alcsdb import columns as C
from alcsdb.config import ConfigError, shared_path


def doc(name: str) -> Path:
    try:
        return shared_path("alcs-docs", name)
    except ConfigError as exc:
        pytest.skip(f"release documentation not available: {exc}")


def table_names(path: Path) -> list[str]:
    """Column names of a release md table, in order: the ``name`` in each row's first cell."""
    names = []
    for line in path.read_text().splitlines():
        m = re.match(r"^\|\s*``([^`]+)``\s*\|", line)
        if m:
            names.append(m.group(1))
    return names


def sections(path: Path) -> dict[str, list[str]]:
    """phot_apcorr_columns.md split at its bold section rows (`| | **title** |`)."""
    out: dict[str, list[str]] = {}
    current = None
    for line in path.read_text().splitlines():
        title = re.match(r"^\|\s*\|\s*\*\*(.+?)\*\*", line)
        if title:
            current = title.group(1).strip()
            out[current] = []
            continue
        m = re.match(r"^\|\s*``([^`]+)``\s*\|", line)
        if m and current:
            out[current].append(m.group(1))
    return out


def test_detection_columns_are_the_docs_then_aperture_major_blocks():
    sec = sections(doc("phot_apcorr_columns.md"))
    det = next(v for k, v in sec.items() if k.startswith("Columns derived"))
    literal = [n for n in det if "{" not in n]
    templates = [n for n in det if "{" in n]
    assert templates == [f"{q}_aper_{{ap}}" for q in ("flux", "fluxerr", "flag", "bkg", "mask")]
    # master_columns.md spells the detection apertures out: all five quantities of one
    # aperture, then the next aperture
    master = [n for n in table_names(doc("master_columns.md")) if re.fullmatch(r"[a-z]+_aper_\d", n)]
    expanded = [t.format(ap=i) for i in range(7) for t in templates]
    assert master == expanded
    assert list(C.DETECTION_COLUMNS) == literal + expanded
    assert C.aperture_columns() == expanded


@pytest.mark.parametrize("filters", [["f814w", "f160w"], ["f105w", "f350lp", "f098m", "f606wu"]])
def test_phot_apcorr_columns_expand_the_doc_templates(filters):
    sec = sections(doc("phot_apcorr_columns.md"))
    det, hst, irac, other = (next(v for k, v in sec.items() if k.startswith(p))
                             for p in ("Columns derived", "Aperture measurements", "IRAC", "Other"))
    # the doc writes {filt}_corr{ap} once; its own formula and every sibling say {filt}_corr_{ap}
    assert "{filt}_corr{ap}" in hst
    hst = [t.replace("{filt}_corr{ap}", "{filt}_corr_{ap}") for t in hst]
    aper = [t for t in hst if t.startswith("{filt}_") and "_aper_" in t]
    totcorr = [t for t in hst if "{ap}" not in t]
    apcorr = [t for t in hst if t.startswith("apcorr_")]
    corr = [t for t in hst if t not in aper + totcorr + apcorr]
    assert totcorr == ["{filt}_tot_corr"] and apcorr == ["apcorr_{ap}"]
    assert corr == ["{filt}_corr_{ap}", "{filt}_ecorr_{ap}", "{filt}_tot_{ap}", "{filt}_etot_{ap}"]

    expected = [n for n in det if "{" not in n]
    expected += [t.format(ap=i) for i in range(7) for t in det if "{" in t]
    for f in filters:
        expected += [t.format(filt=f, ap=i) for i in range(7) for t in aper] + [totcorr[0].format(filt=f)]
    for i in range(7):
        expected += [f"apcorr_{i}"] + [t.format(filt=f, ap=i) for f in filters for t in corr]
    assert C.phot_apcorr_columns(filters) == expected + irac + other
    assert C.phot_apcorr_columns(filters, with_irac=False) == expected + other
    assert C.IRAC_CHANNELS == (1, 2) and irac == C.irac_columns(1) + C.irac_columns(2)


def test_zout_columns_are_the_docs():
    assert list(C.ZOUT_COLUMNS) == table_names(doc("zout_columns.md"))
    assert C.ZOUT_VECTOR_COLUMNS == ("massp", "SFRp", "sSFRp", "LIRp")
    assert all(s.shape == (len(C.ZOUT_PERCENTILES),) for s in C.ZOUT_SPECS if s.name in C.ZOUT_VECTOR_COLUMNS)
    master = doc("master_columns.md").read_text()
    listed = re.findall(r"Percentiles of \w+ \[([\d.,]+)\]", master)
    assert listed and {tuple(float(x) for x in p.split(",")) for p in listed} == {C.ZOUT_PERCENTILES}


def test_zout_sql_names_are_the_schema_columns():
    from alcsdb import schema

    assert C.ZOUT_SQL_NAME["restU"] == "restu" and C.ZOUT_SQL_NAME["line_EW_Ha"] == "line_ew_ha"
    sql = set(C.ZOUT_SQL_NAME.values())
    assert len(sql) == len(C.ZOUT_COLUMNS)
    stored = set(schema.ZOUT_INT_COLUMNS + schema.ZOUT_FLOAT_COLUMNS + schema.ZOUT_ARRAY_COLUMNS)
    assert sql - {"id", "ra", "dec"} == stored
    assert {C.ZOUT_SQL_NAME[n] for n in C.ZOUT_VECTOR_COLUMNS} == set(schema.ZOUT_ARRAY_COLUMNS)


def test_detection_dtypes_agree_with_the_schema():
    from alcsdb import schema

    sep_cols = [n for n in C.DETECTION_COLUMNS if "_aper_" not in n]
    kept = sep_cols + list(C.OTHER_COLUMNS[:4])  # dr_nn, dmag_nn, id_nn, z_spec are stored too
    sql = {C.PHOT_SQL_RENAMES.get(n, n): n for n in kept}
    stored = set(schema.SOURCE_INT_COLUMNS + schema.SOURCE_FLOAT_COLUMNS) | {"id", "ra", "dec", "x", "y",
                                                                             "x_image", "y_image"}
    assert set(sql) - stored == {"x_world", "y_world"}  # duplicates of ra, dec
    assert stored <= set(sql)
    for name in schema.SOURCE_INT_COLUMNS:
        assert C.phot_column_spec(sql[name]).dtype.startswith("i"), name
    for name in schema.SOURCE_FLOAT_COLUMNS:
        assert C.phot_column_spec(sql[name]).dtype.startswith("f"), name


def test_units_are_valid_fits_units():
    specs = [C.phot_column_spec(n) for n in C.phot_apcorr_columns(["f160w"])] + list(C.ZOUT_SPECS)
    specs += list(C.AOR_LOG_SPECS)
    for s in specs:
        if s.unit:
            u.Unit(s.unit, format="fits")
    assert C.phot_column_spec("f160w_tot_2").unit == "uJy"
    assert C.phot_column_spec("f160w_flag_aper_0").dtype == "i2"
    assert C.phot_column_spec("ra").unit == "deg" and C.phot_column_spec("dr_nn").unit == "arcsec"
    with pytest.raises(KeyError):
        C.phot_column_spec("f160w_flux_aper_7")


def test_check_filters_rejects_bad_names():
    assert C.check_filters(["f160w", "f350lpu", "f098m", "fq232n"]) == ("f160w", "f350lpu", "f098m", "fq232n")
    for bad in (["F160W"], ["ch1"], ["f160w", "f160w"], ["det"]):
        with pytest.raises(ValueError):
            C.phot_apcorr_columns(bad)


def test_parse_phot_columns_discovers_filters_and_extras():
    filters = ["f435w", "f350lp", "f098m", "f160w", "f606wu"]
    names = C.phot_apcorr_columns(filters) + ["class_valid", "number"]
    layout = C.parse_phot_columns(names)
    assert layout.filters == tuple(filters)
    assert layout.apertures == tuple(range(7))
    assert layout.irac_channels == (1, 2) and layout.has_irac and layout.has_corr
    assert layout.extra == ("class_valid", "number")
    assert layout.required_missing() == []

    plain = C.parse_phot_columns(C.phot_apcorr_columns(["f160w"], with_irac=False))
    assert not plain.has_irac and plain.filters == ("f160w",)


def test_required_missing_names_partial_blocks():
    names = C.phot_apcorr_columns(["f814w", "f160w"])
    drop = {"f160w_fluxerr_aper_3", "id", "irac_ch2_err", "f814w_etot_5", "apcorr_1", "f814w_tot_corr"}
    layout = C.parse_phot_columns([n for n in names if n not in drop])
    assert set(layout.required_missing()) == drop
    # order of the report follows the release's column order
    assert layout.required_missing() == [n for n in layout.expected_columns() if n in drop]


def test_required_missing_when_a_filter_lacks_an_aperture_or_uses_the_doc_typo():
    names = [n for n in C.phot_apcorr_columns(["f814w", "f160w"]) if not n.startswith("f814w_") or "_6" not in n]
    layout = C.parse_phot_columns(names)
    assert set(layout.required_missing()) == {f"f814w_{q}_aper_6" for q in C.APERTURE_QUANTITIES} | {
        f"f814w_{q}_6" for q in C.CORR_QUANTITIES}
    typo = [("f160w_corr2" if n == "f160w_corr_2" else n) for n in C.phot_apcorr_columns(["f160w"])]
    layout = C.parse_phot_columns(typo)
    assert layout.extra == ("f160w_corr2",) and layout.required_missing() == ["f160w_corr_2"]


def test_parse_phot_columns_is_case_insensitive_and_reports_spelling():
    upper = [n.upper() for n in C.phot_apcorr_columns(["f160w"])]
    layout = C.parse_phot_columns(upper + ["id"])
    assert layout.filters == ("f160w",) and layout.required_missing() == []
    assert layout.column("f160w_flux_aper_2") == "F160W_FLUX_APER_2"
    assert layout.extra == ("id",)  # a second spelling of ID
    assert C.parse_phot_columns(["ra", "dec"]).required_missing() == ["id"]


def _expected_kind(name: str) -> str:
    """Kind of a release file name, from its ending (independent of columns.py's patterns)."""
    for ending, kind in (("_irac_phot_apcorr.fits", "phot_apcorr"), ("_fake_irac_phot.fits", "ignored"),
                         ("_irac_phot.fits", "irac_phot"), ("_phot.fits", "phot"),
                         (".eazypy.zout.fits", "zout"), ("_cat_combined.fits", "cat_combined"),
                         ("-ch1.log.fits", "aor_log"), ("-ch2.log.fits", "aor_log"), (".log.fits", "ignored"),
                         ("_drz_sci.fits", "irac_sci"), ("_drz_wht.fits", "irac_wht"),
                         ("_model.fits", "irac_model"), ("_residual.fits", "irac_residual"),
                         ("_components.fits", "irac_components"), ("files.txt", "ignored"), (".pdf", "ignored")):
        if name.endswith(ending):
            return kind
    raise AssertionError(f"test does not know {name}")


def test_every_file_of_the_real_release_list_is_recognised_or_ignored():
    per_dir: dict[str, Counter] = {}
    n = 0
    text = doc("all_files.v0.1.txt").read_text()
    for line in text.splitlines():
        if not line.startswith("http"):
            continue
        n += 1
        directory, name = line.split("/")[-3], line.split("/")[-1]
        parsed = C.parse_root(name)
        assert parsed.kind == _expected_kind(name), name
        assert parsed.kind in C.FILE_KINDS
        if parsed.kind == "aor_log":
            m = re.fullmatch(r"r(\d+)-ch(\d)\.log\.fits", name)
            assert parsed.extra == {"aorkey": int(m[1]), "channel": int(m[2])}
        elif parsed.kind == C.IGNORED:
            assert parsed.extra["reason"]
        elif parsed.kind in ("irac_sci", "irac_wht", "irac_model", "irac_residual", "irac_components"):
            assert parsed.extra["channel"] == int(re.search(r"ch(\d)", name)[1])
            assert C.match_field(directory, [parsed.root]) == parsed.root  # hff-j224900m443 -> j224900m4432
        else:
            assert C.match_field(directory, [parsed.root]) == parsed.root
        per_dir.setdefault(directory, Counter())[parsed.kind] += 1
    assert n == text.count("\nhttp") and len(per_dir) == text.count("\n# ") + 1
    for directory, kinds in per_dir.items():
        for kind in ("phot_apcorr", "zout", "phot", "irac_phot", "cat_combined"):
            assert kinds[kind] == 1, (directory, kind)
        assert kinds["irac_sci"] == kinds["irac_wht"] == kinds["irac_model"] == 2
    # j230824m0212 (Abell 2537) ships no AOR logs
    assert sum(k["aor_log"] for k in per_dir.values()) == len(re.findall(r"-ch[12]\.log\.fits$", text, re.M))


def test_readme_file_names_are_recognised():
    text = doc("README.md").read_text()
    names = {n.strip() for n in re.findall(r"``([^`\[]+\.fits)\s*``", text)}
    names |= {m.rsplit("/", 1)[-1] for m in re.findall(r"\((https://alcs-data[^)\s]+\.fits)\s*\)", text)}
    assert len(names) > 15
    kinds = {n: C.parse_root(n).kind for n in names}
    assert C.IGNORED not in kinds.values()
    assert kinds["hff-j001408m3023-det_drz_sci.fits"] == "det_sci"
    assert kinds["hff-j001408m3023-det_seg.fits"] == "seg"
    assert kinds["hff-j001408m3023-f814w_drc_wht.fits"] == "hst_wht"
    assert kinds["j001408m3023_ch1_components.fits"] == "irac_components"
    assert kinds["hff-j001408m3023-ch2_model.fits"] == "irac_model"
    assert kinds["j001408m3023_master.fits"] == "master"


@pytest.mark.parametrize("name, expected", [
    ("j001420m3024-ir_drz_sci.fits.gz", ("j001420m3024", "det_sci", {"filter": "det"})),
    ("j001420m3024-ir_seg.fits.gz", ("j001420m3024", "seg", {"filter": "det"})),
    ("j001420m3024-f160w_psf.fits", ("j001420m3024", "hst_psf", {"filter": "f160w"})),
    ("hff-j001408m3023-f350lpu_drc_sci.fits.gz", ("hff-j001408m3023", "hst_sci", {"filter": "f350lpu"})),
    ("/data/rel/r12655872-mips1.log.fits", (None, "ignored", {"aorkey": 12655872, "band": "mips1"})),
])
def test_parse_root_variants(name, expected):
    root, kind, extra = C.parse_root(name)
    extra.pop("reason", None)
    assert (root, kind, extra) == expected


@pytest.mark.parametrize("name", ["j001408m3023_photometry.fits", "j001408m3023-ch5_drz_sci.fits",
                                  "j001408m3023-F160W_drz_sci.fits", "r1234-ch1.log"])
def test_parse_root_rejects_other_names(name):
    with pytest.raises(ValueError):
        C.parse_root(name)


def test_match_field_against_fields_md():
    roots = re.findall(r"\|\s*\[((?:hff-)?j\d{6}[mp]\d{4})\]\(https://alcs-data.s3.amazonaws.com/HST",
                       doc("fields.md").read_text())
    assert len(roots) == 33
    assert C.match_field("hff-j224900m443", roots) == "hff-j224900m4432"  # truncated in all_files
    assert C.match_field("j001408m3023", roots) == "hff-j001408m3023"
    assert C.match_field("hff-j001408m3023", [C.field_key(r) for r in roots]) == "j001408m3023"
    unmatched = set()
    for line in doc("all_files.v0.1.txt").read_text().splitlines():
        if line.startswith("# "):
            directory = line.split(" / ")[1].split()[0]
            try:
                C.match_field(directory, roots)
            except ValueError:
                unmatched.add(directory)
    # the cluster-only mosaics of the three HFF clusters have roots fields.md does not list
    assert unmatched == {"j001420m3024", "j224844m4432", "j023952m0135"}
    with pytest.raises(ValueError, match="several"):
        C.match_field("j224900m443", ["j224900m4432", "j224900m4433"])
    with pytest.raises(ValueError):
        C.match_field("j", roots)
