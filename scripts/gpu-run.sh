#!/bin/sh
# gpu-run.sh: run on a GPU machine from the repository root, after
# scripts/gpu-check.sh built .gpu/ elsewhere. No Go toolchain needed.
# Runs the CUDA conformance and comparison tests (LOCO_REQUIRE_CUDA=1, so a
# missing device fails), then the op benchmarks, writes full logs to $OUT
# (default .gpu/out), and ends with a short table. Stays under 5 minutes:
# tests get 200 s, benchmarks 80 s.
set -u
OUT=${OUT:-.gpu/out}
mkdir -p "$OUT"
BIN=.gpu/cuda.test
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
timeout 200 "$BIN" -test.v -test.run 'Test' -test.timeout 195s >"$OUT/test.log" 2>&1
trc=$?
echo "tests: exit $trc in $(( $(date +%s) - start )) s"

echo "== benchmarks (full log: $OUT/bench.log)"
start=$(date +%s)
timeout 80 "$BIN" -test.run '^$' -test.bench 'Gemm|Conv|Attention' -test.benchtime 5x -test.timeout 75s >"$OUT/bench.log" 2>&1
brc=$?
echo "benchmarks: exit $brc in $(( $(date +%s) - start )) s"

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
echo "tests exit $trc, benchmarks exit $brc"
[ "$trc" -eq 0 ] && [ "$brc" -eq 0 ]
