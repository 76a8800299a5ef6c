#!/usr/bin/env bash
# Manas (search=manas) on digits and Fashion-MNIST, and RQ2's four ablation arms
# on digits, shortened for a 2-core CPU: at most 4 matched models, 2 epochs each,
# 1 epoch per dropout variant or morph child, 12 trials per search (the morph
# search runs until then, so the four arms train equally many models); Fashion-MNIST
# trains 2 matched models (2 epochs) in 6 trials on a 3,000-image subset
# (FASHION_MODELS, FASHION_EPOCHS, FASHION_TRIALS, FASHION_MAX_TRAIN; the paper:
# 20 h searches on a V100).
# Prints the best models next to Manas Table 3 (Fashion: Manas 11% error, 9
# layers, 1.8M params; Auto-Keras 5.2%, 22 layers, 14.7M).
#   ZOO=zoo.sqlite bash experiments/manas_fashion.sh [OUT_DIR]
# ZOO: a zoo from `nas-mine DIR --db zoo.sqlite` (default: the shipped zoo).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/manas}
mkdir -p "$OUT"
ZOO_ARG=()
if [ -n "${ZOO:-}" ]; then ZOO_ARG=("search.space.zoo=$ZOO"); fi
COMMON=(logger=console progress=false search.max_trials=${MAX_TRIALS:-12} search.space.initial_epochs=2
        search.space.epochs=1 train.patience=null)
MANAS=(search.space.max_models=4 search.space.morph_trials=null)
run() {  # run NAME ARGS...: one search in $OUT/NAME (resumed if it was interrupted)
  local name=$1; shift
  if [ -f "$OUT/$name/results.json" ]; then echo "$name: done before"; return; fi
  .venv/bin/nas-search "${COMMON[@]}" "$@" hydra.run.dir="$OUT/$name" resume=true > "$OUT/$name.log" 2>&1 \
    || { tail -20 "$OUT/$name.log"; exit 1; }
  tail -1 "$OUT/$name.log" | cut -c1-200
}
for ARM in manas manas_transformed manas_original; do
  run "digits-$ARM" search=$ARM data=digits "${MANAS[@]}" "${ZOO_ARG[@]}"
done
run digits-manas_autokeras search=manas_autokeras data=digits
COMMON=(logger=console progress=false search.max_trials=${FASHION_TRIALS:-6}
        search.space.initial_epochs=${FASHION_EPOCHS:-2} search.space.epochs=1 train.patience=null)
run fashion-manas search=manas data=fashion_mnist data.max_train=${FASHION_MAX_TRAIN:-3000} \
  search.space.max_models=${FASHION_MODELS:-2} search.space.morph_trials=null "${ZOO_ARG[@]}"
.venv/bin/python - "$OUT" <<'PY'
import json, os, sys
out = sys.argv[1]
print(f"{'run':28s} {'trials':>6s} {'wall s':>7s} {'test err %':>10s} {'depth':>5s} {'params':>10s}  best trial's choices")
for name in sorted(os.listdir(out)):
    path = os.path.join(out, name, "results.json")
    if not os.path.exists(path):
        continue
    r = json.load(open(path))
    choices = {k: v for k, v in r["choices"].items() if k in ("phase", "optimizer", "dropout_rule", "morph", "repo")}
    print(f"{name:28s} {r['trials']:6d} {r['wall_seconds']:7.0f} {100 * (1 - r['test_accuracy']):10.2f} "
          f"{r['depth']:5d} {r['num_params']:10,d}  {choices}")
print(f"{'Manas Table 3, Fashion (MN)':28s} {'':6s} {'':7s} {11.0:10.2f} {9:5d} {1_800_000:10,d}")
print(f"{'Auto-Keras, Table 3 (AK)':28s} {'':6s} {'':7s} {5.2:10.2f} {22:5d} {14_700_000:10,d}")
PY
