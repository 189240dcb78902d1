"""clay_core.similarity (numpy only) and `clay similar` end to end on a real GeoParquet file."""

from __future__ import annotations

import json
import struct

import numpy as np
import pyarrow.parquet as pq
import pytest

from clay_core.cli import main
from clay_core.errors import ClayInputError
from clay_core.parquet import read_embeddings, wkb_polygon_rings, write_geoparquet
from clay_core.similarity import (
    SimilarityIndex,
    combine_query,
    cosine_scores,
    explode_patch_rings,
    explode_patch_vectors,
    exterior_rings,
    normalise_rows,
    query_vector,
    ranks,
    row_at_point,
    rows_at_point,
    select_matches,
    top_k,
)
from tests.helpers.embeddings import centred_reference, chip_grid


def reference_cosine(matrix: np.ndarray, query: np.ndarray) -> np.ndarray:
    matrix = matrix.astype(np.float64)
    query = query.astype(np.float64)
    return matrix @ query / (np.linalg.norm(matrix, axis=1) * np.linalg.norm(query))


@pytest.fixture
def vectors() -> np.ndarray:
    return np.random.default_rng(1).standard_normal((50, 24)).astype(np.float32)


def test_cosine_scores_match_a_float64_reference(vectors):
    query = vectors[7] * 3.0
    scores = cosine_scores(vectors, query)
    assert scores.dtype == np.float32
    np.testing.assert_allclose(scores, reference_cosine(vectors, query), atol=1e-6)
    assert scores[7] == pytest.approx(1.0, abs=1e-6)
    assert scores.max() <= 1.0 and scores.min() >= -1.0


def test_index_scores_equal_plain_cosine(vectors):
    index = SimilarityIndex(vectors)
    assert index.vectors is vectors  # kept as given: no unit copy
    np.testing.assert_allclose(index.scores(vectors[3]), cosine_scores(vectors, vectors[3]), atol=1e-6)
    np.testing.assert_allclose(index.search([3], centred=False).scores, cosine_scores(vectors, vectors[3]), atol=1e-6)


def test_zero_rows_score_zero_and_zero_query_is_refused(vectors):
    vectors[4] = 0.0
    scores = cosine_scores(vectors, vectors[0])
    assert scores[4] == 0.0 and np.isfinite(scores).all()
    assert not normalise_rows(vectors)[4].any()
    with pytest.raises(ClayInputError, match="query vector is zero"):
        cosine_scores(vectors, np.zeros(24))


def test_query_is_mean_of_positives_minus_mean_of_negatives(vectors):
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    expected = unit[[1, 2, 3]].mean(axis=0) - unit[[9, 10]].mean(axis=0)
    query = query_vector(vectors, [1, 2, 3], [9, 10])
    np.testing.assert_allclose(query, expected / np.linalg.norm(expected), atol=1e-6)
    # scaling one positive must not change the query: normalised before averaging
    scaled = vectors.copy()
    scaled[1] *= 100
    np.testing.assert_allclose(query_vector(scaled, [1, 2, 3], [9, 10]), query, atol=1e-6)


def test_negatives_push_scores_down(vectors):
    plain = cosine_scores(vectors, query_vector(vectors, [0]))
    pushed = cosine_scores(vectors, query_vector(vectors, [0], [5]))
    assert pushed[5] < plain[5]


def test_dimension_mismatch_is_a_readable_error(vectors):
    with pytest.raises(ClayInputError, match="different models"):
        cosine_scores(vectors, np.ones(32))
    with pytest.raises(ClayInputError, match="negative examples"):
        combine_query(vectors[:2], np.ones((1, 32)))
    with pytest.raises(ClayInputError, match="not in the embeddings"):
        query_vector(vectors, [50])


def test_top_k_ranks_and_threshold():
    scores = np.array([0.1, 0.9, 0.5, 0.9, -0.3], dtype=np.float32)
    assert top_k(scores, 2).tolist() == [1, 3]  # tie: lower index first
    assert top_k(scores, 0).tolist() == [1, 3, 2, 0, 4]
    assert ranks(scores).tolist() == [4, 1, 3, 2, 5]
    assert select_matches(scores, 0, 0.4).tolist() == [1, 3, 2]
    assert select_matches(scores, 2, 0.95).tolist() == []
    big = np.random.default_rng(0).random(10_000).astype(np.float32)
    assert top_k(big, 25).tolist() == np.argsort(-big, kind="stable")[:25].tolist()


def _polygon_wkb(ring: np.ndarray, big_endian: bool = False, iso_z: bool = False) -> bytes:
    order = ">" if big_endian else "<"
    dims = 3 if iso_z else 2
    coords = np.column_stack([ring, np.zeros(len(ring))]) if iso_z else ring
    head = bytes([0 if big_endian else 1]) + struct.pack(order + "III", 1003 if iso_z else 3, 1, len(ring))
    return head + np.asarray(coords, dtype=order + "f8").reshape(-1, dims).tobytes()


def test_point_lookup_on_wkb_polygons_any_byte_order():
    square = np.array([[0, 0], [1, 0], [1, 1], [0, 1], [0, 0]], dtype=float)
    wkbs = [
        _polygon_wkb(square),
        _polygon_wkb(square + [1, 0], big_endian=True),
        _polygon_wkb(square + [2, 0], iso_z=True),
    ]
    rings = exterior_rings(wkbs)
    np.testing.assert_array_equal(rings[1], square + [1, 0])
    assert row_at_point(rings, 0.5, 0.5) == 0
    assert row_at_point(rings, 1.5, 0.2) == 1
    assert row_at_point(rings, 2.5, 0.9) == 2
    assert rows_at_point(rings, 0.9, 0.5) == [0]
    with pytest.raises(ClayInputError, match="not inside any chip"):
        row_at_point(rings, 5.0, 5.0)


def test_exploded_patches_match_the_writers_explode(tmp_path):
    """The plugin's patch view (bilinear in lon/lat) agrees with the pipeline's exact per-patch rows."""
    records = chip_grid(2, 2)
    embeddings = np.random.default_rng(3).standard_normal((4, 3, 2, 2, 5)).astype(np.float32)  # (g, h, w, d)
    meta = {"model": "m", "level": "group", "embedding_shape": [3, 2, 2, 5]}
    per_chip = read_embeddings(write_geoparquet(tmp_path / "chips.gpq", records, embeddings, meta))
    exploded = read_embeddings(
        write_geoparquet(tmp_path / "patches.gpq", records, embeddings, meta, explode_patches=True)
    )
    np.testing.assert_array_equal(explode_patch_vectors(per_chip.vectors, per_chip.shape_per_row), exploded.vectors)
    rings = explode_patch_rings(exterior_rings(per_chip.geometry_wkb), 2, 2)
    exact = np.stack([wkb_polygon_rings(w) for w in exploded.geometry_wkb])
    assert rings.shape == exact.shape
    # same corners up to the slight non-linearity of UTM -> lon/lat inside a 1.3 km chip (< 1e-6 deg, ~10 cm)
    for mine, theirs in zip(rings, exact, strict=True):
        distances = np.linalg.norm(mine[:-1, None, :] - theirs[None, :-1, :], axis=-1)
        assert distances.min(axis=1).max() < 1e-6
        assert sorted(distances.argmin(axis=1).tolist()) == [0, 1, 2, 3]


def test_clay_similar_cli_writes_scores_equal_to_numpy_cosine(tmp_path, capsys):
    records = chip_grid(3, 4)
    embeddings = np.random.default_rng(5).standard_normal((12, 16)).astype(np.float32)
    source = write_geoparquet(tmp_path / "e.gpq", records, embeddings, {"model": "m", "level": "mean"})
    out = tmp_path / "scored.gpq"
    assert (
        main(
            [
                "--progress",
                "none",
                "similar",
                str(source),
                "--chip",
                records[5].chip_id,
                "--top",
                "4",
                "--raw",
                "-o",
                str(out),
            ]
        )
        == 0
    )
    table = pq.read_table(out)
    assert table.num_rows == 4
    ids = table.column("chip_id").to_pylist()
    assert ids[0] == records[5].chip_id
    expected = reference_cosine(embeddings, embeddings[5])
    by_id = {r.chip_id: i for i, r in enumerate(records)}
    np.testing.assert_allclose(table.column("similarity").to_numpy(), expected[[by_id[i] for i in ids]], atol=1e-6)
    assert table.column("rank").to_pylist() == [1, 2, 3, 4]
    assert json.loads(table.schema.metadata[b"geo"])["columns"]["geometry"]["crs"]["id"]["code"] == "CRS84"
    read_back = read_embeddings(out)  # still a valid embeddings file
    np.testing.assert_array_equal(read_back.vectors[0], embeddings[5])


def test_clay_similar_point_threshold_and_negative(tmp_path):
    records = chip_grid(2, 2)
    embeddings = np.random.default_rng(6).standard_normal((4, 8)).astype(np.float32)
    source = write_geoparquet(tmp_path / "e.gpq", records, embeddings, {"model": "m", "level": "mean"})
    lon, lat = records[3].center_lonlat
    out = tmp_path / "scored.gpq"
    assert (
        main(
            [
                "--progress",
                "json",
                "similar",
                str(source),
                "--point",
                f"{lon},{lat}",
                "--negative-chip",
                records[0].chip_id,
                "--threshold",
                "-1",
                "--raw",
                "-o",
                str(out),
            ]
        )
        == 0
    )
    table = pq.read_table(out)
    unit = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
    expected = reference_cosine(embeddings, unit[3] - unit[0])
    ids = table.column("chip_id").to_pylist()
    np.testing.assert_allclose(
        table.column("similarity").to_numpy(), expected[[int(i[-1]) + 2 * int(i[-5]) for i in ids]], atol=1e-6
    )


def test_clay_similar_bad_input_exits_2(tmp_path, capsys):
    source = write_geoparquet(tmp_path / "e.gpq", chip_grid(1, 2), np.ones((2, 4), np.float32), {"model": "m"})
    assert main(["similar", str(source), "--chip", "nope", "-o", str(tmp_path / "o.gpq")]) == 2
    assert "chip id 'nope' is not in the embeddings" in capsys.readouterr().err
    assert main(["similar", str(source), "-o", str(tmp_path / "o.gpq")]) == 2
    assert main(["similar", str(source), "--point", "0,0", "-o", str(tmp_path / "o.gpq")]) == 2
    assert not (tmp_path / "o.gpq").exists()


def anisotropic_unit_rows(rows: int, dim: int, seed: int = 4) -> np.ndarray:
    """Rows shaped like real embeddings: a shared direction plus power-law decaying variances."""
    rng = np.random.default_rng(seed)
    scale = np.arange(1, dim + 1, dtype=np.float64) ** -0.75
    raw = rng.standard_normal((rows, dim)) * scale * 3.0
    raw[:, 0] += 1.0
    return normalise_rows(raw.astype(np.float32))


def test_two_stage_scores_keep_the_exact_top_k_and_stay_within_their_bound():
    vectors = anisotropic_unit_rows(20_000, 96)
    index = SimilarityIndex(vectors, already_normalised=True)
    for row in (0, 4321, 19_999):
        query = vectors[row] - 0.5 * vectors[(row + 7) % len(vectors)]
        fast, exact = index.fast_scores(query, exact_top=50, components=16), index.scores(query)
        assert len(fast.exact_rows) < len(vectors) // 4  # the sketch did prune: this is the fast path
        np.testing.assert_array_equal(top_k(fast.scores, 50), top_k(exact, 50))
        np.testing.assert_allclose(fast.scores[fast.exact_rows], exact[fast.exact_rows], atol=1e-6)
        error = np.abs(fast.scores - exact)
        assert 0 < error.max() <= fast.error_bound  # approximate elsewhere, but never beyond the bound
    assert index.projection_ready(16)


def test_two_stage_falls_back_to_exact_when_no_first_pass_can_prune(vectors):
    # every row within 1e-5 of one direction: raw scores closer together than any first pass can tell apart
    rng = np.random.default_rng(5)
    crowded = np.zeros((2_000, 64), dtype=np.float32)
    crowded[:, 0] = 1.0
    crowded = normalise_rows(crowded + 1e-5 * rng.standard_normal(crowded.shape).astype(np.float32))
    index = SimilarityIndex(crowded, already_normalised=True)
    fast = index.fast_scores(crowded[3], exact_top=10, components=4)
    assert index.projected(4).cannot_prune  # the probe saw that no first pass can prune: exact from the start
    np.testing.assert_array_equal(fast.scores, index.scores(crowded[3]))
    assert fast.error_bound == 0.0 and len(fast.exact_rows) == len(crowded)


def test_sketch_builds_in_the_background_once(vectors):
    index = SimilarityIndex(vectors)
    thread = index.build_projection_in_background(components=8)
    assert thread is not None
    thread.join(timeout=30)
    assert index.projection_ready(8) and index.build_projection_in_background(components=8) is None


def test_patch_view_and_writer_use_one_geometry_rule(tmp_path):
    """`--explode-patches` polygons (pyproj, exact corners) and the pyproj-free `patch_rings_crs84` from the
    chip file's utm_bbox/epsg agree within 1e-6 degrees (measured ~1e-8) for 2.56 km chips."""
    from clay_core.similarity import patch_rings_crs84

    records = chip_grid(2, 2, size_m=2560.0)
    embeddings = np.random.default_rng(3).standard_normal((4, 4, 4, 5)).astype(np.float32)  # (h, w, d)
    meta = {"model": "m", "level": "patch", "embedding_shape": [4, 4, 5]}
    per_chip = read_embeddings(write_geoparquet(tmp_path / "chips.gpq", records, embeddings, meta))
    exploded = read_embeddings(
        write_geoparquet(tmp_path / "patches.gpq", records, embeddings, meta, explode_patches=True)
    )
    mine = patch_rings_crs84(
        per_chip.table.column("utm_bbox").to_pylist(), per_chip.table.column("epsg").to_pylist(), 4, 4
    )
    exact = np.stack([wkb_polygon_rings(w) for w in exploded.geometry_wkb])
    assert mine.shape == exact.shape
    assert np.abs(mine - exact).max() < 1e-6
    # the bilinear fallback is measurably coarser at this chip size (documented in clay_core.patches)
    bilinear = explode_patch_rings(exterior_rings(per_chip.geometry_wkb), 4, 4)
    assert np.abs(bilinear - exact).max() < 1e-5


def test_point_lookup_prefilter_matches_a_brute_force_scan():
    from clay_core.similarity import ring_bounds

    rng = np.random.default_rng(8)
    rings = []
    for _ in range(300):  # overlapping boxes, some ragged (extra vertex) and some empty
        x, y = rng.uniform(0, 10, 2)
        box = np.array([[x, y], [x + 1, y], [x + 1, y + 1], [x, y + 1], [x, y]])
        rings.append(box if rng.random() < 0.8 else np.insert(box, 1, [x + 0.5, y], axis=0))
    rings[7] = np.empty((0, 2))
    bounds = ring_bounds(rings)
    assert np.isnan(bounds[7]).all()
    for lon, lat in rng.uniform(0, 11, (200, 2)):
        brute = [
            row
            for row, ring in enumerate(rings)
            if len(ring) and ring[:, 0].min() <= lon <= ring[:, 0].max() and ring[:, 1].min() <= lat <= ring[:, 1].max()
        ]
        found = rows_at_point(rings, lon, lat, bounds=bounds)
        assert sorted(found) == brute  # axis-aligned boxes: inside the bbox == inside the polygon
        assert found == rows_at_point(rings, lon, lat)


def _point_file(tmp_path):
    import pyarrow as pa

    from clay_core.locations import PointSet, write_point_embeddings

    lonlat = np.array([[12.5, 52.4], [13.0, 52.6], [-3.0, 40.0]])
    points = PointSet(lonlat, ["a", "b", "c"], pa.table({"name": ["x", "y", "z"]}))
    vectors = np.random.default_rng(2).standard_normal((3, 8)).astype(np.float32)
    return write_point_embeddings(tmp_path / "points.gpq", points, vectors, {"model": "satclip-l10"})


def test_clay_similar_keeps_the_input_geo_metadata_of_a_point_file(tmp_path, capsys):
    source = _point_file(tmp_path)
    out = tmp_path / "scored.gpq"
    assert main(["--progress", "none", "similar", str(source), "--chip", "a", "--top", "2", "-o", str(out)]) == 0
    geo_in = json.loads(pq.read_schema(source).metadata[b"geo"])
    geo_out = json.loads(pq.read_schema(out).metadata[b"geo"])
    column_in, column_out = geo_in["columns"]["geometry"], geo_out["columns"]["geometry"]
    assert column_out["geometry_types"] == ["Point"] and "orientation" not in column_out
    assert {k: v for k, v in column_out.items() if k != "bbox"} == {k: v for k, v in column_in.items() if k != "bbox"}
    kept = pq.read_table(out, columns=["lon", "lat"])
    lon, lat = kept.column("lon").to_numpy(), kept.column("lat").to_numpy()
    assert column_out["bbox"] == [lon.min(), lat.min(), lon.max(), lat.max()]  # the kept rows only
    validator = pytest.importorskip("geoparquet_validator")
    assert validator.failed(validator.check(str(out))) == []


def test_clay_similar_point_query_on_a_point_file_is_an_input_error(tmp_path, capsys):
    source = _point_file(tmp_path)
    code = main(["similar", str(source), "--point", "12.5,52.4", "-o", str(tmp_path / "o.gpq")])
    assert code == 2
    err = capsys.readouterr().err
    assert "need chip polygons" in err and "Point" in err and "--chip" in err
    assert not (tmp_path / "o.gpq").exists()


# ----------------------------------------------------------------------------------------------
# Centred scores (the default) and many files as one search
# ----------------------------------------------------------------------------------------------


def test_centred_scores_follow_the_formula(vectors):
    vectors += 2.0  # a shared offset: raw cosines crowd near 1, centred ones do not
    index = SimilarityIndex(vectors)
    centred = index.search([3]).scores
    np.testing.assert_allclose(centred, centred_reference(vectors, [3]), atol=1e-5)
    assert centred[3] == pytest.approx(1.0, abs=1e-6)
    raw = index.search([3], centred=False).scores
    assert np.ptp(centred) > 2 * np.ptp(raw)
    with_negatives = index.search([3, 4], [9]).scores
    np.testing.assert_allclose(with_negatives, centred_reference(vectors, [3, 4], [9]), atol=1e-5)
    assert with_negatives[9] < 0 < with_negatives[3]


def test_centred_scores_leave_zero_rows_out_of_the_mean(vectors):
    vectors[4] = 0.0
    index = SimilarityIndex(vectors)
    scores = index.search([0]).scores
    assert scores[4] == 0.0 and np.isfinite(scores).all()
    keep = [row for row in range(len(vectors)) if row != 4]
    np.testing.assert_allclose(scores[keep], centred_reference(vectors[keep], [0]), atol=1e-5)


def test_two_stage_centred_scores_keep_the_exact_top_k():
    vectors = anisotropic_unit_rows(20_000, 96)
    index = SimilarityIndex(vectors, already_normalised=True)
    for row in (5, 12_345):
        direction = index.direction([row])
        fast = index.fast_scores(direction, exact_top=50, components=32, centred=True)
        exact = index.scores(direction, centred=True)
        np.testing.assert_array_equal(top_k(fast.scores, 50), top_k(exact, 50))
        np.testing.assert_array_equal(fast.scores[fast.exact_rows], exact[fast.exact_rows])
        assert np.abs(fast.scores - exact).max() <= fast.error_bound + 1e-6


def _two_dates(tmp_path):
    """The same 3 x 4 chips (same ids) at two dates, in two files."""
    records = chip_grid(3, 4)
    rng = np.random.default_rng(9)
    first = rng.standard_normal((12, 16)).astype(np.float32) + 1.0
    second = first + 0.3 * rng.standard_normal((12, 16)).astype(np.float32)
    meta = {"model": "m", "level": "mean"}
    a = write_geoparquet(tmp_path / "a.gpq", records, first, meta)
    b = write_geoparquet(tmp_path / "b.gpq", records, second, meta)
    return records, first, second, a, b


def test_clay_similar_searches_many_files_as_one(tmp_path, capsys):
    records, first, second, a, b = _two_dates(tmp_path)
    out = tmp_path / "scored.gpq"
    query = f"a.gpq:{records[2].chip_id}"
    assert main(["--progress", "none", "similar", str(a), str(b), "--chip", query, "-o", str(out)]) == 0
    table = pq.read_table(out)
    assert table.num_rows == 24  # every row of both files, nothing collapsed by id
    keys = list(zip(table.column("source_file").to_pylist(), table.column("chip_id").to_pylist(), strict=True))
    assert len(set(keys)) == 24 and keys[0] == ("a.gpq", records[2].chip_id)
    both = np.concatenate([first, second])
    expected = centred_reference(both, [2])
    rows = [(0 if name == "a.gpq" else 12) + [r.chip_id for r in records].index(chip) for name, chip in keys]
    np.testing.assert_allclose(table.column("similarity").to_numpy(), expected[rows], atol=1e-5)
    np.testing.assert_array_equal(read_embeddings(out).vectors, both[rows])  # the input's vectors, bit for bit
    # a folder and a glob are the same search
    assert (
        main(
            [
                "--progress",
                "none",
                "similar",
                str(tmp_path / "?.gpq"),
                "--chip",
                query,
                "-o",
                str(tmp_path / "glob.gpq"),
            ]
        )
        == 0
    )
    assert pq.read_table(tmp_path / "glob.gpq").column("similarity").equals(table.column("similarity"))
    capsys.readouterr()
    # an id that is in both files must be qualified
    assert main(["similar", str(a), str(b), "--chip", records[2].chip_id, "-o", str(tmp_path / "x.gpq")]) == 2
    assert "in 2 files" in capsys.readouterr().err and not (tmp_path / "x.gpq").exists()


def test_clay_similar_refuses_files_of_different_models(tmp_path, capsys):
    records = chip_grid(1, 2)
    a = write_geoparquet(tmp_path / "a.gpq", records, np.ones((2, 4), np.float32), {"model": "m1"})
    b = write_geoparquet(tmp_path / "b.gpq", records, np.ones((2, 4), np.float32), {"model": "m2"})
    assert (
        main(["similar", str(a), str(b), "--chip", f"a.gpq:{records[0].chip_id}", "-o", str(tmp_path / "o.gpq")]) == 2
    )
    assert "model" in capsys.readouterr().err


def test_collection_reads_in_batches_into_one_array(tmp_path, monkeypatch):
    from clay_core import collection

    records = chip_grid(4, 5)
    vectors = np.random.default_rng(1).standard_normal((20, 6)).astype(np.float32)
    path = write_geoparquet(tmp_path / "e.gpq", records, vectors, {"model": "m"})
    monkeypatch.setattr(collection, "READ_BATCH_ROWS", 3)  # many batches, a ragged last one
    read = collection.read_collection([tmp_path])
    np.testing.assert_array_equal(read.vectors, vectors)
    assert read.files == [path] and read.source_files == ["e.gpq"] * 20


def test_several_indexes_score_as_one_search(vectors):
    """Centring on the joint mean of two indexes gives the scores of one index over both row sets."""
    from clay_core.similarity import joint_mean

    vectors += 1.0
    first, second = SimilarityIndex(vectors[:20]), SimilarityIndex(vectors[20:])
    mean = joint_mean([first, second])
    for index in (first, second):
        index.use_mean(mean)
    direction = first.direction([3])
    joint = np.concatenate([first.scores(direction, centred=True), second.scores(direction, centred=True)])
    np.testing.assert_allclose(joint, SimilarityIndex(vectors).search([3]).scores, atol=1e-5)
    first.use_mean(None)
    np.testing.assert_allclose(first.search([3]).scores, centred_reference(vectors[:20], [3]), atol=1e-5)


def test_centre_jointly_scores_several_indexes_as_one_and_a_lone_index_on_its_own_mean(vectors):
    from clay_core.similarity import centre_jointly

    vectors += 1.0
    first, second = SimilarityIndex(vectors[:15]), SimilarityIndex(vectors[15:])
    centre_jointly([first, second])
    direction = second.direction([4])
    joint = np.concatenate([first.scores(direction, centred=True), second.scores(direction, centred=True)])
    np.testing.assert_allclose(joint, SimilarityIndex(vectors).search([19]).scores, atol=1e-5)
    centre_jointly([second])  # searched alone again: its own mean, not the last joint one
    np.testing.assert_allclose(second.search([4]).scores, centred_reference(vectors[15:], [4]), atol=1e-5)


def test_matches_of_a_patch_file_are_listed_with_their_patch(tmp_path, capsys):
    """One chip id has many rows in a patch-exploded file: `clay similar` and `clay classify` list which patch
    matched (the chip id alone was printed once per patch)."""
    records = chip_grid(1, 2)
    embeddings = np.random.default_rng(4).standard_normal((2, 2, 2, 3)).astype(np.float32)  # (h, w, d)
    meta = {"model": "m", "level": "patch", "embedding_shape": [2, 2, 3]}
    path = write_geoparquet(tmp_path / "patches.gpq", records, embeddings, meta, explode_patches=True)
    chip = records[1].chip_id
    assert (
        main(["--progress", "none", "similar", str(path), "--chip", chip, "--top", "3", "-o", str(tmp_path / "s.gpq")])
        == 0
    )
    listed = capsys.readouterr().out.splitlines()[1:]
    scored = pq.read_table(tmp_path / "s.gpq").to_pylist()
    assert listed == [
        f"  {row['similarity']:+.4f}  {row['chip_id']} patch {row['patch_row']},{row['patch_col']}" for row in scored
    ]
    assert len(set(listed)) == 3 and all(" patch " in line for line in listed)
    classify = ["--progress", "none", "classify", str(path), "--positive", chip, "--negative", records[0].chip_id]
    assert main([*classify, "--top", "2", "-o", str(tmp_path / "c.gpq")]) == 0
    listed = [line for line in capsys.readouterr().out.splitlines() if line.startswith("  ")]
    best = pq.read_table(tmp_path / "c.gpq").to_pylist()
    assert listed == [
        f"  {row['probability']:.4f}  {row['chip_id']} patch {row['patch_row']},{row['patch_col']}" for row in best
    ]


def test_row_dots_in_blocks_over_threads_are_bit_for_bit_one_pass():
    from clay_core import similarity

    rng = np.random.default_rng(7)
    matrix = rng.standard_normal((2 * similarity.ROW_BLOCK + 123, 96)).astype(np.float32)
    direction = rng.standard_normal(96).astype(np.float32)
    blocked = similarity.row_dots(matrix, direction)
    assert np.array_equal(blocked, np.einsum("ij,j->i", matrix, direction))
    rows = np.array([5, similarity.ROW_BLOCK + 1, 2 * similarity.ROW_BLOCK + 100])
    assert np.array_equal(similarity.row_dots(matrix[rows], direction), blocked[rows])  # gathered rows agree
