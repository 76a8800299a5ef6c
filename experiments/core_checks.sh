#!/usr/bin/env bash
# Reproduces the core's headline numbers on this machine (CPU is fine):
#   1. the embedded default search on digits (bar: <= 5 min, test accuracy >= 0.95)
#   2. a small CNN on Fashion-MNIST for 3 epochs (bar: test accuracy >= 0.85),
#      then nas-eval on its checkpoint (must print the same accuracy)
#   3. training throughput, one candidate vs a vmapped population of 8 MLPs
# Needs `make demo` or `make test` to have built .venv, and Debian's
# dataset-fashion-mnist for step 2.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-runs/core_checks/$(date +%Y%m%d-%H%M%S)}
mkdir -p "$out"
bin=.venv/bin

echo "== 1. nas-search (embedded default)"
/usr/bin/time -f "wall %e s" $bin/nas-search progress=false hydra.run.dir="$out/search" | tail -n 1 > "$out/search.json"
python3 -c "import json,sys; r=json.load(open('$out/search.json')); print(f\"test_accuracy={r['test_accuracy']:.4f} wall_seconds={r['wall_seconds']:.1f} params={r['num_params']}\")"

echo "== 2. nas-train fashion_mnist cnn_small, 3 epochs; then nas-eval"
$bin/nas-train data=fashion_mnist model=builtin model.name=cnn_small train.epochs=3 logger=console \
  progress=false hydra.run.dir="$out/fashion_train" | tail -n 1 > "$out/fashion_train.json"
ckpt=$(python3 -c "import json; print(json.load(open('$out/fashion_train.json'))['checkpoint'])")
$bin/nas-eval checkpoint="$ckpt" hydra.run.dir="$out/fashion_eval" | tail -n 1 > "$out/fashion_eval.json"
python3 - "$out" <<'PY'
import json, sys
out = sys.argv[1]
t, e = (json.load(open(f"{out}/{n}.json")) for n in ("fashion_train", "fashion_eval"))
print(f"nas-train test_accuracy={t['test_accuracy']:.4f} (t_tr {t['t_tr']:.1f} s/epoch)  "
      f"nas-eval test_accuracy={e['test_accuracy']:.4f}  same={t['test_accuracy'] == e['test_accuracy']}")
PY

echo "== 3. benchmarks/train_throughput.py"
$bin/python benchmarks/train_throughput.py | tee "$out/throughput.txt"
