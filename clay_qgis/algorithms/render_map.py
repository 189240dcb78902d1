"""clay:rendermap - a similarity-scored layer rendered by QGIS to a PNG map (legend, title, scale bar).

The map is composed in a print layout of a private QgsProject, so it renders the same headless
(qgis_process) as in the desktop, and never touches the user's open project.
"""

from __future__ import annotations

from typing import Any

from qgis.core import (
    QgsLayoutExporter,
    QgsLayoutItemLabel,
    QgsLayoutItemLegend,
    QgsLayoutItemMap,
    QgsLayoutItemScaleBar,
    QgsLayoutPoint,
    QgsLayoutSize,
    QgsPrintLayout,
    QgsProcessing,
    QgsProcessingException,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterMultipleLayers,
    QgsProcessingParameterNumber,
    QgsProcessingParameterString,
    QgsProcessingParameterVectorLayer,
    QgsProject,
    QgsRectangle,
    QgsUnitTypes,
)
from qgis.PyQt.QtGui import QFont

from clay_qgis.algorithms.base import ClayAlgorithm
from clay_qgis.layers import EXAMPLE, NEGATIVE, SIMILARITY, style_similarity

PAGE_WIDTH_MM = 297.0
MARGIN_MM = 8.0
LEGEND_WIDTH_MM = 70.0
TITLE_HEIGHT_MM = 14.0


class RenderMapAlgorithm(ClayAlgorithm):
    algorithm_id = "rendermap"
    display_name = "Render similarity map (PNG)"
    group_id = "similarity"
    group_name = "Similarity"
    help_text = (
        "Renders a layer scored by 'Find similar chips' (a 'similarity' field) as a PNG map: viridis classes of "
        "similarity, the top-k matches outlined, the query chip(s) marked, over optional background rasters, with a "
        "legend, a title and a scale bar. Works headless (qgis_process) as well as in the desktop."
    )
    INPUT, BACKGROUND, TITLE, TOP_K, WIDTH = "INPUT", "BACKGROUND", "TITLE", "TOP_K", "WIDTH"

    def initAlgorithm(self, config=None) -> None:  # noqa: N802 - QGIS API
        self.addParameter(QgsProcessingParameterVectorLayer(self.INPUT, "Scored layer (with a 'similarity' field)"))
        self.addParameter(QgsProcessingParameterMultipleLayers(
            self.BACKGROUND, "Background rasters (drawn under the scores)",
            layerType=QgsProcessing.SourceType.TypeRaster, optional=True))
        self.addParameter(QgsProcessingParameterString(self.TITLE, "Title", defaultValue="", optional=True))
        self.addParameter(QgsProcessingParameterNumber(self.TOP_K, "Outline the top k matches", defaultValue=10,
                                                       minValue=0))
        self.addParameter(QgsProcessingParameterNumber(self.WIDTH, "Image width (pixels)", defaultValue=1800,
                                                       minValue=300, maxValue=10000))
        self.addParameter(QgsProcessingParameterFileDestination(self.OUTPUT, "Map image", "PNG files (*.png)"))

    def processAlgorithm(self, parameters, context, feedback) -> dict[str, Any]:  # noqa: N802 - QGIS API
        source = self.parameterAsVectorLayer(parameters, self.INPUT, context)
        if source is None or not source.isValid():
            raise QgsProcessingException("INPUT is not a valid vector layer")
        if source.fields().indexOf(SIMILARITY) < 0:
            raise QgsProcessingException(
                f"INPUT has no '{SIMILARITY}' field: score it first with 'Find similar chips' (clay:similarity)")
        project = QgsProject()
        layer = source.clone()
        project.addMapLayer(layer)
        backgrounds = [raster.clone() for raster in self.parameterAsLayerList(parameters, self.BACKGROUND, context)]
        for raster in backgrounds:
            project.addMapLayer(raster)
        scores, has_negatives = self._scores(layer)
        if not scores:
            raise QgsProcessingException("INPUT has no scored features: every 'similarity' value is empty")
        style_similarity(layer, scores, top_k=self.parameterAsInt(parameters, self.TOP_K, context),
                         has_negatives=has_negatives)
        title = self.parameterAsString(parameters, self.TITLE, context) or f"Similarity: {source.name()}"
        layout = self._layout(project, layer, backgrounds, title)
        output = self.parameterAsFileOutput(parameters, self.OUTPUT, context)
        settings = QgsLayoutExporter.ImageExportSettings()
        settings.dpi = self.parameterAsInt(parameters, self.WIDTH, context) / (PAGE_WIDTH_MM / 25.4)
        result = QgsLayoutExporter(layout).exportToImage(output, settings)
        if result != QgsLayoutExporter.ExportResult.Success:
            raise QgsProcessingException(f"could not write the map image {output} (QGIS export error {result})")
        feedback.pushInfo(f"map written to {output}")
        return {self.OUTPUT: output}

    @staticmethod
    def _scores(layer) -> tuple[list[float], bool]:
        scores, has_negatives = [], False
        example_index = layer.fields().indexOf(EXAMPLE)
        for feature in layer.getFeatures():
            value = feature[SIMILARITY]
            if value is not None and value == value:  # skip NULL and NaN
                scores.append(float(value))
            if example_index >= 0 and feature[EXAMPLE] == NEGATIVE:
                has_negatives = True
        return scores, has_negatives

    @staticmethod
    def _layout(project: QgsProject, layer, backgrounds: list, title: str) -> QgsPrintLayout:
        extent = QgsRectangle(layer.extent())
        extent.scale(1.04)  # a little air around the chips
        map_width = PAGE_WIDTH_MM - 3 * MARGIN_MM - LEGEND_WIDTH_MM
        map_height = max(60.0, map_width * extent.height() / max(extent.width(), 1e-9))
        page_height = map_height + TITLE_HEIGHT_MM + 2 * MARGIN_MM
        layout = QgsPrintLayout(project)
        layout.initializeDefaults()
        layout.pageCollection().page(0).setPageSize(
            QgsLayoutSize(PAGE_WIDTH_MM, page_height, QgsUnitTypes.LayoutUnit.LayoutMillimeters))

        label = QgsLayoutItemLabel(layout)
        label.setText(title)
        label.setFont(QFont("DejaVu Sans", 16))
        label.attemptMove(QgsLayoutPoint(MARGIN_MM, MARGIN_MM / 2))
        label.attemptResize(QgsLayoutSize(PAGE_WIDTH_MM - 2 * MARGIN_MM, TITLE_HEIGHT_MM))
        layout.addLayoutItem(label)

        map_item = QgsLayoutItemMap(layout)
        map_item.setCrs(layer.crs())
        map_item.setLayers([layer, *backgrounds])  # first is drawn on top
        map_item.attemptMove(QgsLayoutPoint(MARGIN_MM, MARGIN_MM + TITLE_HEIGHT_MM))
        map_item.attemptResize(QgsLayoutSize(map_width, map_height))
        map_item.zoomToExtent(extent)
        map_item.setFrameEnabled(True)
        layout.addLayoutItem(map_item)

        legend = QgsLayoutItemLegend(layout)
        legend.setTitle("Cosine similarity")
        legend.setLinkedMap(map_item)
        legend.setAutoUpdateModel(False)
        root = legend.model().rootGroup()
        root.clear()
        root.addLayer(layer)
        legend.attemptMove(QgsLayoutPoint(PAGE_WIDTH_MM - MARGIN_MM - LEGEND_WIDTH_MM, MARGIN_MM + TITLE_HEIGHT_MM))
        layout.addLayoutItem(legend)

        scale_bar = QgsLayoutItemScaleBar(layout)
        scale_bar.setStyle("Single Box")
        scale_bar.setLinkedMap(map_item)
        scale_bar.applyDefaultSize()
        scale_bar.attemptMove(QgsLayoutPoint(PAGE_WIDTH_MM - MARGIN_MM - LEGEND_WIDTH_MM,
                                             MARGIN_MM + TITLE_HEIGHT_MM + map_height - 12))
        layout.addLayoutItem(scale_bar)
        return layout
