#!/usr/bin/env bash
# Train on a lent GPU machine from the folder benchmarks/device_pack_manifest.py made, one training run per
# RUN given as NAME:FIELD=VALUE,... (TrainConfig fields; recipe=NAME for a named recipe; shards=1 to stream the
# training photos from shards written there first), each run folder tarred into $OUT as it finishes. The run
# named `steprate` instead times the GPU alone: training steps of the gpu recipe on photos already on the GPU.
#
#   device tool: run(command="bash benchmarks/device_train.sh k10: k8:top_class=8", carry=["runs/device-all"])
#
# Every run reads the packed manifest's train and val splits, with the packed ImageNet weights, on CUDA.
set -euo pipefail
cd "$(dirname "$0")/.."
PACK=${PACK:-runs/device-all}
RESULT=${OUT:-runs/device-out}
PY=${PYTHON:-python3}
work=$(mktemp -d)
mkdir -p "$RESULT"
if [ "${WHEELS:-1}" = 1 ]; then  # WHEELS=0: a Python that has them (a dry run here)
  "$PY" -m pip install --quiet --no-index --no-deps --no-compile --no-cache-dir --target "$work/site" "$PACK"/wheels/*.whl
fi
export PYTHONPATH="$work/site:$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
"$PY" -m zipfile -e "$PACK/photos.zip" "$work/photos"
"$PY" - "$PACK/manifest.parquet" "$work/photos" "$work/manifest.parquet" <<'PY'
import sys, pyarrow.parquet as pq
packed, photos, out = sys.argv[1:]
t = pq.read_table(packed)
uris = [f"{photos}/{u}" for u in t.column("uri").to_pylist()]
pq.write_table(t.set_column(t.schema.get_field_index("uri"), "uri", [uris]), out)
PY
if command -v nvidia-smi >/dev/null; then nvidia-smi --query-gpu=name,memory.total --format=csv,noheader; fi  # in the output, not a file: 8 files come back
for run in "$@"; do
  name=${run%%:*}
  start=$(date +%s)
  # The library, not the CLI: the machine lacks the serving packages the CLI imports.
  "$PY" - "$work/manifest.parquet" "$work/$name" "$PACK/lite0.safetensors" "${run#*:}" <<'PY' 2>&1 | tee "$RESULT/$name.log"
import os, sys, time, yaml
from bintally.train.config import RECIPES, TrainConfig
from bintally.train.loop import train
manifest, out, weights, options = sys.argv[1:]
fields = {k: yaml.safe_load(v) for k, v in (o.split("=", 1) for o in options.split(",") if o)}
recipe, use_shards = RECIPES[fields.pop("recipe", "default")], fields.pop("shards", False)
cfg = TrainConfig(**{**recipe, "weights": weights, "device": "cuda", "workers": 14, **fields})
if os.path.basename(out) == "steprate":
    import torch
    from bintally.model.heads import create_model
    from bintally.train.loss import make_loss
    model = create_model(cfg.backbone, cfg.head, list(range(11)), weights).cuda().to(memory_format=torch.channels_last)
    loss_fn, optimizer = make_loss(cfg, model.class_values), torch.optim.AdamW(model.parameters(), lr=cfg.lr)
    x = torch.randn(cfg.batch_size, 3, cfg.image_size, cfg.image_size, device="cuda").to(memory_format=torch.channels_last)
    y = torch.randint(0, 11, (cfg.batch_size,), device="cuda")
    for i in range(130):
        if i == 30:
            torch.cuda.synchronize()
            start = time.perf_counter()
        with torch.autocast("cuda", torch.bfloat16):
            loss = loss_fn(model(x), y)
        optimizer.zero_grad(set_to_none=True); loss.backward(); optimizer.step()
    torch.cuda.synchronize()
    print(f"steprate: {100 * cfg.batch_size / (time.perf_counter() - start):.0f} photos/s, batch {cfg.batch_size}, {cfg.image_size} px, bf16")
    sys.exit(0)
shards = None
if use_shards:
    from bintally.data.shards import ShardsConfig, write_shards
    shards = os.path.join(os.path.dirname(out), "shards")
    start = time.monotonic()
    write_shards(ShardsConfig(manifest=manifest, out=shards, photos_per_shard=250, workers=14))
    print(f"shards written in {time.monotonic() - start:.1f} s", flush=True)
result = train(manifest, out, cfg, shards=shards, on_epoch=lambda epoch, val: print(f"{time.monotonic():.1f}", epoch, {k: round(v, 4) for k, v in val.items()}, flush=True))
print("best", result.best_epoch, result.best_val, result.precision)
PY
  echo "wall_s $(( $(date +%s) - start ))" | tee -a "$RESULT/$name.log"
  if [ -d "$work/$name" ]; then tar -C "$work" -cf "$RESULT/$name.tar" --exclude checkpoint.pt "$name"; fi
done
