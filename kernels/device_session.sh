#!/bin/bash
# Everything issue 25 needs a GPU for, in one call on a lent GPU machine (the device tool), and a
# second call on the same (still warm) machine that finishes the trainings:
#   MODE=all     1. the compiled Triton kernels against float64 references   (kernels/gpu_check.py)
#                2. kernel benchmarks: wall and device time, % of copy bandwidth, a num_warps sweep
#                3. training images/s of the paper's configuration, setting by setting, and a
#                   profile of one step (kernels/gpu_throughput.py)
#                4. the real-face ablation (5 variants x 3 seeds, the real recipe) and the paper's
#                   configuration, side by side until the deadline      (experiments/device_sweep.py)
#   MODE=resume  4 again: finished runs kept, cut ones resumed from their checkpoints
# Usage there (the machine's python3; data from kernels/pack_device_data.py, carried as .devdata):
#   MODE=all DEADLINE_S=540 bash kernels/device_session.sh     then at once
#   MODE=resume DEADLINE_S=<what is left> bash kernels/device_session.sh
# Each part has its own time limit and the session goes on when one fails; results are packed
# into $OUT as soon as each part ends, so a cut-off session still returns what it finished.
# Rehearsal on a CPU: DEVICE=cpu TINY=1 MODE=all DEADLINE_S=400 bash kernels/device_session.sh
set -u
OUT=${OUT:-/tmp/device_out}
DATA=${DATA:-.devdata}
MODE=${MODE:-all}
DEVICE=${DEVICE:-cuda}
TINY=${TINY:-0}
DEADLINE_S=${DEADLINE_S:-540}
PY=${PY:-python3}
START=$(date +%s)
W=/tmp/device_work
mkdir -p "$OUT"
[ "$MODE" = all ] && { rm -rf "$W"; mkdir -p "$W"; }
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 MPLBACKEND=Agg
left() { echo $(( DEADLINE_S - ($(date +%s) - START) )); }
stamp() { echo "== [$(( $(date +%s) - START )) s] $*"; }
pack() { tar -C "$W" -czf "$OUT/$1.tar.gz" "${@:2}" 2>/dev/null; }
SET_DATA="data.root=$DATA/300w data.test_root=$DATA/300w data.unlabeled_root=$DATA/youtube-faces/unlabeled"
if [ "$TINY" = 1 ]; then  # the CPU rehearsal: every part, at sizes a CPU runs in seconds
  STEPS="--steps 2 --warmup 1"; PAPER="paper,shared300w --set model.width=16 model.stages=2 crop.input_size=64"
  SWEEP_SET="train.iterations=30 train.val_every=15 train.checkpoint_every=10 train.val_faces=20 model.width=16"
  VARS="--var PAPER_ITS=20 --var PAPER_VAL=10"; SLOTS=3; BENCH="--repeats 2 --sizes 2x3x32x32"; WORKERS=2
else
  STEPS="--steps 12 --warmup 4"; PAPER="paper,shared300w"; SWEEP_SET=""
  VARS="--var PAPER_ITS=1500 --var PAPER_VAL=500"; SLOTS=11; BENCH="--sweep-warps 4,8,16,32"; WORKERS=14
fi

if [ "$MODE" = all ]; then
  stamp environment
  { nvidia-smi 2>&1 | head -15; nproc; free -g; git log -1 --format='%H %s' 2>/dev/null
    $PY -c "import torch, triton, numpy, cv2; print('torch', torch.__version__, 'cuda', torch.version.cuda, \
'triton', triton.__version__, 'numpy', numpy.__version__, 'opencv', cv2.__version__, \
torch.cuda.get_device_name() if torch.cuda.is_available() else 'no cuda')"
    $PY -c "from spanlib.utils.provenance import code_version; print('code_version', code_version())"
    date -u
  } > "$W/environment.txt" 2>&1
  tail -3 "$W/environment.txt"

  if [ "$DEVICE" = cuda ]; then
    stamp "1. compiled kernels vs float64 references"
    timeout 60 $PY kernels/gpu_check.py --json "$W/gpu_check.json" > "$W/gpu_check.log" 2>&1
    echo "exit $?"; tail -3 "$W/gpu_check.log"
  fi

  stamp "2. kernel benchmarks (left $(left) s)"
  for op in jsd decode; do
    timeout 60 $PY -m spanlib bench $op --device "$DEVICE" $BENCH --out "$W/bench" > "$W/bench_$op.log" 2>&1
    echo "bench $op exit $?"; tail -14 "$W/bench_$op.log"
  done
  pack kernels environment.txt gpu_check.json gpu_check.log bench bench_jsd.log bench_decode.log

  stamp "3. training throughput (left $(left) s)"
  timeout 130 $PY kernels/gpu_throughput.py --device "$DEVICE" --recipe $PAPER --set $SET_DATA train.num_workers=$WORKERS $STEPS \
    --config "shn variant=shn" --config "scpan variant=scpan" \
    --config "scpan_devtargets variant=scpan train.device_targets=true" \
    --config "scpan_devtargets_b64 variant=scpan train.device_targets=true train.batch_size=64" \
    --profile-config scpan --profile-out "$W/train_step_profile_paper.txt" \
    --json "$W/throughput_paper.json" > "$W/throughput_paper.log" 2>&1
  echo "exit $?"; grep -E "^train" "$W/throughput_paper.log"
  timeout 40 $PY kernels/gpu_throughput.py --device "$DEVICE" --recipe real,shared300w --set $SET_DATA train.num_workers=3 $STEPS \
    --config "real_scpan variant=scpan" --config "real_scpan_devtargets variant=scpan train.device_targets=true" \
    --json "$W/throughput_real.json" > "$W/throughput_real.log" 2>&1
  echo "exit $?"; grep -E "^train" "$W/throughput_real.log"
  pack throughput throughput_paper.json throughput_paper.log throughput_real.json throughput_real.log train_step_profile_paper.txt
fi

# 4. trainings side by side; MPS lets the small runs' kernels share the GPU (a user-space daemon,
#    no setting of the card changes); without it the runs are time-sliced
if [ "$DEVICE" = cuda ] && command -v nvidia-cuda-mps-control >/dev/null; then
  pgrep -f nvidia-cuda-mps-control >/dev/null || nvidia-cuda-mps-control -d 2>&1
  if timeout 30 $PY -c "import torch; torch.zeros(1, device='cuda').sum().item()" >/dev/null 2>&1; then
    echo "MPS on"
  else
    echo quit | nvidia-cuda-mps-control 2>/dev/null; echo "MPS refused: time-sliced runs"
  fi
fi
BUDGET=$(( $(left) - 50 ))
stamp "4. trainings ($MODE): budget $BUDGET s"
if [ "$BUDGET" -gt 60 ]; then
  $PY experiments/device_sweep.py --jobs experiments/real_faces_gpu.jobs --out "$W/sweep" --slots $SLOTS \
    --threads 1 --budget-s "$BUDGET" --min-left-s 30 $VARS -- \
    --device "$DEVICE" --set $SET_DATA train.num_workers=1 train.threads=1 train.device_targets=true $SWEEP_SET 2>&1 | tail -20
fi
if [ "$MODE" = resume ] && [ "$(left)" -gt 110 ]; then  # time left over: torch.compile's step
  stamp "3b. training throughput with torch.compile (left $(left) s)"
  timeout $(( $(left) - 45 )) $PY kernels/gpu_throughput.py --device "$DEVICE" --recipe $PAPER --set $SET_DATA \
    train.num_workers=$WORKERS $STEPS \
    --config "scpan_devtargets_b64_compile variant=scpan train.device_targets=true train.batch_size=64 train.compile=true" \
    --json "$W/throughput_paper_compile.json" > "$W/throughput_paper_compile.log" 2>&1
  echo "exit $?"; grep -E "^train" "$W/throughput_paper_compile.log"
  pack throughput_compile throughput_paper_compile.json throughput_paper_compile.log
fi
# what comes back: weights only for the real-face runs (the optimiser state triples the size),
# the paper run's validation history and logs but not its 0.1 GB checkpoint
stamp "packing"
rm -rf "$W/back"; mkdir -p "$W/back"
$PY - "$W/sweep" "$W/back" <<'EOF'
import shutil, sys, torch
from pathlib import Path
src, dst = Path(sys.argv[1]), Path(sys.argv[2])
if (src / "summary.json").is_file():
    shutil.copy(src / "summary.json", dst / "summary.json")
for run in sorted(p for p in src.glob("*") if p.is_dir()):
    (dst / run.name).mkdir()
    for f in run.glob("*"):
        if f.is_file() and f.suffix in (".txt", ".json"):
            shutil.copy(f, dst / run.name / f.name)
    ck = run / "checkpoint.pt"
    if ck.is_file() and not run.name.startswith("paper"):
        state = torch.load(ck, map_location="cpu", weights_only=True)
        state["optimizer_state"] = {}
        torch.save(state, dst / run.name / "checkpoint.pt")
EOF
tar -C "$W" -czf "$W/sweep.tar.gz" back && split -b 15M -d "$W/sweep.tar.gz" "$OUT/sweep_$MODE.tar.gz.part"
stamp "done"; ls -la "$OUT"
