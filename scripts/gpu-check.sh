#!/bin/sh
# gpu-check.sh: build, here, the test binaries that exercise the GPU, into
# .gpu/ (git-ignored), then print the one command to run on the GPU machine
# (which has no Go toolchain). Binaries are static (CGO_ENABLED=0: purego
# loads the CUDA libraries itself), so they run on any Linux with a driver.
#
#   scripts/gpu-check.sh            # build for linux/amd64
#   GOARCH=arm64 scripts/gpu-check.sh
set -eu
cd "$(dirname "$0")/.."
mkdir -p .gpu
export CGO_ENABLED=0 GOOS=linux
: "${GOARCH:=amd64}"
export GOARCH

# Test binaries with GPU tests or benchmarks: package -> binary name.
for spec in ./pkg/backend/cuda:cuda; do
	pkg=${spec%%:*}
	name=${spec##*:}
	echo "building $pkg -> .gpu/$name.test" >&2
	go test -c -o ".gpu/$name.test" "$pkg"
done
# The tools and test binary of the end-to-end run (scripts/gpu-e2e.sh).
echo "building the tools for scripts/gpu-e2e.sh" >&2
go test -c -ldflags="-s -w" -o .gpu/lycoris.test ./pkg/lycoris
for t in loco-scan loco-bucket loco-encode loco-train; do
	go build -ldflags="-s -w" -o ".gpu/$t" "./cmd/$t"
done
go build -ldflags="-s -w" -o .gpu/mkcheckpoint ./scripts/mkcheckpoint
go build -ldflags="-s -w" -o .gpu/demodata ./scripts/demodata
vocab=../shared/clip/bpe_simple_vocab_16e6.txt.gz
if [ -f "$vocab" ]; then
	cp "$vocab" .gpu/
else
	echo "warning: $vocab not found: scripts/gpu-e2e.sh needs the CLIP vocabulary in .gpu/" >&2
fi
cp scripts/gpu-run.sh .gpu/gpu-run.sh
chmod +x .gpu/gpu-run.sh .gpu/*.test

cat >&2 <<MSG
built: $(cd .gpu && ls | tr '\n' ' ')
run on the GPU machine, from the repository root (copies .gpu/ and scripts/):

  sh scripts/gpu-run.sh; sh scripts/gpu-e2e.sh

(it writes full logs to \$OUT, or .gpu/out when OUT is unset, and ends with a table)
MSG
echo "sh scripts/gpu-run.sh; sh scripts/gpu-e2e.sh"
