#!/bin/sh
# gpu-e2e.sh: run on the GPU machine from the repository root after
# scripts/gpu-check.sh built .gpu/ elsewhere (and after gpu-run.sh, whose
# kernel cache it reuses). The LoCon training step: its op count (dry
# backend) and its benchmark at batch 3 and batch 1; then the pipeline end
# to end at the real size: a random SD 1.5 checkpoint (scripts/mkcheckpoint),
# the demo dataset at 512 px, loco-encode on the GPU, then loco-train on the
# GPU with the user's recipe for 2 updates (72 images). Logs go to $OUT
# (default .gpu/out: trainstep.log, encode.log, train.log). About 2.5
# minutes on an H200 (the model build of ~1 minute dominates); the timeouts
# (20, 170, 60, 30, 45, 15, 45 s) bound it to 6.5.
set -u
G=$(pwd)/.gpu
OUT=${OUT:-$G/out}
mkdir -p "$OUT"
# gpu-check.sh packs the binaries (what travels is limited): unpack them
# outside .gpu/, which stays as it travels.
X=$G
if [ -f "$G/bin.tar.gz" ]; then
	X=${TMPDIR:-/tmp}/loco-gpu-bin
	mkdir -p "$X" && tar -xzf "$G/bin.tar.gz" -C "$X" || { echo "gpu-e2e: cannot unpack $G/bin.tar.gz into $X" >&2; exit 2; }
fi
[ -x "$X/loco-train" ] || { echo "gpu-e2e: $X/loco-train missing: run scripts/gpu-check.sh first" >&2; exit 2; }
export LOCO_CUDA_CACHE="${LOCO_CUDA_CACHE:-/tmp/loco-cuda-cache}"
L=$OUT/trainstep.log

# TestOpsPerStepSD15 counts the backend ops of the F16 step at batch 3 on
# the dry backend (no GPU): on a GPU each is a kernel launch.
echo "== ops per LoCon training step (F16, batch 3, dry backend; $L)"
timeout 20 "$X/lycoris.test" -test.v -test.run OpsPerStep -test.timeout 15s >"$L" 2>&1
grep -E 'ops per step|--- FAIL|panic' "$L" | sed 's/^ *ops_test\.go:[0-9]*: //; s/^ *//' | cut -c1-150

# BenchmarkTrainStepSD15: real-size SD 1.5, LoCon 8/4 conv 4/4, text
# encoder trained, fp16, AdamW; checkpointing on and off; then
# BenchmarkTrainStepSD15Graph: the same step (no checkpointing) captured as
# a CUDA graph and replayed, checked against an eager step. One process,
# one model build (~60 s), batch 3 then batch 1.
echo "== training step, real-size SD 1.5 LoCon, fp16 (goal: <= 12 ms/step at batch 1 on an H100); eager, then CUDA graph replay"
LOCO_BENCH_BATCH=3,1 LOCO_BACKEND=cuda timeout 170 "$X/lycoris.test" -test.v -test.run '^$' -test.bench 'TrainStepSD15' \
	-test.benchtime 5x -test.timeout 165s >>"$L" 2>&1 || echo "step benchmarks: exit $? (see $L)"
# One line per run: ms per step, images/s, peak memory (graph runs: eager ms and speedup too).
grep -E '^BenchmarkTrainStepSD15.*s/step' "$L" | awk '{ ms=""; ips=""; gib=""; eg=""; sp=""; for (i=1;i<=NF;i++) { if ($i=="s/step") ms=$(i-1)*1000; if ($i=="images/s") ips=$(i-1); if ($i=="peak-GiB") gib=$(i-1); if ($i=="eager-s/step") eg=sprintf(" (eager %.1f ms", $(i-1)*1000); if ($i=="speedup") sp=sprintf(", x%s)", $(i-1)) } sub(/^BenchmarkTrainStepSD15/, "", $1); printf "  %-34s %8.1f ms/step %7s images/s %6s GiB peak%s%s\n", $1, ms, ips, gib, eg, sp }'
grep -E 'built UNet|captured the step|graph check' "$L" | sed 's/^ *bench_test\.go:[0-9]*: /  /' | cut -c1-200
grep -E '^(panic|FAIL|--- FAIL|--- SKIP)|no CUDA device|capturing the step failed|BeginCapture' "$L" | sed 's/^ *//' | cut -c1-240 | head -8

# The per-op device-time profile of the plain batch-3 step (each op
# synchronised, so its time is its own): where the next speed-up is.
echo "== per-op profile, batch 3, no checkpointing (top 15 of the table in $L)"
echo "-- LOCO_PROFILE=1" >>"$L"
LOCO_PROFILE=1 LOCO_BENCH_BATCH=3 LOCO_BACKEND=cuda timeout 60 "$X/lycoris.test" -test.run '^$' -test.bench 'TrainStepSD15$' \
	-test.benchtime 2x -test.timeout 55s >>"$L" 2>&1 || echo "profile: exit $? (see $L)"
sed -n '/^per-op device time/,/^all ops/p' "$L" | head -17

W=/tmp/loco-e2e
rm -rf $W && mkdir -p $W && cd $W || exit 1
t0=$(date +%s)
timeout 30 "$X/mkcheckpoint" -size sd15 -dtype fp16 -o sd15.safetensors >mk.log 2>&1 || { echo "mkcheckpoint failed"; tail -n 5 mk.log; exit 1; }
echo "== random SD 1.5 checkpoint: $(( $(date +%s) - t0 )) s"
"$X/demodata" demo >/dev/null 2>&1 || { echo "demodata failed"; exit 1; }
t0=$(date +%s)
"$X/loco-scan" demo/img --reg demo/reg 2>scan.log | "$X/loco-bucket" -r 512 2>bucket.log |
	timeout 45 "$X/loco-encode" --device cuda --vae sd15.safetensors -o cache --progress never >train.jsonl 2>encode.log ||
	{ echo "encode failed"; tail -n 5 scan.log bucket.log encode.log; exit 1; }
echo "== scan | bucket | encode (GPU): $(( $(date +%s) - t0 )) s, $(wc -l <train.jsonl) records"
tail -n 2 encode.log
timeout 15 "$X/loco-encode" -o cache --verify >verify.log 2>&1 && echo "cache verify: ok" || { echo "cache verify FAILED"; tail -n 3 verify.log; }
t0=$(date +%s)
timeout 45 "$X/loco-train" --device cuda --data train.jsonl --cache cache --model sd15.safetensors --vocab "$G/bpe_simple_vocab_16e6.txt.gz" \
	-o out --output-name pralyco --network-dim 8 --network-alpha 4 --network-args conv_dim=4 --network-args conv_alpha=4 \
	--train-batch-size 3 --max-train-epochs 4 --gradient-accumulation-steps 12 --learning-rate 1e-4 --unet-lr 1e-4 --text-encoder-lr 1e-4 \
	--lr-scheduler cosine --optimizer-type AdamW --multires-noise-iterations 10 --multires-noise-discount 0.1 \
	--mixed-precision fp16 --save-precision fp16 --training-comment 'trigger: pralyco' --seed 42 --max-train-steps 2 \
	--progress never >train.log 2>&1
echo "== loco-train (GPU) exit $? after $(( $(date +%s) - t0 )) s"
tail -n 4 train.log
tail -n 2 out/pralyco-metrics.jsonl 2>/dev/null
cp train.log encode.log "$OUT/" 2>/dev/null
ls -la out 2>/dev/null
