"""exact cone search in SQL: HEALPix helpers, pixel-range covering of a cone, alcs_cone_search()

Revision ID: 0002_cone_search
Revises: 0001_initial

SQL functions (plain SQL and PL/pgSQL, no extension), mirroring `alcsdb/healpix.py` step by
step (same constants, same floating-point operations; the module docstring there proves that
the covering is complete):

- ``alcs_angdist_arcsec(ra1, dec1, ra2, dec2)``: haversine great-circle distance, arcsec.
- ``alcs_cone_range(ra, dec, radius_arcsec, lo, hi)``: the sources of one hpx29 range within
  the radius (one index range scan; alcsdb.query's prepared statement uses it too).
- ``alcs_hpx_loc(ra, dec)``: HEALPix (face, p, q, region) before pixel rounding (healpix_cxx).
- ``alcs_hpx_ang2pix(order, ra, dec)``: NESTED index, equal to healpy's ang2pix.
- ``alcs_hpx_disc_ranges(ra, dec, radius_arcsec)``: half-open order-29 ranges [lo, hi)
  covering a cone (every row within the radius has its hpx29 in one of them).
- ``alcs_cone_search(ra_deg, dec_deg, radius_arcsec)``: rows of `source` (all fields) within
  the radius, by exact distance: TABLE (source_id, field, ra, dec, distance_arcsec).
"""
import math

from alembic import op

revision = "0002_cone_search"
down_revision = "0001_initial"
branch_labels = None
depends_on = None

# Constants shared with alcsdb/healpix.py (a migration is frozen: they are written out here).
LF = "1.52425"  # face units per radian, upper bound of HEALPix's forward map stretch
LAMBDA = "1.59620"  # radians per face unit, upper bound of the inverse map stretch
MARGIN_RAD = "1e-9"
EQUATORIAL_ZONE_DEG = repr(math.asin(2.0 / 3.0) / 0.017453292519943295)
SNAP_DEG = "1e-30"
ARCSEC_PER_RAD = "206264.80624709636"
RAD_PER_DEG = "0.017453292519943295"
HALF_RAD_PER_DEG = "0.008726646259971648"
BASE_PIXEL_ARCSEC = "211076.0"
YBITS = str(int("10" * 32, 2) - (1 << 64))  # 0xAAAA...AAAA as a signed bigint
SPREAD8 = ",".join(str(sum(((i >> b) & 1) << (2 * b) for b in range(8))) for i in range(256))

FUNCTIONS = [
    ("alcs_snap(double precision)", f"""
CREATE FUNCTION alcs_snap(x double precision) RETURNS double precision
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE WHEN abs(x) < {SNAP_DEG} THEN 0 ELSE x END;
COMMENT ON FUNCTION alcs_snap(double precision)
  IS 'a coordinate within {SNAP_DEG} deg of 0 taken as 0 (PostgreSQL raises on float underflow), as alcsdb.healpix.snap';
"""),
    ("alcs_hav(double precision, double precision, double precision, double precision)", """
CREATE FUNCTION alcs_hav(sin_half_ddec double precision, sin_half_dra double precision,
                         cos_dec1 double precision, cos_dec2 double precision)
RETURNS double precision LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN sin_half_ddec * sin_half_ddec + cos_dec1 * cos_dec2 * (sin_half_dra * sin_half_dra);
COMMENT ON FUNCTION alcs_hav(double precision, double precision, double precision, double precision)
  IS 'haversine of the angle between two positions from sin(ddec/2), sin(dra/2), cos(dec1), cos(dec2)';
"""),
    ("alcs_hav_to_arcsec(double precision)", f"""
CREATE FUNCTION alcs_hav_to_arcsec(hav double precision) RETURNS double precision
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN 2.0 * asin(sqrt(least(hav, 1.0))) * {ARCSEC_PER_RAD};
"""),
    ("alcs_angdist_arcsec(double precision, double precision, double precision, double precision)", f"""
CREATE FUNCTION alcs_angdist_arcsec(ra1 double precision, dec1 double precision,
                                    ra2 double precision, dec2 double precision)
RETURNS double precision LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN alcs_hav_to_arcsec(alcs_hav(sin((alcs_snap(dec2) - alcs_snap(dec1)) * {HALF_RAD_PER_DEG}),
                                   sin((alcs_snap(ra2) - alcs_snap(ra1)) * {HALF_RAD_PER_DEG}),
                                   cos(alcs_snap(dec1) * {RAD_PER_DEG}), cos(alcs_snap(dec2) * {RAD_PER_DEG})));
COMMENT ON FUNCTION alcs_angdist_arcsec(double precision, double precision, double precision, double precision)
  IS 'great-circle distance in arcsec between (ra1, dec1) and (ra2, dec2) in degrees (haversine, as alcsdb.healpix.angular_distance_arcsec)';
"""),
    ("alcs_cone_range(double precision, double precision, double precision, bigint, bigint)", f"""
CREATE FUNCTION alcs_cone_range(ra_deg double precision, dec_deg double precision,
                                radius_arcsec double precision, lo bigint, hi bigint)
RETURNS TABLE (source_id bigint, field_id smallint, ra double precision, "dec" double precision,
               distance_arcsec double precision)
LANGUAGE sql STABLE PARALLEL SAFE
BEGIN ATOMIC
  -- distance_arcsec is alcs_angdist_arcsec(ra_deg, dec_deg, ra, dec), operation by operation,
  -- with each sine evaluated once per row; |ddec| <= distance lets a declination band go first.
  SELECT u.source_id, u.field_id, u.ra, u.dec, u.distance_arcsec
  FROM (SELECT t.source_id, t.field_id, t.ra, t.dec,
               alcs_hav_to_arcsec(alcs_hav(t.sd, t.sr, k.cos_dec, t.cd)) AS distance_arcsec
        FROM (SELECT cos(alcs_snap(dec_deg) * {RAD_PER_DEG}) AS cos_dec OFFSET 0) AS k,
             (SELECT src.source_id, src.field_id, src.ra, src.dec,
                     sin((alcs_snap(src.dec) - alcs_snap(dec_deg)) * {HALF_RAD_PER_DEG}) AS sd,
                     sin((alcs_snap(src.ra) - alcs_snap(ra_deg)) * {HALF_RAD_PER_DEG}) AS sr,
                     cos(alcs_snap(src.dec) * {RAD_PER_DEG}) AS cd
              FROM source AS src
              WHERE src.hpx29 >= lo AND src.hpx29 < hi
                AND abs(src.dec - dec_deg) <= radius_arcsec / 3600 + 1e-9
              OFFSET 0) AS t
        OFFSET 0) AS u
  WHERE u.distance_arcsec <= radius_arcsec;
END;
COMMENT ON FUNCTION alcs_cone_range(double precision, double precision, double precision, bigint, bigint)
  IS 'sources with hpx29 in [lo, hi) within radius_arcsec of (ra_deg, dec_deg), with their distance (one index range scan)';
"""),
    ("alcs_hpx_spread_bits(bigint)", f"""
CREATE FUNCTION alcs_hpx_spread_bits(v bigint) RETURNS bigint LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN ('{{{SPREAD8}}}'::bigint[])[(v & 255) + 1]
     | (('{{{SPREAD8}}}'::bigint[])[((v >> 8) & 255) + 1] << 16)
     | (('{{{SPREAD8}}}'::bigint[])[((v >> 16) & 255) + 1] << 32)
     | (('{{{SPREAD8}}}'::bigint[])[((v >> 24) & 255) + 1] << 48);
COMMENT ON FUNCTION alcs_hpx_spread_bits(bigint) IS 'bits of v (< 2^32) interleaved with zeros (HEALPix nested index)';
"""),
    ("alcs_hpx_xyf2nest(integer, integer, bigint, bigint)", """
CREATE FUNCTION alcs_hpx_xyf2nest(hpx_order integer, face integer, ix bigint, iy bigint)
RETURNS bigint LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN (face::bigint << (2 * hpx_order)) | alcs_hpx_spread_bits(ix) | (alcs_hpx_spread_bits(iy) << 1);
COMMENT ON FUNCTION alcs_hpx_xyf2nest(integer, integer, bigint, bigint) IS 'NESTED index of pixel (ix, iy) of a face at an order';
"""),
    ("alcs_hpx_coarse_order(double precision)", f"""
CREATE FUNCTION alcs_hpx_coarse_order(radius_arcsec double precision) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE WHEN radius_arcsec < {BASE_PIXEL_ARCSEC}::double precision / 536870912 THEN 29
            ELSE least(29, greatest(0, floor(ln({BASE_PIXEL_ARCSEC}::double precision / radius_arcsec) / ln(2::double precision))
                                    + CASE WHEN radius_arcsec < 3 THEN 0 WHEN radius_arcsec < 20 THEN 1 ELSE 2 END))::integer END;
COMMENT ON FUNCTION alcs_hpx_coarse_order(double precision) IS 'order of the pixels covering a cone of this radius (alcsdb.healpix.coarse_order)';
"""),
    ("alcs_check_cone(text, double precision, double precision, double precision)", """
CREATE FUNCTION alcs_check_cone(caller text, ra_deg double precision, dec_deg double precision,
                                radius_arcsec double precision)
RETURNS void LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
BEGIN
  IF ra_deg > '-Infinity' AND ra_deg < 'Infinity' AND dec_deg >= -90 AND dec_deg <= 90
     AND radius_arcsec >= 0 AND radius_arcsec < 'Infinity' THEN
    RETURN;  -- valid (NaN compares above every number, NULL makes the test NULL)
  END IF;
  IF ra_deg IS NULL OR dec_deg IS NULL OR radius_arcsec IS NULL THEN
    RAISE EXCEPTION '%: % must not be NULL', caller,
      CASE WHEN ra_deg IS NULL THEN 'ra_deg' WHEN dec_deg IS NULL THEN 'dec_deg' ELSE 'radius_arcsec' END
      USING ERRCODE = 'null_value_not_allowed';
  END IF;
  IF NOT (ra_deg > '-Infinity' AND ra_deg < 'Infinity') THEN
    RAISE EXCEPTION '%: ra_deg must be finite, got %', caller, ra_deg USING ERRCODE = 'invalid_parameter_value';
  END IF;
  IF NOT (dec_deg >= -90 AND dec_deg <= 90) THEN  -- also NaN and infinities
    RAISE EXCEPTION '%: dec_deg must be within [-90, 90], got %', caller, dec_deg USING ERRCODE = 'invalid_parameter_value';
  END IF;
  IF NOT (radius_arcsec >= 0 AND radius_arcsec < 'Infinity') OR radius_arcsec = 'NaN' THEN
    RAISE EXCEPTION '%: radius_arcsec must be finite and >= 0, got %', caller, radius_arcsec
      USING ERRCODE = 'invalid_parameter_value';
  END IF;
END $$;
"""),
    ("alcs_hpx_loc(double precision, double precision)", """
CREATE FUNCTION alcs_hpx_loc(ra_deg double precision, dec_deg double precision,
                             OUT face integer, OUT p double precision, OUT q double precision,
                             OUT region integer)
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
DECLARE
  theta double precision := pi() / 2 - dec_deg * 0.017453292519943295;
  z double precision := cos(theta);
  za double precision := abs(z);
  tt double precision := ra_deg * 0.017453292519943295 * 0.6366197723675814;
  u double precision; v double precision; tp double precision; s double precision;
  ifp integer; ifm integer; ntt integer;
BEGIN
  -- healpix_cxx's fmodulo(tt, 4): fmod is exact, and so is tt - 4 floor(tt / 4)
  tt := tt - 4 * floor(tt / 4);
  IF tt >= 4 THEN tt := 0; END IF;
  IF za <= 2.0 / 3.0 THEN
    u := 0.5 + tt + 0.75 * z;
    v := 0.5 + tt - 0.75 * z;
    ifp := floor(v); ifm := floor(u);
    face := CASE WHEN ifp = ifm THEN ifp | 4 WHEN ifp < ifm THEN ifp ELSE ifm + 8 END;
    p := u - ifm; q := v - ifp; region := 0;
    RETURN;
  END IF;
  ntt := least(3, floor(tt));
  tp := tt - ntt;
  IF za < 0.99 OR (theta >= 0.01 AND theta <= 3.14159 - 0.01) THEN
    s := sqrt(3 * (1 - za));
  ELSE
    s := sin(theta) / sqrt((1 + za) / 3);
  END IF;
  IF z > 0 THEN
    face := ntt; p := (1 - tp) * s; q := tp * s; region := 1;
  ELSE
    face := ntt + 8; p := tp * s; q := (1 - tp) * s; region := -1;
  END IF;
END $$;
COMMENT ON FUNCTION alcs_hpx_loc(double precision, double precision)
  IS 'HEALPix (face, p, q, region) of a position before pixel rounding, as alcsdb.healpix.face_loc';
"""),
    ("alcs_hpx_ang2pix(integer, double precision, double precision)", """
CREATE FUNCTION alcs_hpx_ang2pix(hpx_order integer, ra_deg double precision, dec_deg double precision)
RETURNS bigint LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
DECLARE
  loc record;
  n bigint;
  ix bigint; iy bigint;
BEGIN
  IF hpx_order < 0 OR hpx_order > 29 THEN
    RAISE EXCEPTION 'alcs_hpx_ang2pix: hpx_order must be within [0, 29], got %', hpx_order
      USING ERRCODE = 'invalid_parameter_value';
  END IF;
  PERFORM alcs_check_cone('alcs_hpx_ang2pix', ra_deg, dec_deg, 0);
  loc := alcs_hpx_loc(alcs_snap(ra_deg), alcs_snap(dec_deg));
  n := 1::bigint << hpx_order;
  IF loc.region = 0 THEN
    ix := floor(loc.p * n); iy := n - 1 - floor(loc.q * n);
  ELSIF loc.region = 1 THEN
    ix := n - 1 - least(floor(loc.p * n), n - 1); iy := n - 1 - least(floor(loc.q * n), n - 1);
  ELSE
    ix := least(floor(loc.p * n), n - 1); iy := least(floor(loc.q * n), n - 1);
  END IF;
  RETURN alcs_hpx_xyf2nest(hpx_order, loc.face, ix, iy);
END $$;
COMMENT ON FUNCTION alcs_hpx_ang2pix(integer, double precision, double precision)
  IS 'NESTED HEALPix index at an order of (ra, dec) in degrees; equals healpy.ang2pix(2**order, ra, dec, nest=True, lonlat=True) (coordinates within 1e-30 deg of 0 taken as 0)';
"""),
    ("alcs_hpx_pixel_may_meet(integer, integer, bigint, bigint, double precision, double precision, double precision, double precision)", f"""
CREATE FUNCTION alcs_hpx_pixel_may_meet(hpx_order integer, face integer, ix bigint, iy bigint,
                                        cx double precision, cy double precision, cz double precision,
                                        r_rad double precision)
RETURNS boolean LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
-- False only if pixel (face, ix, iy) cannot meet the disc of radius r_rad around unit vector c:
-- its centre is farther than r_rad + {LAMBDA} sqrt(1/2) 2^-order (alcsdb.healpix._refined_cells).
DECLARE
  scale double precision := 1.0 / (1::bigint << hpx_order);
  lim double precision := r_rad + {LAMBDA} * sqrt(0.5) * scale;
  x double precision := (ix + 0.5) * scale;
  y double precision := (iy + 0.5) * scale;
  rr double precision := ('{{2,2,2,2,3,3,3,3,4,4,4,4}}'::integer[])[face + 1] - x - y;
  nr double precision := CASE WHEN rr < 1 THEN rr WHEN rr > 3 THEN 4 - rr ELSE 1 END;
  tmp double precision := nr * nr / 3.0;
  z double precision := CASE WHEN rr < 1 THEN 1 - tmp WHEN rr > 3 THEN tmp - 1 ELSE (2 - rr) * (2.0 / 3.0) END;
  sth double precision := CASE WHEN rr < 1 OR rr > 3 THEN sqrt(tmp * (2 - tmp)) ELSE sqrt((1 - z) * (1 + z)) END;
  phi double precision := (pi() / 4) * (('{{1,3,5,7,0,2,4,6,1,3,5,7}}'::integer[])[face + 1] + (x - y) / nr);
BEGIN
  IF lim >= pi() THEN
    RETURN true;
  END IF;
  RETURN (sth * cos(phi) - cx) * (sth * cos(phi) - cx) + (sth * sin(phi) - cy) * (sth * sin(phi) - cy)
       + (z - cz) * (z - cz) <= (2 * sin(lim / 2)) * (2 * sin(lim / 2));
END $$;
"""),
    ("alcs_hpx_disc_cells(double precision, double precision, double precision)", f"""
CREATE FUNCTION alcs_hpx_disc_cells(ra_deg double precision, dec_deg double precision,
                                    radius_arcsec double precision)
RETURNS bigint[] LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
-- The nested pixels at order alcs_hpx_coarse_order(radius_arcsec) that cover a cone, as
-- alcsdb.healpix.disc_ranges (its module docstring proves completeness): the pixels meeting a
-- ball of radius L r in the face coordinates (L: the stretch bound) when that ball lies inside one face, else a
-- refinement from the 12 faces keeping every pixel whose centre is within
-- r + {LAMBDA} sqrt(1/2) 2^-order of the cone centre.
DECLARE
  r_rad double precision;
  k integer;
  loc record;
  x double precision; y double precision; rho double precision; nf double precision;
  lo double precision; hi double precision;
  dx double precision; half double precision;
  ix integer; iy integer; cell bigint; ymask bigint;
  cx double precision; cy double precision; cz double precision;
  cells bigint[] := '{{}}';
  faces integer[]; ixs bigint[]; iys bigint[];
  kept_faces integer[]; kept_ixs bigint[]; kept_iys bigint[];
  o integer; j integer; c integer;
BEGIN
  PERFORM alcs_check_cone('alcs_hpx_disc_cells', ra_deg, dec_deg, radius_arcsec);
  ra_deg := alcs_snap(ra_deg);
  dec_deg := alcs_snap(dec_deg);
  r_rad := alcs_snap(radius_arcsec) / {ARCSEC_PER_RAD} + {MARGIN_RAD};
  k := alcs_hpx_coarse_order(radius_arcsec);
  loc := alcs_hpx_loc(ra_deg, dec_deg);
  x := CASE WHEN loc.region = 1 THEN 1 - loc.p ELSE loc.p END;
  y := CASE WHEN loc.region = -1 THEN loc.q ELSE 1 - loc.q END;
  -- stretch bound over the disc: alcsdb.healpix.stretch_bound
  hi := abs(dec_deg) + r_rad / {RAD_PER_DEG};
  IF hi + 1e-6 >= {EQUATORIAL_ZONE_DEG} THEN
    rho := {LF} * r_rad;
  ELSE
    lo := greatest(abs(dec_deg) - r_rad / {RAD_PER_DEG}, 0.0);
    rho := greatest(sqrt(2.0::double precision) * greatest(2.0 / (pi() * cos(lo * {RAD_PER_DEG})), 0.75 * cos(lo * {RAD_PER_DEG})),
                    sqrt(2.0::double precision) * greatest(2.0 / (pi() * cos(hi * {RAD_PER_DEG})), 0.75 * cos(hi * {RAD_PER_DEG})))
           * r_rad;
  END IF;
  IF rho < x AND x < 1 - rho AND rho < y AND y < 1 - rho THEN
    nf := 1::bigint << k;
    ymask := ((1::bigint << (2 * k)) - 1) & {YBITS};  -- the iy bits of a nested index
    FOR ix IN floor((x - rho) * nf)::integer .. floor((x + rho) * nf)::integer LOOP
      dx := greatest(ix / nf - x, 0.0, x - (ix + 1) / nf);
      half := sqrt(greatest(rho * rho - dx * dx, 0.0));  -- the ball's half-height over this column
      cell := alcs_hpx_xyf2nest(k, loc.face, ix, floor((y - half) * nf)::bigint);
      FOR iy IN floor((y - half) * nf)::integer .. floor((y + half) * nf)::integer LOOP
        cells := cells || cell;
        -- next iy: add 1 to the interleaved iy bits (carry through the ix bits set to 1)
        cell := (cell & ~ymask) | (((cell | ~ymask) + 1) & ymask);
      END LOOP;
    END LOOP;
    RETURN cells;
  END IF;
  cx := cos(dec_deg * {RAD_PER_DEG}) * cos(ra_deg * {RAD_PER_DEG});
  cy := cos(dec_deg * {RAD_PER_DEG}) * sin(ra_deg * {RAD_PER_DEG});
  cz := sin(dec_deg * {RAD_PER_DEG});
  faces := '{{0,1,2,3,4,5,6,7,8,9,10,11}}';
  ixs := array_fill(0::bigint, ARRAY[12]);
  iys := ixs;
  o := 0;
  LOOP
    kept_faces := '{{}}'; kept_ixs := '{{}}'; kept_iys := '{{}}';
    FOR j IN 1 .. coalesce(array_length(faces, 1), 0) LOOP
      IF alcs_hpx_pixel_may_meet(o, faces[j], ixs[j], iys[j], cx, cy, cz, r_rad) THEN
        IF o = k THEN
          cells := cells || alcs_hpx_xyf2nest(k, faces[j], ixs[j], iys[j]);
        ELSE
          FOR c IN 0 .. 3 LOOP
            kept_faces := kept_faces || faces[j];
            kept_ixs := kept_ixs || (2 * ixs[j] + c % 2);
            kept_iys := kept_iys || (2 * iys[j] + c / 2);
          END LOOP;
        END IF;
      END IF;
    END LOOP;
    EXIT WHEN o = k;
    faces := kept_faces; ixs := kept_ixs; iys := kept_iys;
    o := o + 1;
  END LOOP;
  RETURN cells;
END $$;
COMMENT ON FUNCTION alcs_hpx_disc_cells(double precision, double precision, double precision)
  IS 'nested HEALPix pixels at order alcs_hpx_coarse_order(radius_arcsec) covering every position within radius_arcsec of (ra_deg, dec_deg)';
"""),
    ("alcs_hpx_disc_ranges(double precision, double precision, double precision)", """
CREATE FUNCTION alcs_hpx_disc_ranges(ra_deg double precision, dec_deg double precision,
                                     radius_arcsec double precision)
RETURNS TABLE (lo bigint, hi bigint) LANGUAGE sql IMMUTABLE PARALLEL SAFE
BEGIN ATOMIC
  SELECT min(t.cell) << (2 * (29 - t.k)), (max(t.cell) + 1) << (2 * (29 - t.k))
  FROM (SELECT u.cell, u.k, u.cell - row_number() OVER (ORDER BY u.cell) AS grp
        FROM (SELECT DISTINCT unnest(alcs_hpx_disc_cells(ra_deg, dec_deg, radius_arcsec)) AS cell,
                     alcs_hpx_coarse_order(radius_arcsec) AS k) AS u) AS t
  GROUP BY t.grp, t.k ORDER BY 1;
END;
COMMENT ON FUNCTION alcs_hpx_disc_ranges(double precision, double precision, double precision)
  IS 'half-open order-29 HEALPix ranges [lo, hi) covering every position within radius_arcsec of (ra_deg, dec_deg)';
"""),
    ("alcs_cone_search(double precision, double precision, double precision)", """
CREATE FUNCTION alcs_cone_search(ra_deg double precision, dec_deg double precision,
                                 radius_arcsec double precision)
RETURNS TABLE (source_id bigint, field text, ra double precision, "dec" double precision,
               distance_arcsec double precision)
LANGUAGE plpgsql STABLE PARALLEL SAFE
SET jit = off
SET plan_cache_mode = force_generic_plan
SET search_path FROM CURRENT
AS $$
-- Every source of every field within radius_arcsec of (ra_deg, dec_deg) (degrees, ICRS):
-- one index range scan per HEALPix range of alcs_hpx_disc_ranges, then the exact distance.
#variable_conflict use_column
BEGIN
  PERFORM alcs_check_cone('alcs_cone_search', ra_deg, dec_deg, radius_arcsec);
  RETURN QUERY
    SELECT s.source_id, f.name, s.ra, s.dec, s.distance_arcsec
    FROM alcs_hpx_disc_ranges(ra_deg, dec_deg, radius_arcsec) AS r
    CROSS JOIN LATERAL alcs_cone_range(ra_deg, dec_deg, radius_arcsec, r.lo, r.hi) AS s
    JOIN field AS f ON f.field_id = s.field_id;
END $$;
COMMENT ON FUNCTION alcs_cone_search(double precision, double precision, double precision)
  IS 'sources of all fields within radius_arcsec of (ra_deg, dec_deg), exact great-circle distance';
"""),
]


def upgrade() -> None:
    for _, sql in FUNCTIONS:
        op.execute(sql)


def downgrade() -> None:
    for signature, _ in reversed(FUNCTIONS):
        op.execute(f"DROP FUNCTION IF EXISTS {signature}")
