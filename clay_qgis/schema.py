"""What an embeddings layer holds: the scalar columns copied from the file, the score fields a search writes,
and the example roles. The vector cache, the layers, the styling and the search all name fields from here."""

from __future__ import annotations

from qgis.core import QgsField, QgsFields

from clay_qgis import compat

MODES = ("chips", "patches")  # one feature per chip, or per patch of the chip's patch grid
SIMILARITY, RANK, EXAMPLE = "similarity", "rank", "example"
POSITIVE, NEGATIVE = "positive", "negative"  # the roles in the EXAMPLE field
SOURCE_FILE = "source_file"  # the file a row came from, in outputs that span several files

# Scalar attribute columns copied into QGIS (name -> field type); vectors never are.
CHIP_FIELDS = (
    ("chip_id", compat.STRING),
    ("date", compat.DATE),
    ("source_url", compat.STRING),
    ("row", compat.INT),
    ("col", compat.INT),
    ("nodata_fraction", compat.DOUBLE),
)
PATCH_FIELDS = (("patch_row", compat.INT), ("patch_col", compat.INT))
SCORE_FIELDS = ((SIMILARITY, compat.DOUBLE), (RANK, compat.INT), (EXAMPLE, compat.STRING))


def layer_fields(mode: str, *, scores: bool = True) -> QgsFields:
    """The fields of a layer in `mode`: the file's scalar columns, then (unless `scores` is False, for outputs
    that score nothing) similarity, rank and example."""
    fields = QgsFields()
    for name, kind in CHIP_FIELDS + (PATCH_FIELDS if mode == "patches" else ()) + (SCORE_FIELDS if scores else ()):
        fields.append(QgsField(name, kind))
    return fields
