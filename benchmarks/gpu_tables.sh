#!/usr/bin/env bash
# The GPU numbers of docs/performance.md in one call: train step (x2/x4, bf16/f32, remat,
# each execution strategy of the accelerator's best switched off, and the plain network) and
# inference (256x256, 2K whole and tiled; f32 x2/x4).
#
#   bash benchmarks/gpu_tables.sh [BUDGET_SECONDS]   # results and logs go to $OUT (default: a
#                                                      # new temporary folder)
#
# Needs jax (with its GPU plugin), flax, optax, numpy and ml_collections; wheels found in .whl/
# are installed first (for machines without ml_collections). Compilation dominates a short GPU
# lease, so every configuration is compiled first, all in parallel, into one persistent
# compilation cache; then each is timed alone, in priority order, as long as the budget lasts.
# (Autotuning under that contention can only pick slower kernels, never faster ones.)
BUDGET=${1:-540}
OUT=${OUT:-$(mktemp -d -t dssr_gpu_tables.XXXXXX)}
source "$(dirname "$0")/gpu_common.sh"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c 'import jax, flax, optax; print("jax", jax.__version__, "flax", flax.__version__,
             "optax", optax.__version__, jax.devices())' || exit 1

TRAIN=(python3 benchmarks/train_step.py --steps=20 --warmup=3 --cache_dir="$CACHE")
INFER=(python3 benchmarks/infer.py --repeats=20 --tile=512 --overlap=32 --cache_dir="$CACHE")
MAIN=(--scales=2,4 --dtypes=bfloat16,float32 --remat=off)
REMAT=(--scales=2,4 --dtypes=bfloat16 --remat=on)
# fast.ACCELERATOR's strategies, each switched off alone, and the plain network.
VARIANTS=(--scales=2 --dtypes=bfloat16 --remat=off --variant=phase_up=0
          --variant=unrolled_steps=0 --variant=execution=plain)
INF16=(--cases=x2_256,full2k,tiled2k --dtype=bfloat16)
INF32=(--cases=x2,x4,x2_256 --dtype=float32)


# 1. Compile everything at once (15 processes), in at most half the budget. (timeout signals its
# whole process group, so the compiling children go with it.)
T=$(( $(left) / 2 ))
echo "== compiling (at most $T s)"
timeout $T "${TRAIN[@]}" "${MAIN[@]}" --compile_only --compile_jobs=4 >"$OUT/c_main.txt" 2>&1 &
timeout $T "${TRAIN[@]}" "${REMAT[@]}" --compile_only --compile_jobs=2 >"$OUT/c_remat.txt" 2>&1 &
timeout $T "${TRAIN[@]}" "${VARIANTS[@]}" --compile_only --compile_jobs=3 >"$OUT/c_var.txt" 2>&1 &
timeout $T "${INFER[@]}" "${INF16[@]}" --compile_only --compile_jobs=3 >"$OUT/c_inf16.txt" 2>&1 &
timeout $T "${INFER[@]}" "${INF32[@]}" --compile_only --compile_jobs=3 >"$OUT/c_inf32.txt" 2>&1 &
wait
cat "$OUT"/c_*.txt && rm -f "$OUT"/c_*.txt
echo "== compiled after $((SECONDS - START)) s"

# 2. Time, most important first; each run gets what is left of the budget.
run train "${TRAIN[@]}" "${MAIN[@]}"
run infer_bf16 "${INFER[@]}" "${INF16[@]}"
run train_remat "${TRAIN[@]}" "${REMAT[@]}"
run train_variants "${TRAIN[@]}" "${VARIANTS[@]}"
run infer_f32 "${INFER[@]}" "${INF32[@]}"
echo "== done after $((SECONDS - START)) s"
