# Sourced by gpu_tables.sh and gpu_tuning.sh: set-up, the time budget and the timed-run helper.
# Expects BUDGET (seconds) and OUT (a new or empty folder) to be set by the caller.
set -u
CACHE=${CACHE:-$(mktemp -d -t dssr_jax_cache.XXXXXX)}
mkdir -p "$OUT" "$CACHE"
export PYTHONUNBUFFERED=1
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if compgen -G '.whl/*.whl' >/dev/null; then  # e.g. ml_collections, absent from some GPU images
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target "$CACHE/site" .whl/*.whl && export PYTHONPATH="$CACHE/site"
fi
START=$SECONDS

left() { echo $((BUDGET - (SECONDS - START))); }

# run NAME CMD...: runs CMD with what is left of the budget, its JSON in $OUT/NAME.json.
run() {
  local name=$1; shift
  local t; t=$(left)
  if (( t < 20 )); then echo "== $name skipped: budget spent"; return; fi
  echo "== $name ($t s left)"
  timeout "$t" "$@" --json="$OUT/$name.json"
}
