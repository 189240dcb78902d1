"""clay:embedlocations in QGIS: a projected point layer -> the same points with clay_id + a GeoParquet
file whose rows are the SatCLIP embeddings of those points (computed by the worker subprocess)."""

from __future__ import annotations

import numpy as np
import pytest

from clay_core.models.satclip import satclip_embed_lonlat
from clay_core.parquet import read_embeddings

LONLAT = np.array([[12.6045, 52.4912], [-67.6412, -47.853], [100.0, 30.0]])


def projected_point_layer():
    from qgis.core import (
        QgsCoordinateReferenceSystem,
        QgsCoordinateTransform,
        QgsFeature,
        QgsGeometry,
        QgsPointXY,
        QgsProject,
        QgsVectorLayer,
    )

    layer = QgsVectorLayer("Point?crs=EPSG:3857&field=name:string", "sites", "memory")
    transform = QgsCoordinateTransform(
        QgsCoordinateReferenceSystem("EPSG:4326"), QgsCoordinateReferenceSystem("EPSG:3857"), QgsProject.instance()
    )
    features = []
    for index, (lon, lat) in enumerate(LONLAT):
        feature = QgsFeature(layer.fields())
        feature.setGeometry(QgsGeometry.fromPointXY(transform.transform(QgsPointXY(lon, lat))))
        feature.setAttributes([f"site{index}"])
        features.append(feature)
    layer.dataProvider().addFeatures(features)
    return layer


def test_embed_locations_writes_embeddings_and_a_joinable_layer(clay_provider, satclip_checkpoint, tmp_path):
    import processing

    assert clay_provider.algorithm("embedlocations") is not None
    out = tmp_path / "sites.gpq"
    result = processing.run(
        "clay:embedlocations",
        {
            "INPUT": projected_point_layer(),
            "CHECKPOINT": str(satclip_checkpoint),
            "ID_FIELD": "name",
            "DEVICE": 1,
            "OUTPUT_EMBEDDINGS": str(out),
            "OUTPUT": "memory:",
        },
    )
    assert result["POINTS"] == 3
    table = read_embeddings(result["OUTPUT_EMBEDDINGS"])
    assert table.chip_ids == ["site0", "site1", "site2"]
    lonlat = np.stack([table.table.column("lon"), table.table.column("lat")], axis=1)
    assert np.abs(lonlat - LONLAT).max() < 1e-7  # back from Web Mercator
    expected = satclip_embed_lonlat(LONLAT, satclip_checkpoint)
    assert np.abs(table.vectors - expected).max() < 1e-5
    layer = result["OUTPUT"]
    if isinstance(layer, str):
        from qgis.core import QgsProcessingUtils

        layer = QgsProcessingUtils.mapLayerFromString(layer, processing.tools.dataobjects.createContext())
    assert layer.featureCount() == 3
    assert [f["clay_id"] for f in layer.getFeatures()] == ["site0", "site1", "site2"]
    assert [f["name"] for f in layer.getFeatures()] == ["site0", "site1", "site2"]


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ({}, "no model"),
        ({"CHECKPOINT": "missing.ckpt"}, "checkpoint file .*missing.ckpt does not exist"),
        ({"CHECKPOINT": "present.ckpt", "MODEL": "satclip-l10"}, "not both"),
    ],
)
def test_embed_locations_model_choice_is_checked_before_the_worker_starts(clay_provider, tmp_path, model, message):
    import processing
    from qgis.core import QgsProcessingException

    (tmp_path / "present.ckpt").write_bytes(b"")
    model = {name: str(tmp_path / value) if name == "CHECKPOINT" else value for name, value in model.items()}
    with pytest.raises(QgsProcessingException, match=message):
        processing.run(
            "clay:embedlocations",
            {
                "INPUT": projected_point_layer(),
                "DEVICE": 1,
                "OUTPUT_EMBEDDINGS": str(tmp_path / "x.gpq"),
                "OUTPUT": "memory:",
                **model,
            },
        )
    assert not (tmp_path / "x.gpq").exists()


def test_device_choices_are_the_workers_including_mps(clay_provider):
    from clay_core.device_options import DEVICES

    for name in ("embedlocations", "embed", "embedmgrs"):
        assert clay_provider.algorithm(name).parameterDefinition("DEVICE").options() == list(DEVICES)
    assert "mps" in DEVICES
