#!/usr/bin/env bash
# Deep-n-Cheap's MLP search on Fashion-MNIST at w_c = 0 and w_c = 1 (t_tr penalty),
# shortened for a 2-core CPU: 10 + 5 + 8 trials of at most 15 epochs each
# (the paper: 30 + 5 + 30 trials of 60 epochs on a GPU).
#   bash experiments/dnc_fashion.sh [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/dnc_fashion}
COMMON=(search=dnc data=fashion_mnist logger=console progress=false
        search.space.stage1_trials=10 search.space.n_initial=5 search.space.stage3_trials=8
        train.epochs=15 train.patience=4)
for WC in 0 1; do
  .venv/bin/nas-search "${COMMON[@]}" search.objective.w_c=$WC hydra.run.dir="$OUT/wc$WC" resume=true \
    > "$OUT-wc$WC.log" 2>&1 || { tail -20 "$OUT-wc$WC.log"; exit 1; }
  tail -1 "$OUT-wc$WC.log"
done
.venv/bin/python - "$OUT" <<'PY'
import json, sys
for wc in (0, 1):
    r = json.load(open(f"{sys.argv[1]}/wc{wc}/results.json"))
    print(f"w_c={wc}: trials {r['trials']}, wall {r['wall_seconds']:.0f} s, best trial {r['best_trial']}: "
          f"val acc {r['val_accuracy']:.4f}, test acc {r['test_accuracy']:.4f}, t_tr {r['t_tr']:.3f} s, "
          f"params {r['num_params']:,}, choices {r['choices']}")
PY
