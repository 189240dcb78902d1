"""clay_core: Clay foundation-model embeddings, pure compute (no Qt, no QGIS)."""

__version__ = "0.1.0"
