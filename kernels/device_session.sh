#!/bin/bash
# One call on a lent GPU machine (the device tool), everything that needs the GPU in one go:
#   1. the compiled Triton kernels against float64 references   (kernels/gpu_check.py)
#   2. the kernel benchmarks with torch.compile and copy bandwidth (spanlib bench ... --device cuda)
#   3. training / inference images/s: the real-face recipe and the paper's configuration
#      (kernels/gpu_throughput.py)
#   4. real-face training runs side by side until the deadline    (experiments/device_sweep.py)
# Usage there: DATA=<folder holding 300w/ and youtube-faces/unlabeled/> DEADLINE_S=540 \
#              bash kernels/device_session.sh        (writes under $OUT; the machine's python3)
# Each part has its own time limit and the session goes on when one fails; results are packed
# into $OUT as soon as each part ends, so a cut-off session still returns what it finished.
set -u
OUT=${OUT:-/tmp/device_out}
DATA=${DATA:?DATA: the folder holding 300w/ and youtube-faces/unlabeled/}
DEADLINE_S=${DEADLINE_S:-540}
START=$(date +%s)
W=/tmp/device_work; rm -rf "$W"; mkdir -p "$W"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 MPLBACKEND=Agg
left() { echo $(( DEADLINE_S - ($(date +%s) - START) )); }
stamp() { echo "== [$(( $(date +%s) - START )) s] $*"; }
pack() { tar -C "$W" -czf "$OUT/$1.tar.gz" "${@:2}" 2>/dev/null; }
SET_DATA="data.root=$DATA/300w data.test_root=$DATA/300w data.unlabeled_root=$DATA/youtube-faces/unlabeled"

stamp environment
{ nvidia-smi; nproc; free -g; git log -1 --format='%H %s' 2>/dev/null
  python3 -c "import torch, triton, numpy, cv2; print('torch', torch.__version__, 'cuda', torch.version.cuda, \
'triton', triton.__version__, 'numpy', numpy.__version__, 'opencv', cv2.__version__, torch.cuda.get_device_name())"
  python3 -c "from spanlib.utils.provenance import code_version; print('code_version', code_version())"
} > "$W/environment.txt" 2>&1
cat "$W/environment.txt" | tail -4

stamp "1. compiled kernels vs float64 references"
timeout 100 python3 kernels/gpu_check.py --json "$W/gpu_check.json" > "$W/gpu_check.log" 2>&1
echo "exit $?"; tail -3 "$W/gpu_check.log"

stamp "2. benchmarks (left $(left) s)"
for op in jsd decode; do
  timeout 120 python3 -m spanlib bench $op --device cuda --sweep-warps 4,8,16 --out "$W/bench" > "$W/bench_$op.log" 2>&1
  echo "bench $op exit $?"; tail -12 "$W/bench_$op.log"
done
pack kernels environment.txt gpu_check.json gpu_check.log bench bench_jsd.log bench_decode.log

stamp "3. throughput (left $(left) s)"
timeout 70 python3 kernels/gpu_throughput.py --profile real,shared300w --set $SET_DATA train.num_workers=3 \
  --variants scpan,semi_scpan --steps 60 --warmup 10 --batch 64 --json "$W/throughput_real.json" > "$W/throughput_real.log" 2>&1
echo "exit $?"; grep -E "^(train|infer)" "$W/throughput_real.log"
timeout 100 python3 kernels/gpu_throughput.py --profile paper,shared300w --set $SET_DATA train.num_workers=12 \
  --variants shn,scpan --steps 15 --warmup 4 --batch 32 --json "$W/throughput_paper.json" > "$W/throughput_paper.log" 2>&1
echo "exit $?"; grep -E "^(train|infer)" "$W/throughput_paper.log"
pack throughput throughput_real.json throughput_real.log throughput_paper.json throughput_paper.log

# 4. the sweep gets what is left, minus 45 s to pack; the long run is sized by the quiet speed
#    measured above at the share of the GPU one of 4 side-by-side runs gets (about half, a guess)
BUDGET=$(( $(left) - 45 ))
ITS=$(python3 -c "import json; print(json.load(open('$W/throughput_real.json'))['training'][0]['iterations_per_s'])" 2>/dev/null || echo 10)
LONG=$(python3 -c "print(max(3000, min(40000, int(0.5 * $ITS * ($BUDGET - 40) / 1000) * 1000)))")
stamp "4. real-face sweep: budget $BUDGET s, quiet speed $ITS it/s, long run $LONG iterations"
if [ "$BUDGET" -gt 120 ]; then
  python3 experiments/device_sweep.py --jobs experiments/real_faces_gpu.jobs --out "$W/sweep" --slots 4 \
    --budget-s "$BUDGET" --min-left-s 100 --var LONG="$LONG" -- --set $SET_DATA train.num_workers=3 2>&1 | tail -30
  # weights only (the optimiser state triples the size and is not needed to evaluate)
  python3 - "$W/sweep" <<'EOF'
import sys, torch
from pathlib import Path
for p in Path(sys.argv[1]).glob("*/checkpoint.pt"):
    ck = torch.load(p, map_location="cpu", weights_only=True)
    ck["optimizer_state"] = {}
    torch.save(ck, p)
EOF
  tar -C "$W" -czf "$W/sweep.tar.gz" --exclude='*.tmp' sweep
  split -b 15M -d "$W/sweep.tar.gz" "$OUT/sweep.tar.gz.part"
fi
stamp "done"; ls -la "$OUT"
