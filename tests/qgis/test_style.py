"""clay_qgis.style: the chip grid, the viridis classes of the scores, the outlines and the legend."""

from __future__ import annotations

import numpy as np
import pytest

from clay_core.parquet import read_embeddings
from clay_qgis import layers, style
from clay_qgis.schema import NEGATIVE
from clay_qgis.session import SearchSession


@pytest.fixture(autouse=True)
def empty_cache(qgis_app):
    from clay_qgis import vector_cache

    vector_cache.clear_cache()


def test_a_click_stores_scores_and_styles_graduated_viridis(embeddings_file):
    layer = layers.load_layer(embeddings_file)
    session = SearchSession(layer, top_k=3, centred=False)  # plain cosine
    session.add_example(5)
    session.add_example(0, NEGATIVE)
    scored = session.scored
    data = read_embeddings(embeddings_file)
    unit = data.vectors / np.linalg.norm(data.vectors, axis=1, keepdims=True)
    query = unit[5] - unit[0]
    expected = unit @ (query / np.linalg.norm(query))
    stored = {f["chip_id"]: (f["similarity"], f["rank"], f["example"]) for f in layer.getFeatures()}
    for row, chip_id in enumerate(data.chip_ids):
        assert stored[chip_id][0] == pytest.approx(expected[row], abs=1e-6)
        assert stored[chip_id][1] == scored.ranks[row]
    assert stored[data.chip_ids[5]][2] == "positive" and stored[data.chip_ids[0]][2] == "negative"
    renderer = layer.renderer()
    assert renderer.type() == "graduatedSymbol" and renderer.classAttribute() == "similarity"
    ranges = renderer.ranges()
    assert ranges[0].lowerValue() <= expected.min() and ranges[-1].upperValue() >= expected.max()
    colors = [r.symbol().color().name() for r in ranges]
    assert colors[0] == style.VIRIDIS[0] and colors[-1] == style.VIRIDIS[-1]
    assert renderer.orderByEnabled()
    legend_labels = [n.data(0) for n in layer.legend().createLayerTreeModelLegendNodes(_layer_node(layer))]
    assert any("top 3" in str(label) for label in legend_labels)
    assert any("negative" in str(label) for label in legend_labels)


def _layer_node(layer):
    from qgis.core import QgsLayerTreeLayer

    return QgsLayerTreeLayer(layer)


def test_threshold_hides_low_scores_and_top_k_outline_expression(embeddings_file):
    layer = layers.load_layer(embeddings_file)
    session = SearchSession(layer, top_k=2)
    session.add_example(1)
    session.set_view(threshold=0.2)
    renderer = layer.renderer()
    assert renderer.ranges()[0].lowerValue() == pytest.approx(max(0.2, session.scored.scores.min()), abs=1e-5)
    below = [f for f in layer.getFeatures() if f["similarity"] < 0.2]
    assert below and all(renderer.rangeForValue(f["similarity"]) is None for f in below)
    ranges = renderer.ranges()  # keep the copies alive while their symbols are used
    symbol = ranges[0].symbol()
    enabled = symbol.symbolLayer(1).dataDefinedProperties().property(style._property("LayerEnabled"))
    assert '"rank" <= 2' in enabled.expressionString()
