"""Widgets: the find-similar map tool and the similarity dock (logic lives in clay_qgis.layers)."""
