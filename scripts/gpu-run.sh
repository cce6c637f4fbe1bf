#!/bin/sh
# gpu-run.sh: run on a GPU machine from the repository root, after
# scripts/gpu-check.sh built .gpu/ elsewhere. No Go toolchain needed.
# Runs the CUDA conformance and comparison tests (LOCO_REQUIRE_CUDA=1, so a
# missing device fails), the op benchmarks, then the golden LoCon case on
# the GPU in F32, F16 and BF16 (pkg/lycoris TestGoldenLoConUNetDevice),
# writes full logs to $OUT (default .gpu/out: env.log, test.log, bench.log,
# lycoris-test.log) and ends with a short table. About 1 minute on an H200
# (tests 31 s, benchmarks 13 s when last run, before the GroupNorm and
# graph tests were added); the timeouts (110, 45, 60 s) bound it to under
# 4 minutes. With gpu-e2e.sh (at most 6.5) one device call of 600 s holds
# both even when every timeout is hit.
set -u
OUT=${OUT:-.gpu/out}
mkdir -p "$OUT"
# gpu-check.sh packs the binaries (what travels is limited): unpack them
# outside .gpu/, which stays as it travels.
X=.gpu
if [ -f .gpu/bin.tar.gz ]; then
	X=${TMPDIR:-/tmp}/loco-gpu-bin
	mkdir -p "$X" && tar -xzf .gpu/bin.tar.gz -C "$X" || { echo "gpu-run: cannot unpack .gpu/bin.tar.gz into $X" >&2; exit 2; }
fi
BIN=$X/cuda.test
[ -x "$BIN" ] || { echo "gpu-run: $BIN missing: run scripts/gpu-check.sh on a machine with Go first" >&2; exit 2; }

{
	echo "== nvidia-smi"
	nvidia-smi 2>&1 | head -20
	echo "== CUDA libraries visible"
	for d in /usr/local/nvidia/lib64 /usr/local/cuda/lib64 /usr/lib/x86_64-linux-gnu /opt/torch/.venv/lib/python3*/site-packages/nvidia/*/lib /usr/local/lib/python3*/*-packages/nvidia/*/lib; do
		[ -d "$d" ] && ls "$d" 2>/dev/null | grep -E '^lib(cuda\.so|cublas\.so|cublasLt\.so|nvrtc\.so|nvrtc-builtins)' | sed "s|^|  $d/|"
	done
	echo "LOCO_CUDA_LIB_DIR=${LOCO_CUDA_LIB_DIR:-}"
} 2>&1 | tee "$OUT/env.log" | head -60

export LOCO_REQUIRE_CUDA=1
export LOCO_CUDA_CACHE="${LOCO_CUDA_CACHE:-/tmp/loco-cuda-cache}"

echo "== tests (full log: $OUT/test.log)"
start=$(date +%s)
timeout 110 "$BIN" -test.v -test.run 'Test' -test.timeout 105s >"$OUT/test.log" 2>&1
trc=$?
echo "tests: exit $trc in $(( $(date +%s) - start )) s"

echo "== benchmarks (full log: $OUT/bench.log)"
start=$(date +%s)
timeout 45 "$BIN" -test.run '^$' -test.bench 'Gemm|Conv|Attention|GroupNorm' -test.benchtime 5x -test.timeout 42s >"$OUT/bench.log" 2>&1
brc=$?
echo "benchmarks: exit $brc in $(( $(date +%s) - start )) s"

# The golden LoCon case (gpu-check.sh copies it into .gpu/golden) on CPU
# F32, the rounding CPU backend and CUDA F32/F16/BF16, checkpointing off/on.
echo "== LoCon golden case on the GPU (full log: $OUT/lycoris-test.log)"
start=$(date +%s)
if [ -x "$X/lycoris.test" ]; then
	LOCO_GOLDEN="$(pwd)/.gpu/golden" timeout 60 "$X/lycoris.test" -test.v -test.run Device -test.timeout 55s >"$OUT/lycoris-test.log" 2>&1
	lrc=$?
else
	echo "gpu-run: $X/lycoris.test missing: run scripts/gpu-check.sh first" >"$OUT/lycoris-test.log"
	lrc=2
fi
echo "LoCon golden: exit $lrc in $(( $(date +%s) - start )) s"

echo
echo "================ summary ================"
grep -m1 '^cuda: ' "$OUT/test.log" || echo "(no device line: see $OUT/test.log)"
echo "-- tests: failures with their messages"
# Failed leaf tests, then every error line (file.go:NN: ...) of the log.
grep -E -- '--- FAIL' "$OUT/test.log" | sed 's/^ *//' | head -60
grep -E '^\s+[a-z_]+\.go:[0-9]+: .*(relative L2|want|error|panic|mismatch|NaN|unwritten|changed|LOCO_REQUIRE)' "$OUT/test.log" | grep -v 'relative L2 [0-9.e-]*$' | head -60
grep -E '^(panic|fatal error)' -A 12 "$OUT/test.log" | head -40
echo "-- tests: counts"
printf 'PASS %s  FAIL %s  SKIP %s\n' "$(grep -c -- '--- PASS' "$OUT/test.log")" "$(grep -c -- '--- FAIL' "$OUT/test.log")" "$(grep -c -- '--- SKIP' "$OUT/test.log")"
echo "-- CUDA vs CPU (relative L2)"
grep -E '(device|flash)_test.go:[0-9]+: .*relative L2' "$OUT/test.log" | sed 's/^ *[a-z]*_test.go:[0-9]*: //' | head -200
echo "-- benchmarks (TFLOP/s, ms/op)"
grep -E '^Benchmark' "$OUT/bench.log" | awk '{ t=""; m=""; for (i=1;i<=NF;i++) { if ($i=="TFLOP/s") t=$(i-1); if ($i=="ms/op") m=$(i-1) } printf "%-70s %8s TFLOP/s %9s ms\n", $1, t, m }'
grep -E '^(panic|FAIL|--- FAIL)' "$OUT/bench.log" | head -10
echo "-- LoCon golden case vs PyTorch (relative L2; tolerances in pkg/lycoris/golden_cuda_test.go)"
L=$OUT/lycoris-test.log
grep -o 'locon-golden: .*' "$L" | sed 's/^locon-golden: //; s/checkpoint=/ck=/' | head -20
grep -E -- '--- (FAIL|SKIP): [^ ]*/[^ ]*/' "$L" | sed 's/^ *//' | head -12
grep -E '^\s+golden_cuda_test\.go:[0-9]+: .*(error|expected zero|panic|LOCO_REQUIRE|value [0-9]+ of|have a relative)' "$L" | sed 's/^ *//' | cut -c1-300 | head -20
grep -E '^(panic|fatal error)' -A 12 "$L" | head -30
grep -q -- '--- PASS: TestGoldenLoConUNetDevice' "$L" || grep -q -- '--- FAIL' "$L" || tail -n 5 "$L"
echo "tests exit $trc, benchmarks exit $brc, LoCon golden exit $lrc"
[ "$trc" -eq 0 ] && [ "$brc" -eq 0 ] && [ "$lrc" -eq 0 ]
