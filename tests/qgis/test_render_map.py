"""clay:rendermap: a scored layer rendered by QGIS to a georeferenced PNG map."""

from __future__ import annotations

import pytest

from tests.helpers.qgis import write_embeddings_file


def run(algorithm: str, parameters: dict):
    import processing

    return processing.run(algorithm, parameters)


def distinct_colours(image, region) -> set[int]:
    x0, y0, x1, y1 = region
    return {image.pixel(x, y) for x in range(x0, x1, 7) for y in range(y0, y1, 7)}


def test_scored_layer_renders_to_a_georeferenced_png(clay_provider, tmp_path):
    from qgis.PyQt.QtGui import QColor, QImage

    embeddings = write_embeddings_file(tmp_path / "chips.gpq", rows=4, cols=6, shape=(8,))
    scored = run(
        "clay:similarity",
        {
            "INPUT": str(embeddings),
            "CHIP_IDS": "33UUU_20170216_000_000",
            "TOP_K": 0,
            "OUTPUT": str(tmp_path / "scored.gpkg"),
        },
    )["OUTPUT"]
    png = tmp_path / "map.png"
    result = run("clay:rendermap", {"INPUT": scored, "TITLE": "test map", "TOP_K": 3, "WIDTH": 900, "OUTPUT": str(png)})
    assert result["OUTPUT"] == str(png)
    image = QImage(str(png))
    assert image.width() == pytest.approx(900, abs=2)
    assert png.with_suffix(".pgw").exists()  # the map is georeferenced (world file)
    # The map area is drawn: many colours (viridis classes + outlines), not a blank frame.
    map_region = (
        int(0.05 * image.width()),
        int(0.3 * image.height()),
        int(0.65 * image.width()),
        int(0.9 * image.height()),
    )
    assert len(distinct_colours(image, map_region)) >= 6
    # The best class (viridis yellow) appears: the query chip scores 1.0.
    yellows = [c for c in distinct_colours(image, map_region) if QColor(c).red() > 180 and QColor(c).blue() < 120]
    assert yellows


def test_layers_without_scores_are_refused(clay_provider, tmp_path):
    from qgis.core import QgsProcessingException, QgsVectorLayer

    embeddings = write_embeddings_file(tmp_path / "chips.gpq", rows=2, cols=2, shape=(4,))
    unscored = run("clay:loadembeddings", {"INPUT": str(embeddings), "OUTPUT": str(tmp_path / "chips.gpkg")})["OUTPUT"]
    with pytest.raises(QgsProcessingException, match="no scored features"):
        run("clay:rendermap", {"INPUT": unscored, "OUTPUT": str(tmp_path / "x.png")})
    plain = QgsVectorLayer("Polygon?crs=EPSG:32633&field=name:string", "plain", "memory")
    with pytest.raises(QgsProcessingException, match="no 'similarity' field"):
        run("clay:rendermap", {"INPUT": plain, "OUTPUT": str(tmp_path / "y.png")})
    assert not (tmp_path / "x.png").exists() and not (tmp_path / "y.png").exists()
