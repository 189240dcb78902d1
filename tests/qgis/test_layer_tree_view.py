"""The test iface has a real layer tree view over the project (tests/qgis/conftest.py), not pytest-qgis's
MagicMock, so code that hands it to QGIS (Processing loading results on 3.40+, the dock's legend) gets what the
desktop gives it."""

from __future__ import annotations


def test_iface_layer_tree_view_is_a_real_view_of_the_project(qgis_app, embeddings_file):
    import qgis.utils
    from qgis.core import QgsProject
    from qgis.gui import QgsLayerTreeView

    from clay_qgis import layers

    view = qgis.utils.iface.layerTreeView()
    assert isinstance(view, QgsLayerTreeView)
    assert view.layerTreeModel().rootGroup() is QgsProject.instance().layerTreeRoot()
    layer = layers.load_layer(embeddings_file)
    QgsProject.instance().addMapLayer(layer)
    try:
        node = QgsProject.instance().layerTreeRoot().findLayer(layer.id())
        assert view.node2index(node).isValid() and view.index2node(view.node2index(node)) is node
    finally:
        QgsProject.instance().removeAllMapLayers()
