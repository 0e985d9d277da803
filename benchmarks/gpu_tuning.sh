#!/usr/bin/env bash
# Second GPU session: candidate speed-ups of the bf16 train step and 2K inference, each against
# the configuration measured by gpu_session.sh, in one call (compile all in parallel, then time).
#   bash benchmarks/gpu_tuning.sh [BUDGET_SECONDS]
set -u
BUDGET=${1:-400}
OUT=${OUT:-/tmp/dssr_gpu_tuning}
CACHE=${CACHE:-/tmp/dssr_jax_cache}
mkdir -p "$OUT" "$CACHE"
export PYTHONUNBUFFERED=1
cd "$(dirname "$0")/.."
if compgen -G '.whl/*.whl' >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/dssr_site .whl/*.whl && export PYTHONPATH=/tmp/dssr_site
fi
START=$SECONDS
left() { echo $((BUDGET - (SECONDS - START))); }
FUSE=--xla_gpu_use_runtime_fusion=true  # cuDNN runtime fusion: conv + bias + LeakyReLU
TRAIN=(python3 benchmarks/train_step.py --steps 20 --warmup 3 --cache-dir "$CACHE"
       --dtypes bfloat16 --remat off)
T1=(--scales 2 4 --variant up_impl=subpixel --variant up_impl=subpixel,down_impl=space_to_depth)
T2=(--scales 2 4 --variant up_impl=subpixel)
INFER=(python3 benchmarks/infer.py --repeats 20 --cache-dir "$CACHE" --dtype bfloat16
       --cases full2k x2_256 --variant up_impl=subpixel)

T=$(( $(left) / 2 ))
echo "== compiling (at most $T s)"
timeout $T "${TRAIN[@]}" "${T1[@]}" --compile-only --compile-jobs 4 >"$OUT/c1.txt" 2>&1 &
XLA_FLAGS=$FUSE timeout $T "${TRAIN[@]}" "${T2[@]}" --compile-only --compile-jobs 2 \
  >"$OUT/c2.txt" 2>&1 &
timeout $T "${INFER[@]}" --compile-only --compile-jobs 2 >"$OUT/c3.txt" 2>&1 &
XLA_FLAGS=$FUSE timeout $T "${INFER[@]}" --compile-only --compile-jobs 2 >"$OUT/c4.txt" 2>&1 &
wait
cat "$OUT"/c*.txt && rm -f "$OUT"/c*.txt
echo "== compiled after $((SECONDS - START)) s"
run() {
  local name=$1; shift
  local t; t=$(left)
  if (( t < 20 )); then echo "== $name skipped: budget spent"; return; fi
  echo "== $name ($t s left)"
  timeout "$t" "$@" --json "$OUT/$name.json"
}
run train_variants "${TRAIN[@]}" "${T1[@]}"
XLA_FLAGS=$FUSE run train_fused "${TRAIN[@]}" "${T2[@]}"
run infer_subpixel "${INFER[@]}"
XLA_FLAGS=$FUSE run infer_fused "${INFER[@]}"
echo "== done after $((SECONDS - START)) s"
