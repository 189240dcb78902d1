"""Widgets: the find-similar map tool and the similarity dock (the search lives in clay_qgis.session)."""
