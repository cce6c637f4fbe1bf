#!/bin/sh
# gpu-check.sh: build, here, the test binaries that exercise the GPU and the
# tools of the end-to-end run, into .gpu/ (git-ignored; made afresh, since
# all of it travels), with the CLIP vocabulary and the golden LoCon case
# they read, then print the one command to run on the GPU machine (which has
# no Go toolchain). Binaries are static (CGO_ENABLED=0: purego loads the
# CUDA libraries itself), so they run on any Linux with a driver; they are
# packed in .gpu/bin.tar.gz, which the run scripts unpack.
#
#   scripts/gpu-check.sh            # build for linux/amd64
#   GOARCH=arm64 scripts/gpu-check.sh
set -eu
cd "$(dirname "$0")/.."
rm -rf .gpu
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
	chmod u+w .gpu/bpe_simple_vocab_16e6.txt.gz
else
	echo "warning: $vocab not found: scripts/gpu-e2e.sh needs the CLIP vocabulary in .gpu/" >&2
fi
# The golden LoCon case of TestGoldenLoConUNetDevice (gpu-run.sh points
# LOCO_GOLDEN there): ../shared does not travel to the GPU machine.
case=../shared/golden/locon_unet_tiny
rm -rf .gpu/golden
if [ -f "$case/case.json" ]; then
	mkdir -p .gpu/golden
	cp -r "$case" .gpu/golden/
	chmod -R u+w .gpu/golden
else
	echo "warning: $case not found: the LoCon golden test of scripts/gpu-run.sh will fail" >&2
fi
cp scripts/gpu-run.sh .gpu/gpu-run.sh
chmod +x .gpu/gpu-run.sh .gpu/*.test

# What travels to the GPU machine (the working tree and .gpu/) is limited
# to 64 MiB; the binaries are about 40 MB, half that gzipped. They travel
# packed in .gpu/bin.tar.gz, which gpu-run.sh and gpu-e2e.sh unpack.
# (tar -xzf .gpu/bin.tar.gz -C .gpu unpacks them here.)
bins="cuda.test lycoris.test loco-scan loco-bucket loco-encode loco-train mkcheckpoint demodata"
tar -czf .gpu/bin.tar.gz -C .gpu $bins
(cd .gpu && rm -f $bins)
size=$(du -sk .gpu | cut -f1)
if [ "$size" -gt 50000 ]; then
	echo "warning: .gpu/ holds ${size} KiB: with the working tree it may pass the 64 MiB that travels" >&2
fi

cat >&2 <<MSG
built: $(cd .gpu && ls | tr '\n' ' ')(${size} KiB; binaries packed in bin.tar.gz)
run on the GPU machine, from the repository root, with .gpu carried along:

  sh scripts/gpu-run.sh; sh scripts/gpu-e2e.sh

(about 3.5 minutes, at most 8 with every timeout hit: give the run 540 s; it
writes 7 full logs to \$OUT, or .gpu/out when OUT is unset, and prints a
summary: of the 8 files that come back from \$OUT, one is left for it)
MSG
echo "sh scripts/gpu-run.sh; sh scripts/gpu-e2e.sh"
