"""Write a FITS binary table straight from column arrays, with CHECKSUM and DATASUM.

The bytes are those astropy writes for ``HDUList([PrimaryHDU(), BinTableHDU.from_columns(cols,
name=extname)])`` with the same header cards and ``add_checksum(when=...)`` on both HDUs
(`tests/test_fitswriter.py` compares the two byte for byte), without astropy's per-column work:
the column cards are formatted directly, each column is copied once into a row-major buffer
(big-endian, converted on the fly), the data checksum is one vectorised ones'-complement sum,
and the file's sha256 is computed from the bytes as they are written. On a release-sized table
(883 columns x 30,000 rows, 194 MB) this takes about a third of astropy's time.
"""
from __future__ import annotations

import hashlib
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
from astropy.io import fits

BLOCK = 2880
TFORM_CODE = {"f8": "D", "f4": "E", "i2": "I", "i4": "J", "i8": "K"}
"""FITS TFORM letter of each numpy dtype the release uses."""


@dataclass(frozen=True)
class Column:
    """One table column: `array` of shape (rows,) or (rows, repeat); `unit` the TUNIT or None."""

    name: str
    array: np.ndarray
    unit: str | None = None

    @property
    def repeat(self) -> int:
        return int(np.prod(self.array.shape[1:], dtype=np.int64)) if self.array.ndim > 1 else 1

    @property
    def big_endian(self) -> np.dtype:
        return self.array.dtype.newbyteorder(">")

    @property
    def tform(self) -> str:
        code = TFORM_CODE[self.array.dtype.str[1:]]
        return f"{self.repeat}{code}" if self.repeat > 1 else code


def ones_complement_sum(data: np.ndarray, sum32: int = 0) -> int:
    """The FITS checksum convention's 32-bit ones'-complement sum of big-endian words (bytes, len % 4 == 0)."""
    if data.nbytes % 4:
        raise ValueError("FITS checksums are taken over whole 32-bit words")
    s = int(sum32) + int(data.view(">u4").sum(dtype=np.uint64))  # < 2**64 for any file under 16 GB
    while s >> 32:
        s = (s & 0xFFFFFFFF) + (s >> 32)
    return s


_EXCLUDE = frozenset(b":;<=>?@[\\]^_`")


def encode_checksum(value: int) -> str:
    """The 16-character ASCII encoding of a 32-bit checksum (FITS checksum convention, section A.7.2)."""
    asc = bytearray(16)
    for i in range(4):
        byte = (value >> (8 * (3 - i))) & 0xFF
        quotient, remainder = byte // 4 + ord("0"), byte % 4
        ch = [quotient + remainder, quotient, quotient, quotient]
        changed = True
        while changed:
            changed = False
            for j in (0, 2):
                while ch[j] in _EXCLUDE or ch[j + 1] in _EXCLUDE:
                    ch[j] += 1
                    ch[j + 1] -= 1
                    changed = True
        for j in range(4):
            asc[4 * j + i] = ch[j]
    return bytes(asc[(i + 15) % 16] for i in range(16)).decode("ascii")


def _string_card(key: str, value: str) -> str:
    """The image of a `KEY = 'value'` card without comment, formatted as astropy formats it.

    Written by hand for the table's TTYPE/TFORM/TUNIT cards: astropy's Header costs ~1 s for the
    2,600 cards of a release table (O(n^2) index updates); anything unusual goes to astropy.
    """
    if len(value) > 60 or "'" in value or not value.isascii() or not value.isprintable() or value.endswith(" "):
        return fits.Card(key, value).image
    quoted = f"'{value:8}'"
    return f"{key:8}= {quoted:20}".ljust(80)


def _checksummed(cards: str, tail: fits.Header, datasum: int, when: str) -> bytes:
    """The header `cards` + `tail` + END, padded, with DATASUM and CHECKSUM appended to `tail` as
    astropy's `add_checksum(when=...)` sets them."""
    tail["DATASUM"] = (str(datasum), when)
    tail.set("CHECKSUM", "0" * 16, when, before="DATASUM")

    def text() -> bytes:
        body = cards + tail.tostring(endcard=False, padding=False) + "END".ljust(80)
        return body.ljust(-(-len(body) // BLOCK) * BLOCK).encode("ascii")

    total = ones_complement_sum(np.frombuffer(text(), dtype=np.uint8), datasum)
    tail["CHECKSUM"] = encode_checksum(~total & 0xFFFFFFFF)
    return text()


def table_header(columns: Sequence[Column], rows: int) -> str:
    """The card images astropy's `from_columns` starts a BINTABLE header with (before EXTNAME)."""
    width = sum(c.big_endian.itemsize * c.repeat for c in columns)
    head = fits.Header([
        ("XTENSION", "BINTABLE", "binary table extension"), ("BITPIX", 8, "array data type"),
        ("NAXIS", 2, "number of array dimensions"), ("NAXIS1", width, "length of dimension 1"),
        ("NAXIS2", rows, "length of dimension 2"), ("PCOUNT", 0, "number of group parameters"),
        ("GCOUNT", 1, "number of groups"), ("TFIELDS", len(columns), "number of table fields")])
    images = [head.tostring(endcard=False, padding=False)]
    for k, col in enumerate(columns, start=1):
        images += [_string_card(f"TTYPE{k}", col.name), _string_card(f"TFORM{k}", col.tform)]
        if col.unit:
            images.append(_string_card(f"TUNIT{k}", col.unit))
    return "".join(images)


def table_data(columns: Sequence[Column], rows: int) -> np.ndarray:
    """The data unit: rows in FITS order (big-endian), zero-padded to whole 2880-byte blocks, as uint8."""
    dtype = np.dtype([(f"c{k}", c.big_endian, c.array.shape[1:]) for k, c in enumerate(columns)])
    size = dtype.itemsize * rows
    block = np.zeros(-(-size // BLOCK) * BLOCK, dtype=np.uint8)
    table = block[:size].view(dtype)
    for k, col in enumerate(columns):
        if len(col.array) != rows:
            raise ValueError(f"column {col.name} has {len(col.array)} rows, expected {rows}")
        table[f"c{k}"] = col.array
    return block


def write_table(path: Path, columns: Sequence[Column], cards: Iterable[tuple[str, object, str]] = (), *,
                extname: str, when: str) -> str:
    """Write an empty primary HDU and one binary table; returns the file's sha256 (hex).

    `when` is the comment of the CHECKSUM/DATASUM cards (astropy's `add_checksum(when=...)`), so that the
    bytes depend only on the arguments. The file is written beside `path` and renamed into place.
    """
    path = Path(path)
    rows = len(columns[0].array) if columns else 0
    data = table_data(columns, rows)
    primary = fits.Header([("SIMPLE", True, "conforms to FITS standard"), ("BITPIX", 8, "array data type"),
                           ("NAXIS", 0, "number of array dimensions"), ("EXTEND", True)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fits.verify.VerifyWarning)  # long comments are truncated, as astropy does
        tail = fits.Header([("EXTNAME", extname, "extension name")])
        for key, value, comment in cards:
            tail[key] = (value, comment)
        chunks = [_checksummed("", primary, 0, when),
                  _checksummed(table_header(columns, rows), tail, ones_complement_sum(data), when), data]
    digest = hashlib.sha256()
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            for chunk in chunks:
                digest.update(chunk)
                fh.write(chunk)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return digest.hexdigest()
