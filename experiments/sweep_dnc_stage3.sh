#!/usr/bin/env bash
# Deep-n-Cheap stage 3 (section 3.1: training hyperparameters of a fixed model)
# on Fashion-MNIST, searched by the tinygp sweeper through `nas-train --multirun`:
#   learning rate   log interval [1e-5, 1e-1]   (10^-x, x in [1, 5])
#   weight decay    log interval [1e-6, 1e-3]   (AdamW, decoupled)
#   batch size      32, 64, ..., 512            (range(): an ordered grid, linear as in the paper)
# The model is fixed (a 2-layer CNN, 16 and 32 channels); each trial trains it
# for a few epochs on a stratified subset and returns nas-train's result dict,
# whose val_accuracy the sweeper maximises.
#
#   experiments/sweep_dnc_stage3.sh [SWEEP_DIR]
#   TRIALS=30 EPOCHS=5 MAX_TRAIN=20000 experiments/sweep_dnc_stage3.sh runs/dnc3
#   LAUNCHER=joblib JOBS=2 experiments/sweep_dnc_stage3.sh      # batches of JOBS trials in parallel processes
#
# Running it again with the same SWEEP_DIR (and a larger TRIALS) resumes the
# sweep from SWEEP_DIR/tinygp_sweeper.json instead of starting over.
# Needs `make test` (or `pip install -e '.[sweep]'`) and Debian's dataset-fashion-mnist.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-runs/sweep_dnc_stage3/$(date +%Y%m%d-%H%M%S)}
trials=${TRIALS:-10}
jobs=${JOBS:-1}
launcher=()
if [ "${LAUNCHER:-basic}" != basic ]; then
  launcher=("hydra/launcher=${LAUNCHER}" "hydra.launcher.n_jobs=${jobs}")
fi

.venv/bin/nas-train --multirun hydra/sweeper=tinygp "${launcher[@]}" \
  data=fashion_mnist data.max_train="${MAX_TRAIN:-5000}" \
  model=cnn 'model.channels=[16,32]' optimizer=adamw \
  train.epochs="${EPOCHS:-2}" logger=console progress=false \
  'optimizer.learning_rate=tag(log, interval(1e-5, 1e-1))' \
  'optimizer.weight_decay=tag(log, interval(1e-6, 1e-3))' \
  'train.batch_size=range(32, 513, 32)' \
  hydra.sweeper.metric=val_accuracy hydra.sweeper.direction=maximize \
  hydra.sweeper.n_trials="$trials" hydra.sweeper.batch_size="$jobs" \
  hydra.sweep.dir="$out"

.venv/bin/python - "$out" <<'PY'
import json, sys
record = json.load(open(f"{sys.argv[1]}/tinygp_sweeper.json"))
print(f"{'job':>4} {'val_accuracy':>12}  learning_rate  weight_decay  batch_size  status")
for t in record["trials"]:
    p = t["params"]
    value = f"{t['value']:.4f}" if t["status"] == "completed" else "-"
    print(f"{t['job']:>4} {value:>12}  {p['optimizer.learning_rate']:13.3g}  {p['optimizer.weight_decay']:12.3g}"
          f"  {p['train.batch_size']:>10}  {t['status']}")
best = record["best"]
print(f"best val_accuracy {best['value']:.4f} (job {best['job']}): {' '.join(best['overrides'][-3:])}")
PY
