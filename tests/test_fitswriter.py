"""The FITS table writer gives the bytes astropy writes for the same columns and cards."""
from __future__ import annotations

import hashlib
import warnings

import numpy as np
import pytest
from astropy.io import fits

from alcsdb.fitswriter import Column, encode_checksum, ones_complement_sum, write_table

WHEN = "2026-01-02T03:04:05"
CARDS = [("CLUSTER", "Abell 2744", "cluster name"), ("Z_CLUS", 0.308, "cluster redshift"),
         ("CONTHASH", "ab" * 32, "sha256 of the version's rows"), ("RUN_DET", 7, "run id of the detect rows"),
         ("DATE", WHEN, "version creation time (UTC)"), ("HIERARCH EAZY Z_STEP", 0.005, "EAZY parameter"),
         ("HIERARCH EAZY PRIOR_FILE", "templates/prior_F160W_TAO.dat", "EAZY parameter")]


def astropy_bytes(path, columns, cards, when=WHEN):
    """What `export` wrote with astropy alone (the reference)."""
    cols = [fits.Column(name=c.name, format=c.tform, unit=c.unit, array=c.array.astype(c.big_endian))
            for c in columns]
    hdu = fits.BinTableHDU.from_columns(cols, name="CATALOG")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fits.verify.VerifyWarning)  # long comments are truncated
        for key, value, comment in cards:
            hdu.header[key] = (value, comment)
        primary = fits.PrimaryHDU()
        for h in (primary, hdu):
            h.add_checksum(when=when)
        fits.HDUList([primary, hdu]).writeto(path, overwrite=True)
    return path.read_bytes()


def table(rows, rng):
    return [
        Column("id", np.arange(1, rows + 1, dtype=np.int32)),
        Column("ra", rng.uniform(0, 360, rows), "deg"),
        Column("npix", rng.integers(-(2 ** 40), 2 ** 40, rows), "pix2"),
        Column("flag", rng.integers(-99, 300, rows).astype(np.int16)),
        Column("flux", np.where(rng.random(rows) < 0.2, -99.0, rng.normal(0, 10, rows)), "uJy"),
        Column("weight", rng.random(rows).astype(np.float32)),
        Column("massp", rng.normal(9, 1, (rows, 5)), "solMass"),
        Column("big_endian_already", rng.normal(0, 1, rows).astype(">f8"), "mag"),
        Column("o'quote", rng.normal(0, 1, rows), "erg / (s cm2 Angstrom) " * 4),  # astropy formats these cards
    ]


@pytest.mark.parametrize("rows", [0, 1, 3, 1000])
def test_bytes_match_astropy(tmp_path, rows):
    columns = table(rows, np.random.default_rng(rows))
    sha = write_table(tmp_path / "mine.fits", columns, CARDS, extname="CATALOG", when=WHEN)
    mine = (tmp_path / "mine.fits").read_bytes()
    assert mine == astropy_bytes(tmp_path / "astropy.fits", columns, CARDS)
    assert sha == hashlib.sha256(mine).hexdigest()
    assert not list(tmp_path.glob(".*.tmp"))


def test_file_opens_and_verifies_in_astropy(tmp_path):
    columns = table(500, np.random.default_rng(1))
    path = tmp_path / "t.fits"
    write_table(path, columns, CARDS, extname="CATALOG", when=WHEN)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a wrong CHECKSUM or DATASUM is a warning in astropy
        with fits.open(path, checksum=True) as hdul:
            data = hdul["CATALOG"].data
            for col in columns:
                assert np.array_equal(data[col.name], col.array)
            assert hdul[1].header["TUNIT2"] == "deg" and hdul[1].header["EAZY Z_STEP"] == 0.005


def test_checksum_arithmetic_matches_astropy():
    hdu = fits.PrimaryHDU()
    rng = np.random.default_rng(3)
    for data in (np.zeros(2880, np.uint8), np.full(2880, 255, np.uint8), rng.integers(0, 256, 2880 * 7, np.uint8)):
        assert ones_complement_sum(data) == int(hdu._compute_checksum(data))
        assert ones_complement_sum(data, 12345) == int(hdu._compute_checksum(data, 12345))
    values = [0, 1, 0xFFFFFFFF, 0x3A3B3C3D, 0x5B5C5D5E, *rng.integers(0, 2 ** 32, 300).tolist()]
    for value in values:
        assert encode_checksum(value) == hdu._char_encode(value)
    with pytest.raises(ValueError):
        ones_complement_sum(np.zeros(6, np.uint8))
