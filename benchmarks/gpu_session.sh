#!/usr/bin/env bash
# One command for a session lent one H100/H200-class GPU for ~15 minutes (issue 14):
#
#     bash benchmarks/gpu_session.sh            # from the repository root, or from anywhere
#
# 1. `optbench check --device cuda` (environment, every task x optimizer at tiny in fp32 and bf16,
#    optimizer-step ratios at 130M, paper-size throughput with the 130M LLM's MFU, NS5 TFLOP/s);
#    its section budgets add up to ~5.5 minutes worst case (harness/check/cli.py, plan_for).
# 2. A paper-size smoke of each task: 50 steps of SoftMuon in bf16 through the real loop (`optbench run`:
#    autocast, CUDA-event optimizer timing, gradient accumulation for the 130M LLM, Muon's bf16
#    Newton-Schulz, the soft switch at step 45 and SoftMuon's spectral schedule on the GPU, evals, the
#    run record). Real datasets are used when they are in the data dir, else offline stand-ins at the
#    paper model size (named in the table).
# 3. NCCL DDP (torchrun, 2 ranks, the tiny LLM) when at least 2 GPUs are visible; else reported skipped.
#
# Writes, with the device in every name (commit them):
#   benchmarks/results/check_<device>.csv / .json     the check's tables
#   benchmarks/results/paper_smoke_<device>.csv       one row per paper-size run
#   benchmarks/results/gpu_session_<device>.log       everything printed
# and copies them to $OUT when it is set (the device tool's output folder).
#
# Time: every part runs under `timeout`, capped by what is left of GPU_SESSION_SECONDS (default 540 s,
# inside a 600 s command limit). Nothing is downloaded (offline mode). The exit code is non-zero when
# any part failed; the tables say which.
#
# Dry run of the plumbing on a CPU (tests/test_check.py, slow tier):
#   GPU_SESSION_DEVICE=cpu GPU_SESSION_SIZE=tiny GPU_SESSION_STEPS=3 GPU_SESSION_CHECK_ARGS=--quick \
#   GPU_SESSION_RESULTS=/tmp/x bash benchmarks/gpu_session.sh
set -u -o pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export OPTBENCH_OFFLINE=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 PYTHONWARNINGS=ignore
TOTAL=${GPU_SESSION_SECONDS:-540}
DEVICE=${GPU_SESSION_DEVICE:-cuda}
SIZE=${GPU_SESSION_SIZE:-paper}
STEPS=${GPU_SESSION_STEPS:-50}
CHECK_ARGS=${GPU_SESSION_CHECK_ARGS:-}
RESULTS=${GPU_SESSION_RESULTS:-benchmarks/results}
START=$SECONDS
SCRATCH=$(mktemp -d)
mkdir -p "$RESULTS"

left() { echo $(( TOTAL - (SECONDS - START) )); }
cap() { local l; l=$(left); if (( $1 < l )); then echo "$1"; else echo "$l"; fi; }  # min(limit, time left)

TAG=$("$PY" -c 'import sys, torch
from harness.check.cli import device_tag
dev = sys.argv[1]
print(device_tag(torch.device(dev)) if dev != "cuda" or torch.cuda.is_available() else "no-cuda")' "$DEVICE" \
      2>/dev/null) || TAG=no-torch
LOG=$RESULTS/gpu_session_$TAG.log
exec > >(tee "$LOG") 2>&1
failed=()

echo "== gpu_session $(date -u +%FT%TZ) on $TAG; budget ${TOTAL}s"
"$PY" - <<'EOF'
import importlib.util, platform, sys
need = ["torch", "numpy", "scipy", "pandas", "pyarrow", "yaml", "tqdm"]          # optbench's dependencies
optional = ["torchvision", "torch_geometric", "sklearn", "datasets", "tokenizers", "optuna"]
missing = [m for m in need if importlib.util.find_spec(m) is None]
absent = [m for m in optional if importlib.util.find_spec(m) is None]
print(f"python {platform.python_version()} ({sys.executable}); missing required: {missing or 'none'}; "
      f"absent optional: {absent or 'none'}")
sys.exit(2 if "torch" in missing else 1 if missing else 0)
EOF
rc=$?
if (( rc == 2 )); then echo "FAILED: no torch for $PY (set PYTHON=/path/to/python)"; exit 1; fi
(( rc == 0 )) || failed+=("preflight: a required package is missing (no network here: install it in the image)")
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "(no nvidia-smi)"

# --- 1. the check -------------------------------------------------------------------------------
echo; echo "== 1/3 optbench check --device $DEVICE $CHECK_ARGS (limit $(cap 420)s)"
# shellcheck disable=SC2086  # CHECK_ARGS is a list of flags
timeout --signal=INT --kill-after=15 "$(cap 420)" "$PY" -m harness.cli check --device "$DEVICE" $CHECK_ARGS \
  --out "$RESULTS"
rc=$?
[[ $rc -eq 0 ]] || failed+=("check: exit $rc (see $RESULTS/check_$TAG.csv)")

# --- 2. paper-size smoke: task, dataset wanted, offline stand-in, time limit (s) ------------------
echo; echo "== 2/3 $SIZE-size smoke, $STEPS steps of softmuon in bf16 per task"
PAPER=(
  "cifar_resnet cifar10 synthetic 60"
  "gnn_graphland tolokers-2 sbm 90"
  "llm c4 pydoc 120"
  "lstm_lm nli pydoc 60"
  "tabular_mlp adult digits 45"
)
: > "$SCRATCH/status.tsv"
for entry in "${PAPER[@]}"; do
  read -r task want standin limit <<< "$entry"
  dataset=$("$PY" -c "import sys, tasks
from harness.errors import UserError
try:
    tasks.make(sys.argv[1], size=sys.argv[4], dataset=sys.argv[2]); print(sys.argv[2])
except UserError:
    print(sys.argv[3])" "$task" "$want" "$standin" "$SIZE" 2>/dev/null) || dataset=$standin
  t=$(cap "$limit")
  if (( t < 15 )); then
    echo "  $task: skipped, ${t}s left"; printf '%s\t%s\tskipped\t-\n' "$task" "$dataset" >> "$SCRATCH/status.tsv"; continue
  fi
  echo "  $task on $dataset (limit ${t}s)"
  timeout --signal=INT --kill-after=10 "$t" "$PY" -m harness.cli run --task "$task" --optimizer softmuon \
    --size "$SIZE" --dataset "$dataset" --steps "$STEPS" --amp bf16 --device "$DEVICE" --no-progress \
    --out "$SCRATCH/paper"
  rc=$?
  printf '%s\t%s\t%s\t%s\n' "$task" "$dataset" "$rc" "$t" >> "$SCRATCH/status.tsv"
  [[ $rc -eq 0 ]] || failed+=("paper smoke $task: exit $rc")
done
"$PY" - "$SCRATCH" "$RESULTS/paper_smoke_$TAG.csv" "$TAG" <<'EOF'
import csv, sys
from pathlib import Path
scratch, out, tag = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
rows = {}
try:
    from harness.results import store as records
    if (scratch / "paper" / "runs").is_dir():
        for r in records.read_runs(scratch / "paper").to_dict("records"):
            steps = max(int(r["steps_done"]), 1)
            rows[r["task"]] = {
                "device": tag, "task": r["task"], "dataset": r["dataset"], "optimizer": r["optimizer"],
                "amp": r["amp"], "status": r["status"], "detail": r["status_detail"],
                "steps_done": r["steps_done"], "metric": r["metric"], "val_metric": r["val_metric"],
                "train_s": round(r["train_seconds"], 2), "s_per_step": round(r["train_seconds"] / steps, 4),
                "optimizer_s_per_step": round(r["optimizer_seconds"] / steps, 5),
                "peak_memory_gb": round(r["peak_memory_bytes"] / 2**30, 2), "params": r["param_count"]}
except Exception as exc:  # no pandas/pyarrow: the exit codes below still tell what ran
    print(f"  (cannot read the run records: {type(exc).__name__}: {exc})")
for line in (scratch / "status.tsv").read_text().splitlines():
    task, dataset, rc, limit = line.split("\t")
    if task not in rows:
        rows[task] = {"device": tag, "task": task, "dataset": dataset, "optimizer": "softmuon", "status":
                      "skipped" if rc == "skipped" else ("timeout" if rc in ("124", "130", "137") else f"exit {rc}"),
                      "detail": f"limit {limit}s"}
cols = ["device", "task", "dataset", "optimizer", "amp", "status", "detail", "steps_done", "metric", "val_metric",
        "train_s", "s_per_step", "optimizer_s_per_step", "peak_memory_gb", "params"]
rows = dict(sorted(rows.items()))
with out.open("w", newline="") as fh:
    w = csv.DictWriter(fh, fieldnames=cols)
    w.writeheader()
    w.writerows(rows.values())
for r in rows.values():
    print("  " + "  ".join(f"{k}={r.get(k, '')}" for k in cols[1:] if r.get(k, "") != ""))
print(f"  wrote {out}")
EOF

# --- 3. NCCL DDP ----------------------------------------------------------------------------------
echo; echo "== 3/3 NCCL DDP"
ngpu=0
[[ $DEVICE == cuda* ]] && ngpu=$("$PY" -c "import torch; print(torch.cuda.device_count())" 2>/dev/null || echo 0)
if (( ngpu >= 2 )) && (( $(left) >= 40 )); then
  timeout --signal=INT --kill-after=10 "$(cap 90)" "$PY" -m torch.distributed.run --standalone --nproc_per_node 2 \
    -m harness.cli run --task llm --optimizer adamw --size tiny --steps 20 --set lr=0.01 --no-progress \
    --out "$SCRATCH/ddp" || failed+=("NCCL DDP (2 ranks): failed")
else
  echo "  skipped: $ngpu GPU(s) visible, $(left)s left (NCCL DDP needs 2 GPUs; the gloo path is a slow test)"
fi

echo; echo "== done in $(( SECONDS - START ))s"
if [[ -n "${OUT:-}" && -d "${OUT:-}" ]]; then
  cp "$RESULTS"/check_"$TAG".* "$RESULTS/paper_smoke_$TAG.csv" "$LOG" "$OUT"/ 2>/dev/null || true
fi
rm -rf "$SCRATCH"
if (( ${#failed[@]} )); then
  printf 'FAILED: %s\n' "${failed[@]}"
  exit 1
fi
echo "all parts passed"
