#!/bin/sh
# gpu-e2e.sh: run on the GPU machine from the repository root after
# scripts/gpu-check.sh built .gpu/ elsewhere. The pipeline end to end at the
# real size: a random SD 1.5 checkpoint (scripts/mkcheckpoint), the demo
# dataset at 512 px, loco-encode on the GPU, then loco-train on the GPU with
# the user's recipe for 2 updates (72 images), and the LoCon training-step
# benchmark. Logs go to $OUT (default .gpu/out). About 2 minutes.
set -u
G=$(pwd)/.gpu
OUT=${OUT:-$G/out}
mkdir -p "$OUT"
[ -x "$G/loco-train" ] || { echo "gpu-e2e: $G/loco-train missing: run scripts/gpu-check.sh first" >&2; exit 2; }
export LOCO_CUDA_CACHE="${LOCO_CUDA_CACHE:-/tmp/loco-cuda-cache}"

echo "== training-step benchmark (real-size SD 1.5, LoCon 8/4 conv 4/4, TE trained, batch 3, fp16)"
LOCO_BACKEND=cuda timeout 150 "$G/lycoris.test" -test.run '^$' -test.bench TrainStepSD15 -test.benchtime 3x \
	-test.timeout 145s >"$OUT/trainstep.log" 2>&1
grep -E '^Benchmark.*s/step|panic|FAIL' "$OUT/trainstep.log"

W=/tmp/loco-e2e
rm -rf $W && mkdir -p $W && cd $W || exit 1
t0=$(date +%s)
"$G/mkcheckpoint" -size sd15 -dtype fp16 -o sd15.safetensors >mk.log 2>&1 || { echo "mkcheckpoint failed"; tail -5 mk.log; exit 1; }
echo "== random SD 1.5 checkpoint: $(( $(date +%s) - t0 )) s"
"$G/demodata" demo >/dev/null 2>&1 || { echo "demodata failed"; exit 1; }
t0=$(date +%s)
"$G/loco-scan" demo/img --reg demo/reg 2>scan.log | "$G/loco-bucket" -r 512 2>bucket.log |
	"$G/loco-encode" --device cuda --vae sd15.safetensors -o cache --progress never >train.jsonl 2>encode.log ||
	{ echo "encode failed"; tail -5 scan.log bucket.log encode.log; exit 1; }
echo "== scan | bucket | encode (GPU): $(( $(date +%s) - t0 )) s, $(wc -l <train.jsonl) records"
tail -2 encode.log
"$G/loco-encode" -o cache --verify >verify.log 2>&1 && echo "cache verify: ok" || { echo "cache verify FAILED"; tail -3 verify.log; }
t0=$(date +%s)
"$G/loco-train" --device cuda --data train.jsonl --cache cache --model sd15.safetensors --vocab "$G/bpe_simple_vocab_16e6.txt.gz" \
	-o out --output-name pralyco --network-dim 8 --network-alpha 4 --network-args conv_dim=4 --network-args conv_alpha=4 \
	--train-batch-size 3 --max-train-epochs 4 --gradient-accumulation-steps 12 --learning-rate 1e-4 --unet-lr 1e-4 --text-encoder-lr 1e-4 \
	--lr-scheduler cosine --optimizer-type AdamW --multires-noise-iterations 10 --multires-noise-discount 0.1 \
	--mixed-precision fp16 --save-precision fp16 --training-comment 'trigger: pralyco' --seed 42 --max-train-steps 2 \
	--progress never >train.log 2>&1
echo "== loco-train (GPU) exit $? after $(( $(date +%s) - t0 )) s"
tail -4 train.log
tail -2 out/pralyco-metrics.jsonl 2>/dev/null
cp train.log encode.log "$OUT/" 2>/dev/null
ls -la out 2>/dev/null
