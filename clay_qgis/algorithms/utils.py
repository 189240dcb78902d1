"""Helpers shared by several clay algorithms (no algorithm module imports another: what two of them need
lives here, in base.py, rasters.py or search.py)."""

from __future__ import annotations

from qgis.core import QgsFeatureSink, QgsProcessingException

from clay_core.parsing import parse_date

GEOPARQUET_FILTER = "GeoParquet (*.gpq *.parquet *.geoparquet);;All files (*)"
GEOPARQUET_OUTPUT_FILTER = "GeoParquet (*.gpq *.parquet)"  # the suffixes the writers accept for an output


def date_argument(text: str, what: str = "date") -> str | None:
    """'' -> None; 'YYYY-MM-DD' -> the same text (the CLI argument); anything else -> a message naming the format."""
    text = (text or "").strip()
    return parse_date(text, what).isoformat() if text else None


def write_features(sink, features: list, feedback, chunk: int = 5000) -> None:
    """Add features in chunks so progress moves and cancel is honoured on big files."""
    total = max(1, len(features))
    for start in range(0, len(features), chunk):
        if feedback.isCanceled():
            return
        if not sink.addFeatures(features[start : start + chunk], QgsFeatureSink.Flag.FastInsert):
            raise QgsProcessingException("could not write the features to the output layer")
        feedback.setProgress(100.0 * min(len(features), start + chunk) / total)
