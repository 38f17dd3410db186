#!/usr/bin/env bash
# One accelerator benchmark run (under 8 minutes on one GPU), written as a markdown table.
#
#   bash benchmarks/gpu.sh [OUT.md]          # default OUT: /tmp/genjax_gpu_bench.md
#   TINY=1 bash benchmarks/gpu.sh            # every part at tiny size (CPU, a smoke test)
#
# Parts (each a script of benchmarks/, one JSON line each, gathered into the table):
#   1. train step of configs/ddpm_cifar_bench.py (the 38.3M-parameter DDPM CIFAR-10 U-Net,
#      32x32x3, batch 128) in float32 and in bfloat16: first-compile seconds, images/s
#      (benchmarks/train_speed.py);
#   2. DDIM sampling, one jitted fori_loop vs a Python loop over a jitted step, for a small
#      (configs/ddpm_digits.py) and a large (ddpm_cifar_bench, bfloat16) network
#      (benchmarks/sampler_speed.py);
#   3. the token prior's sampler, key/value cache vs recomputing the sequence
#      (benchmarks/token_sampler_speed.py; the VQ-VAE it needs is trained for a few steps
#      first: speed does not depend on training).
# Environment: PYTHON (default: python), TINY=1, GENJAX_BENCH_CACHE (a persistent compile
# cache directory to reuse across runs; by default a fresh one per run, so that the
# compile seconds are first compiles). XLA_PYTHON_CLIENT_PREALLOCATE=false: memory is
# taken as needed (several processes run one after another; nvidia-smi shows real use).
set -u -o pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$HERE")"
OUT="${1:-/tmp/genjax_gpu_bench.md}"
PY="${PYTHON:-python}"
TINY="${TINY:-0}"
WORK="$(mktemp -d /tmp/genjax_gpu_bench.XXXXXX)"
RESULTS="$WORK/results.jsonl"
: > "$RESULTS"

export XLA_PYTHON_CLIENT_PREALLOCATE=false
export JAX_COMPILATION_CACHE_DIR="${GENJAX_BENCH_CACHE:-$WORK/jax_cache}"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
cd "$ROOT" || exit 1

echo "== machine"
if command -v nvidia-smi > /dev/null 2>&1; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader \
    | tee "$WORK/gpu.txt"
else
  echo "no nvidia-smi" | tee "$WORK/gpu.txt"
fi
"$PY" -c "import jax; print('jax.devices():', jax.devices())" | tee "$WORK/devices.txt"

CIFAR=configs/ddpm_cifar_bench.py
if [ "$TINY" = "1" ]; then
  UNET=(--config.model.base_channels=8 "--config.model.channel_mults=(1,2)"
        --config.model.num_res_blocks=1 --config.model.sample_steps=2)
  TRAIN=(--config.training.batch_size=8 --config.training.num_sample_images=2
         --steps 2 --repeats 1)
  SAMPLE_SMALL=(--config.model.base_channels=8 "--config.model.channel_mults=(1,)"
                --steps 3 --num 2 --repeats 1)
  SAMPLE_LARGE=("${UNET[@]}" --steps 3 --num 2 --repeats 1)
  VQ=("--config.model.channels=(8,)" --config.model.num_codes=8 --config.model.code_dim=4
      --config.model.dead_window=2 --config.training.batch_size=8)
  PRIOR=(--config.model.dim=16 --config.model.num_layers=1 --config.model.num_heads=2
         --num 2 --repeats 1)
else
  UNET=()
  TRAIN=(--config.training.num_sample_images=64 --steps 50 --repeats 2)
  SAMPLE_SMALL=(--steps 100 --num 64 --repeats 3)
  SAMPLE_LARGE=(--steps 100 --num 64 --repeats 2)
  VQ=()
  PRIOR=(--num 64 --repeats 3)
fi

FAILED=0
run() {  # run PART SETTING COMMAND...: appends {"part", "setting", "result" | "error"}
  local part="$1" setting="$2"; shift 2
  echo "== $part ($setting)"
  local log="$WORK/$(echo "$part $setting" | tr -c 'A-Za-z0-9\n' '_').log"
  local start=$SECONDS
  if "$@" > "$log" 2>&1; then
    local line; line="$(grep '^{' "$log" | tail -1)"
    echo "{\"part\": \"$part\", \"setting\": \"$setting\", \"wall_s\": $((SECONDS - start)), \"result\": $line}" \
      >> "$RESULTS"
    echo "$line"
  else
    FAILED=1
    tail -5 "$log"
    echo "{\"part\": \"$part\", \"setting\": \"$setting\", \"wall_s\": $((SECONDS - start)), \"error\": \"see $log\"}" \
      >> "$RESULTS"
  fi
}

for dtype in float32 bfloat16; do
  run "train step" "ddpm_cifar_bench $dtype" \
    "$PY" benchmarks/train_speed.py --config "$CIFAR:$dtype" "${UNET[@]}" "${TRAIN[@]}"
done
run "sampler" "small: ddpm_digits" \
  "$PY" benchmarks/sampler_speed.py --config configs/ddpm_digits.py "${SAMPLE_SMALL[@]}"
run "sampler" "large: ddpm_cifar_bench bfloat16" \
  "$PY" benchmarks/sampler_speed.py --config "$CIFAR:bfloat16" "${SAMPLE_LARGE[@]}"
VQDIR="$WORK/vqvae_digits"
run "token prior" "token_prior_digits" bash -c '
  "$0" -m genjax.cli train --config configs/vqvae_digits.py --workdir "$1" \
    --config.training.num_steps=4 --config.training.log_every=4 \
    --config.training.checkpoint_every=4 --config.training.num_sample_images=0 \
    --config.training.progress=False --config.eval.num_samples=0 "${@:3}" > "$1.log" 2>&1 \
    || { tail -20 "$1.log"; exit 1; }
  "$0" benchmarks/token_sampler_speed.py --config configs/token_prior_digits.py \
    --config.model.vqvae_workdir="$1" $2' "$PY" "$VQDIR" "${PRIOR[*]}" "${VQ[@]}"

"$PY" - "$RESULTS" "$WORK/gpu.txt" "$WORK/devices.txt" "$TINY" > "$OUT" <<'PYEOF'
import json, platform, sys
import jax, jaxlib, flax, optax
results, gpu, devices, tiny = sys.argv[1:5]
rows = [json.loads(line) for line in open(results)]
print("# genjax accelerator benchmarks" + (" (TINY=1: tiny sizes, a smoke test)" if tiny == "1" else ""))
print()
print(f"- GPU: {open(gpu).read().strip()}")
print(f"- {open(devices).read().strip()}")
print(f"- python {platform.python_version()}, jax {jax.__version__}, jaxlib {jaxlib.__version__}, "
      f"flax {flax.__version__}, optax {optax.__version__}")
print()
print("| part | setting | measurement | wall s |")
print("|---|---|---|---|")
def fmt(r):
    if "error" in r:
        return "FAILED (" + r["error"] + ")"
    x = r["result"]
    if r["part"] == "train step":
        return (f"first compile {x['compile_s']} s, {x['train_images_per_s']} images/s "
                f"({x['train_steps_per_s']} steps/s, batch {x['batch_size']}), "
                f"sampling {x['samples_per_s']} images/s")
    if r["part"] == "sampler":
        return (f"{x['steps']} DDIM steps x {x['num_samples']}: fori_loop {x['fori_loop_s']} s, "
                f"Python loop {x['python_loop_s']} s, speed-up {x['speedup']}x")
    return (f"{x['positions']} positions x {x['num']}: kv cache {x['kv_cache_s']} s, "
            f"recompute {x['recompute_s']} s, speed-up {x['cache_speedup']:.2f}x, "
            f"same codes {x['same_codes']}")
for r in rows:
    print(f"| {r['part']} | {r['setting']} | {fmt(r)} | {r['wall_s']} |")
PYEOF
echo
cat "$OUT"
echo
echo "table written to $OUT (logs in $WORK)"
exit $FAILED
