"""QGIS API differences between 3.22 (Debian 12) and 3.40/3.44 LTR / 4.x (Qt6), in one place.

Rule: use the current API where this QGIS has it, so 3.40/3.44 print no deprecation warning from our code,
and fall back to the 3.22 form otherwise. Enum values come from the `Qgis` namespace (3.30+) when it has
them; the older scoped names (`QgsProcessing.SourceType.TypeVectorPolygon`) exist in 3.22 and are kept as
aliases in later releases, including the Qt6 builds.
"""

from __future__ import annotations

from typing import Any

from qgis.core import Qgis, QgsRectangle, QgsWkbTypes

QGIS_VERSION = Qgis.QGIS_VERSION_INT
# QgsField(name, QVariant.Type) is deprecated from 3.38 on: fields are typed by QMetaType.Type there.
FIELDS_USE_QMETATYPE = QGIS_VERSION >= 33800


def _enum(new_path: str, old_owner: Any, old_path: str) -> Any:
    """`Qgis.<new_path>` when this QGIS has it, else `<old_owner>.<old_path>` (both dotted)."""
    value: Any = Qgis
    try:
        for part in new_path.split("."):
            value = getattr(value, part)
        return value
    except AttributeError:
        value = old_owner
        for part in old_path.split("."):
            value = getattr(value, part)
        return value


WKB_POLYGON = _enum("WkbType.Polygon", QgsWkbTypes, "Type.Polygon")


def _field_type(metatype_name: str, variant_name: str) -> Any:
    if FIELDS_USE_QMETATYPE:
        from qgis.PyQt.QtCore import QMetaType

        return getattr(QMetaType.Type, metatype_name)
    from qgis.PyQt.QtCore import QVariant

    return getattr(QVariant, variant_name)


# Field types for QgsField(name, type): QMetaType on 3.38+, QVariant before.
STRING = _field_type("QString", "String")
DATE = _field_type("QDate", "Date")
INT = _field_type("Int", "Int")
DOUBLE = _field_type("Double", "Double")


def null_rectangle() -> QgsRectangle:
    """An empty rectangle that combineExtentWith() grows from nothing (setMinimal() is deprecated in 3.40 in
    favour of setNull())."""
    rectangle = QgsRectangle()
    if hasattr(rectangle, "setNull"):
        rectangle.setNull()
    else:
        rectangle.setMinimal()
    return rectangle


def set_text_font(item: Any, font: Any) -> None:
    """Font of a layout label or a legend style: a QgsTextFormat where the item takes one (labels from 3.24,
    legend styles from 3.30; setFont is deprecated there), else setFont."""
    if hasattr(item, "setTextFormat"):
        from qgis.core import QgsTextFormat

        item.setTextFormat(QgsTextFormat.fromQFont(font))
    else:
        item.setFont(font)
