#!/usr/bin/env bash
# Third GPU session: the HR modulation's first conv read through conv2 (`fold_detail_conv`, a CPU
# default so far) on the GPU, alone and with the earlier candidates, against the default, for the
# bf16 train step (x2, x4) and 2K inference (also with the bicubic downsampling as gathers, whose
# dense matrices are 2040x1020 there).
#   bash benchmarks/gpu_tuning_fold.sh [BUDGET_SECONDS]
BUDGET=${1:-420}
OUT=${OUT:-/tmp/dssr_gpu_tuning_fold}
source "$(dirname "$0")/gpu_common.sh"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
FUSE=--xla_gpu_use_runtime_fusion=true  # cuDNN runtime fusion: conv + bias + LeakyReLU
TRAIN=(python3 benchmarks/train_step.py --steps 20 --warmup 3 --cache-dir "$CACHE"
       --dtypes bfloat16 --remat off --scales 2 4)
T1=(--variant '' --variant fold_detail_conv=True --variant fold_detail_conv=True,up_impl=subpixel)
T2=(--variant fold_detail_conv=True,up_impl=subpixel)
INFER=(python3 benchmarks/infer.py --repeats 20 --cache-dir "$CACHE" --dtype bfloat16
       --cases full2k x2_256)
V1=fold_detail_conv=True
V2=fold_detail_conv=True,bicubic_dense=False

T=$(( $(left) / 2 ))
echo "== compiling (at most $T s)"
timeout $T "${TRAIN[@]}" "${T1[@]}" --compile-only --compile-jobs 6 >"$OUT/c1.txt" 2>&1 &
XLA_FLAGS=$FUSE timeout $T "${TRAIN[@]}" "${T2[@]}" --compile-only --compile-jobs 2 \
  >"$OUT/c2.txt" 2>&1 &
timeout $T "${INFER[@]}" --compile-only --compile-jobs 2 >"$OUT/c3.txt" 2>&1 &
timeout $T "${INFER[@]}" --variant $V1 --compile-only --compile-jobs 2 >"$OUT/c4.txt" 2>&1 &
timeout $T "${INFER[@]}" --variant $V2 --compile-only --compile-jobs 2 >"$OUT/c5.txt" 2>&1 &
XLA_FLAGS=$FUSE timeout $T "${INFER[@]}" --variant $V2 --compile-only --compile-jobs 2 \
  >"$OUT/c6.txt" 2>&1 &
wait
cat "$OUT"/c*.txt && rm -f "$OUT"/c*.txt
echo "== compiled after $((SECONDS - START)) s"
run train "${TRAIN[@]}" "${T1[@]}"
run infer_base "${INFER[@]}"
run infer_fold "${INFER[@]}" --variant $V1
run infer_fold_gathers "${INFER[@]}" --variant $V2
XLA_FLAGS=$FUSE run train_fused "${TRAIN[@]}" "${T2[@]}"
XLA_FLAGS=$FUSE run infer_fold_gathers_fused "${INFER[@]}" --variant $V2
echo "== done after $((SECONDS - START)) s"
