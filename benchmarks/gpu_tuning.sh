#!/usr/bin/env bash
# Candidate speed-ups against the default on a GPU, in one call: the bf16 train step (x2, x4,
# batch 8, LR 64) and x2 inference (2K whole image, 256x256) for the default (the backend's best
# execution) and for each variant given ('key=value,...': execution=plain|cpu|accelerator,
# fast.Execution fields such as phase_up=0, DSSR fields, xla_* XLA flags). Everything is compiled first, in
# parallel, into one persistent cache; then each configuration is timed alone, as long as the
# budget lasts. Set XLA_FLAGS around the call to try compiler flags instead.
#
#   bash benchmarks/gpu_tuning.sh BUDGET_SECONDS VARIANT...
#   bash benchmarks/gpu_tuning.sh 420 phase_up=0 execution=plain xla_gpu_use_runtime_fusion=true
#
# Results: $OUT/train.json, $OUT/infer_0.json (default), $OUT/infer_N.json (the N-th variant).
BUDGET=${1:?usage: gpu_tuning.sh BUDGET_SECONDS VARIANT...}
shift
OUT=${OUT:-$(mktemp -d -t dssr_gpu_tuning.XXXXXX)}
source "$(dirname "$0")/gpu_common.sh"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
VARIANTS=('' "$@")
TRAIN=(python3 benchmarks/train_step.py --steps=20 --warmup=3 --cache_dir="$CACHE"
       --dtypes=bfloat16 --remat=off --scales=2,4)
for v in "${VARIANTS[@]}"; do TRAIN+=("--variant=$v"); done
INFER=(python3 benchmarks/infer.py --repeats=20 --cache_dir="$CACHE" --dtype=bfloat16
       --cases=full2k,x2_256)

T=$(( $(left) / 2 ))
echo "== compiling (at most $T s)"
timeout $T "${TRAIN[@]}" --compile_only --compile_jobs=$((2 * ${#VARIANTS[@]})) \
  >"$OUT/c_train.txt" 2>&1 &
for i in "${!VARIANTS[@]}"; do
  timeout $T "${INFER[@]}" "--variant=${VARIANTS[$i]}" --compile_only --compile_jobs=2 \
    >"$OUT/c_infer_$i.txt" 2>&1 &
done
wait
cat "$OUT"/c_*.txt && rm -f "$OUT"/c_*.txt
echo "== compiled after $((SECONDS - START)) s"
run train "${TRAIN[@]}"
for i in "${!VARIANTS[@]}"; do run "infer_$i" "${INFER[@]}" "--variant=${VARIANTS[$i]}"; done
echo "== done after $((SECONDS - START)) s"
