"""clay:rendermap - a similarity-scored layer rendered by QGIS to a PNG map (legend, title, scale bar).

The map is composed in a print layout of a private QgsProject, so it renders the same headless
(qgis_process) as in the desktop, and never touches the user's open project.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsLayoutExporter,
    QgsLayoutItemLabel,
    QgsLayoutItemLegend,
    QgsLayoutItemMap,
    QgsLayoutItemScaleBar,
    QgsLayoutPoint,
    QgsLayoutSize,
    QgsLegendRenderer,
    QgsLegendStyle,
    QgsPrintLayout,
    QgsProcessing,
    QgsProcessingException,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterMultipleLayers,
    QgsProcessingParameterNumber,
    QgsProcessingParameterString,
    QgsProcessingParameterVectorLayer,
    QgsProject,
    QgsUnitTypes,
)
from qgis.PyQt.QtGui import QFont

from clay_core.grid.utm import utm_epsg
from clay_qgis import compat
from clay_qgis.algorithms.base import ClayAlgorithm

PAGE_WIDTH_MM = 297.0
MARGIN_MM = 8.0
LEGEND_WIDTH_MM = 78.0
TITLE_HEIGHT_MM = 14.0


def _round_length(metres: float) -> float:
    """The largest 1, 2 or 5 x 10^n metres not above `metres` (scale bar segments)."""
    magnitude = 10 ** math.floor(math.log10(max(metres, 1e-3)))
    return max(step * magnitude for step in (1, 2, 5) if step * magnitude <= metres)


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
        self.addParameter(
            QgsProcessingParameterMultipleLayers(
                self.BACKGROUND,
                "Background rasters (drawn under the scores)",
                layerType=QgsProcessing.SourceType.TypeRaster,
                optional=True,
            )
        )
        self.addParameter(QgsProcessingParameterString(self.TITLE, "Title", defaultValue="", optional=True))
        self.addParameter(
            QgsProcessingParameterNumber(self.TOP_K, "Outline the top k matches", defaultValue=10, minValue=0)
        )
        self.addParameter(
            QgsProcessingParameterNumber(
                self.WIDTH, "Image width (pixels)", defaultValue=1800, minValue=300, maxValue=10000
            )
        )
        self.addParameter(QgsProcessingParameterFileDestination(self.OUTPUT, "Map image", "PNG files (*.png)"))

    def processAlgorithm(self, parameters, context, feedback) -> dict[str, Any]:  # noqa: N802 - QGIS API
        # Imported here, not at module level: clay_qgis.style pulls numpy, which plugin load must not pay.
        from clay_qgis.schema import SIMILARITY
        from clay_qgis.stretch import stretch_for_display
        from clay_qgis.style import style_similarity

        source = self.parameterAsVectorLayer(parameters, self.INPUT, context)
        if source is None or not source.isValid():
            raise QgsProcessingException("INPUT is not a valid vector layer")
        if source.fields().indexOf(SIMILARITY) < 0:
            raise QgsProcessingException(
                f"INPUT has no '{SIMILARITY}' field: score it first with 'Find similar chips' (clay:similarity)"
            )
        project = QgsProject()
        layer = source.clone()
        project.addMapLayer(layer)
        backgrounds = [raster.clone() for raster in self.parameterAsLayerList(parameters, self.BACKGROUND, context)]
        for raster in backgrounds:
            stretch_for_display(raster)
            project.addMapLayer(raster)
        scores, has_negatives = self._scores(layer)
        if not scores:
            raise QgsProcessingException("INPUT has no scored features: every 'similarity' value is empty")
        style_similarity(
            layer,
            np.asarray(scores, dtype=np.float32),
            top_k=self.parameterAsInt(parameters, self.TOP_K, context),
            has_negatives=has_negatives,
        )
        layer.setOpacity(0.8)  # let the imagery show through the classes
        title = self.parameterAsString(parameters, self.TITLE, context) or f"Similarity: {source.name()}"
        layout = self._layout(project, layer, backgrounds, title)
        output = self.parameterAsFileOutput(parameters, self.OUTPUT, context)
        settings = QgsLayoutExporter.ImageExportSettings()
        settings.dpi = self.parameterAsInt(parameters, self.WIDTH, context) / (PAGE_WIDTH_MM / 25.4)
        # A world file (.pgw) georeferences the PNG; embedding georeference/metadata would need GDAL update
        # access, which the PNG driver does not have (it logs an error and writes nothing).
        settings.generateWorldFile = True
        settings.exportMetadata = False
        layout.setCustomProperty("exportWorldFile", True)  # georeference by .pgw, not by GDAL inside the PNG
        result = QgsLayoutExporter(layout).exportToImage(output, settings)
        if result != QgsLayoutExporter.ExportResult.Success:
            raise QgsProcessingException(f"could not write the map image {output} (QGIS export error {result})")
        feedback.pushInfo(f"map written to {output}")
        return {self.OUTPUT: output}

    @staticmethod
    def _scores(layer) -> tuple[list[float], bool]:
        from clay_qgis.schema import EXAMPLE, NEGATIVE, SIMILARITY

        scores, has_negatives = [], False
        example_index = layer.fields().indexOf(EXAMPLE)
        for feature in layer.getFeatures():
            value = feature[SIMILARITY]
            if isinstance(value, (int, float)) and value == value:  # NULL arrives as a QVariant; NaN != NaN
                scores.append(float(value))
            if example_index >= 0 and feature[EXAMPLE] == NEGATIVE:
                has_negatives = True
        return scores, has_negatives

    @staticmethod
    def _map_crs(layer, backgrounds: list) -> QgsCoordinateReferenceSystem:
        """Draw in a projected CRS so chips look square and the scale bar reads in metres: the background's,
        else the layer's own, else (geographic layer) the UTM zone of the layer's centre."""
        for candidate in [*(raster.crs() for raster in backgrounds), layer.crs()]:
            if candidate.isValid() and not candidate.isGeographic():
                return candidate
        centre = QgsCoordinateTransform(
            layer.crs(), QgsCoordinateReferenceSystem("EPSG:4326"), QgsProject.instance()
        ).transform(layer.extent().center())
        return QgsCoordinateReferenceSystem(f"EPSG:{utm_epsg(centre.x(), centre.y())}")

    @classmethod
    def _layout(cls, project: QgsProject, layer, backgrounds: list, title: str) -> QgsPrintLayout:
        crs = cls._map_crs(layer, backgrounds)
        extent = QgsCoordinateTransform(layer.crs(), crs, project).transformBoundingBox(layer.extent())
        extent.scale(1.04)  # a little air around the chips
        map_width = PAGE_WIDTH_MM - 3 * MARGIN_MM - LEGEND_WIDTH_MM
        map_height = max(60.0, map_width * extent.height() / max(extent.width(), 1e-9))
        page_height = map_height + TITLE_HEIGHT_MM + 2 * MARGIN_MM
        layout = QgsPrintLayout(project)
        layout.initializeDefaults()
        layout.pageCollection().page(0).setPageSize(
            QgsLayoutSize(PAGE_WIDTH_MM, page_height, QgsUnitTypes.LayoutUnit.LayoutMillimeters)
        )

        label = QgsLayoutItemLabel(layout)
        label.setText(title)
        compat.set_text_font(label, QFont("DejaVu Sans", 16))
        label.attemptMove(QgsLayoutPoint(MARGIN_MM, MARGIN_MM / 2))
        label.attemptResize(QgsLayoutSize(PAGE_WIDTH_MM - 2 * MARGIN_MM, TITLE_HEIGHT_MM))
        layout.addLayoutItem(label)

        map_item = QgsLayoutItemMap(layout)
        layout.addLayoutItem(map_item)  # sizing and zooming only take effect once the item is in the layout
        map_item.setCrs(crs)
        map_item.setLayers([layer, *backgrounds])  # first is drawn on top
        map_item.setKeepLayerSet(True)
        map_item.attemptMove(QgsLayoutPoint(MARGIN_MM, MARGIN_MM + TITLE_HEIGHT_MM))
        map_item.attemptResize(QgsLayoutSize(map_width, map_height))
        map_item.setExtent(extent)  # zoomToExtent() leaves an empty extent on a new item in QGIS 3.22
        map_item.setFrameEnabled(True)

        legend = QgsLayoutItemLegend(layout)
        legend.setTitle("Cosine similarity to the query")
        legend.setLinkedMap(map_item)
        legend.setAutoUpdateModel(False)
        root = legend.model().rootGroup()
        root.clear()
        QgsLegendRenderer.setNodeLegendStyle(root.addLayer(layer), QgsLegendStyle.Style.Hidden)  # no file name
        for style, size in ((QgsLegendStyle.Style.Title, 12), (QgsLegendStyle.Style.SymbolLabel, 9)):
            compat.set_text_font(legend.rstyle(style), QFont("DejaVu Sans", size))
        legend.attemptMove(QgsLayoutPoint(PAGE_WIDTH_MM - MARGIN_MM - LEGEND_WIDTH_MM, MARGIN_MM + TITLE_HEIGHT_MM))
        layout.addLayoutItem(legend)

        scale_bar = QgsLayoutItemScaleBar(layout)
        layout.addLayoutItem(scale_bar)
        scale_bar.setStyle("Single Box")
        scale_bar.setLinkedMap(map_item)
        scale_bar.applyDefaultSize()
        # Two segments of a round length about a tenth of the map width, labelled in km.
        segment_m = _round_length(extent.width() / 10)
        scale_bar.setNumberOfSegmentsLeft(0)
        scale_bar.setNumberOfSegments(2)
        scale_bar.setUnits(QgsUnitTypes.DistanceUnit.DistanceMeters)
        scale_bar.setUnitsPerSegment(segment_m)
        scale_bar.setMapUnitsPerScaleBarUnit(1000.0)
        scale_bar.setUnitLabel("km")
        scale_bar.attemptMove(
            QgsLayoutPoint(PAGE_WIDTH_MM - MARGIN_MM - LEGEND_WIDTH_MM, MARGIN_MM + TITLE_HEIGHT_MM + map_height - 12)
        )
        return layout
