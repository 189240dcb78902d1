"""Per-platform band metadata: names, wavelengths (micrometres), normalisation means/stds, GSD.

Band names are canonical across the project: Sentinel-2 bands as "B02".."B12"/"B8A", Sentinel-1 as
"VH"/"VV", the Copernicus DEM as "DEM". Sources map file/asset names onto these.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Band:
    name: str
    wavelength_um: float | None  # central wavelength; None for SAR/DEM
    mean: float
    std: float
    # Other names the band goes by (STAC common names such as "red", Clay metadata.yaml names): sources
    # and users may pass these; `Sensor.band` resolves them to this band.
    aliases: tuple[str, ...] = ()


@dataclass(frozen=True)
class Sensor:
    name: str
    bands: tuple[Band, ...]
    gsd_m: float
    # Sentinel-1 RTC backscatter arrives linear (gamma0) but Clay v1.5 was trained on dB: models that
    # use this sensor convert with 10*log10(max(x, 1e-10)) before normalising.
    linear_to_db: bool = False
    description: str = ""

    @property
    def band_names(self) -> tuple[str, ...]:
        return tuple(band.name for band in self.bands)

    def band(self, name: str) -> Band:
        for band in self.bands:
            if band.name == name:
                return band
        # Aliases and case differences ("red", "b04", "vv") are accepted, canonical names win.
        wanted = name.lower()
        for band in self.bands:
            if band.name.lower() == wanted or wanted in (alias.lower() for alias in band.aliases):
                return band
        raise KeyError(f"{self.name} has no band {name!r}; it has {', '.join(self.band_names)}")

    def has_band(self, name: str) -> bool:
        try:
            self.band(name)
        except KeyError:
            return False
        return True

    def wavelengths_um(self, names: tuple[str, ...] | None = None) -> np.ndarray:
        """Central wavelengths in micrometres; a band without one (SAR pseudo-bands excepted) raises."""
        values = []
        for name in names or self.band_names:
            band = self.band(name)
            if band.wavelength_um is None:
                raise KeyError(f"{self.name} band {band.name!r} has no wavelength")
            values.append(band.wavelength_um)
        return np.array(values, dtype=np.float32)

    def means(self, names: tuple[str, ...] | None = None) -> np.ndarray:
        return np.array([self.band(n).mean for n in (names or self.band_names)], dtype=np.float32)

    def stds(self, names: tuple[str, ...] | None = None) -> np.ndarray:
        return np.array([self.band(n).std for n in (names or self.band_names)], dtype=np.float32)


# Clay v0: 13 channels in file/tensor order (spec/clay.md 1.1). Index 10 is VH and 11 is VV: the v0 code
# stacked ["vh", "vv"] (the docs table has them swapped; the statistics confirm the code's order).
CLAY_V0 = Sensor(
    name="clay-v0",
    gsd_m=10.0,
    bands=(
        Band("B02", 0.490, 1369.03, 2026.96),
        Band("B03", 0.560, 1597.68, 2011.88),
        Band("B04", 0.665, 1741.10, 2146.35),
        Band("B05", 0.705, 2053.58, 2138.96),
        Band("B06", 0.740, 2569.82, 2003.27),
        Band("B07", 0.783, 2763.01, 1962.45),
        Band("B08", 0.842, 2858.43, 2016.38),
        Band("B8A", 0.865, 2893.86, 1917.12),
        Band("B11", 1.610, 2303.00, 1679.88),
        Band("B12", 2.190, 1807.79, 1568.06),
        Band("VH", None, 0.026, 0.118),
        Band("VV", None, 0.118, 0.873),
        Band("DEM", None, 499.46, 880.35),
    ),
)


# Clay v1/v1.5 platforms (configs/metadata.yaml of the v1.5 release; spec/clay.md 6.5). Wavelengths in µm,
# means/stds in the platform's raw units. The tensor order of each platform is its band order below.
def _bands(rows: list[tuple[str, float | None, float, float, tuple[str, ...]]]) -> tuple[Band, ...]:
    return tuple(Band(name, wavelength, mean, std, aliases) for name, wavelength, mean, std, aliases in rows)


SENTINEL2_L2A = Sensor(
    name="sentinel-2-l2a",
    gsd_m=10.0,
    description="Sentinel-2 L2A surface reflectance (DN, scale 1e-4)",
    bands=_bands(
        [
            ("B02", 0.493, 1105.0, 1809.0, ("blue",)),
            ("B03", 0.560, 1355.0, 1757.0, ("green",)),
            ("B04", 0.665, 1552.0, 1888.0, ("red",)),
            ("B05", 0.704, 1887.0, 1870.0, ("rededge1",)),
            ("B06", 0.740, 2422.0, 1732.0, ("rededge2",)),
            ("B07", 0.783, 2630.0, 1697.0, ("rededge3",)),
            ("B08", 0.842, 2743.0, 1742.0, ("nir",)),
            ("B8A", 0.865, 2785.0, 1648.0, ("nir08",)),
            ("B11", 1.610, 2388.0, 1470.0, ("swir16",)),
            ("B12", 2.190, 1835.0, 1379.0, ("swir22",)),
        ]
    ),
)

# Landsat Collection 2: band names are the STAC common names (the numbering differs between TM/ETM+/OLI).
_LANDSAT_WAVELENGTHS = {"red": 0.65, "green": 0.56, "blue": 0.48, "nir08": 0.86, "swir16": 1.6, "swir22": 2.2}

LANDSAT_C2_L1 = Sensor(
    name="landsat-c2l1",
    gsd_m=30.0,
    description="Landsat Collection 2 Level-1 (DN)",
    bands=_bands(
        [
            ("red", _LANDSAT_WAVELENGTHS["red"], 10678.0, 6025.0, ()),
            ("green", _LANDSAT_WAVELENGTHS["green"], 10563.0, 5411.0, ()),
            ("blue", _LANDSAT_WAVELENGTHS["blue"], 11083.0, 5468.0, ()),
            ("nir08", _LANDSAT_WAVELENGTHS["nir08"], 14792.0, 6746.0, ("nir",)),
            ("swir16", _LANDSAT_WAVELENGTHS["swir16"], 12276.0, 5897.0, ()),
            ("swir22", _LANDSAT_WAVELENGTHS["swir22"], 10114.0, 4850.0, ()),
        ]
    ),
)

LANDSAT_C2_L2 = Sensor(
    name="landsat-c2l2-sr",
    gsd_m=30.0,
    description="Landsat Collection 2 Level-2 surface reflectance (DN)",
    bands=_bands(
        [
            ("red", _LANDSAT_WAVELENGTHS["red"], 13705.0, 9578.0, ()),
            ("green", _LANDSAT_WAVELENGTHS["green"], 13310.0, 9408.0, ()),
            ("blue", _LANDSAT_WAVELENGTHS["blue"], 12474.0, 10144.0, ()),
            ("nir08", _LANDSAT_WAVELENGTHS["nir08"], 17801.0, 8277.0, ("nir",)),
            ("swir16", _LANDSAT_WAVELENGTHS["swir16"], 14615.0, 5300.0, ()),
            ("swir22", _LANDSAT_WAVELENGTHS["swir22"], 12701.0, 4522.0, ()),
        ]
    ),
)

NAIP = Sensor(
    name="naip",
    gsd_m=1.0,
    description="USDA NAIP aerial imagery (8-bit)",
    bands=_bands(
        [
            ("red", 0.65, 110.16, 47.23, ()),
            ("green", 0.56, 115.41, 39.82, ()),
            ("blue", 0.48, 98.15, 35.43, ()),
            ("nir", 0.842, 139.04, 49.86, ()),
        ]
    ),
)

LINZ = Sensor(
    name="linz",
    gsd_m=0.5,
    description="LINZ New Zealand aerial imagery (8-bit RGB)",
    bands=_bands(
        [
            ("red", 0.635, 89.96, 41.83, ()),
            ("green", 0.555, 99.46, 36.96, ()),
            ("blue", 0.465, 89.51, 31.45, ()),
        ]
    ),
)

# The wavelengths are the synthetic tokens Clay v1.5 was trained with (both polarisations share C-band);
# the statistics are in dB (v1.5 converted linear backscatter to dB; v1.0 used linear values).
SENTINEL1_RTC = Sensor(
    name="sentinel-1-rtc",
    gsd_m=10.0,
    linear_to_db=True,
    description="Sentinel-1 RTC backscatter (linear gamma0 in, converted to dB)",
    bands=_bands(
        [
            ("VV", 3.5, -12.113, 8.314, ("vv",)),
            ("VH", 4.0, -18.673, 8.017, ("vh",)),
        ]
    ),
)

MODIS = Sensor(
    name="modis",
    gsd_m=500.0,
    description="MODIS surface reflectance (MOD09/MYD09, DN scale 1e-4)",
    bands=_bands(
        [
            ("sur_refl_b01", 0.645, 1072.0, 1643.0, ("B01", "red")),
            ("sur_refl_b02", 0.858, 1624.0, 1878.0, ("B02", "nir")),
            ("sur_refl_b03", 0.469, 931.0, 1449.0, ("B03", "blue")),
            ("sur_refl_b04", 0.555, 1023.0, 1538.0, ("B04", "green")),
            ("sur_refl_b05", 1.240, 1599.0, 1763.0, ("B05",)),
            ("sur_refl_b06", 1.640, 1404.0, 1618.0, ("B06",)),
            ("sur_refl_b07", 2.130, 1051.0, 1396.0, ("B07",)),
        ]
    ),
)

SENSORS: dict[str, Sensor] = {
    sensor.name: sensor
    for sensor in (CLAY_V0, SENTINEL2_L2A, LANDSAT_C2_L1, LANDSAT_C2_L2, NAIP, LINZ, SENTINEL1_RTC, MODIS)
}


def get_sensor(name: str) -> Sensor:
    try:
        return SENSORS[name]
    except KeyError:
        raise KeyError(f"unknown sensor {name!r}; known: {', '.join(sorted(SENSORS))}") from None
