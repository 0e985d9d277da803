#!/usr/bin/env bash
# Second GPU session: candidate speed-ups of the bf16 train step and 2K inference, each against
# the configuration measured by gpu_session.sh, in one call (compile all in parallel, then time).
#   bash benchmarks/gpu_tuning.sh [BUDGET_SECONDS]
BUDGET=${1:-400}
OUT=${OUT:-/tmp/dssr_gpu_tuning}
source "$(dirname "$0")/gpu_common.sh"
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
run train_variants "${TRAIN[@]}" "${T1[@]}"
XLA_FLAGS=$FUSE run train_fused "${TRAIN[@]}" "${T2[@]}"
run infer_subpixel "${INFER[@]}"
XLA_FLAGS=$FUSE run infer_fused "${INFER[@]}"
echo "== done after $((SECONDS - START)) s"
