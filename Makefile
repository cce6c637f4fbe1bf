GO      ?= go
BIN     := bin
TOOLS   := $(notdir $(wildcard cmd/loco-*))

.PHONY: all build test bench demo clean

all: build

build:
	@mkdir -p $(BIN)
	$(GO) build -o $(BIN)/ ./cmd/...

test:
	$(GO) test ./...

bench:
	$(GO) test -run '^$$' -bench . -benchtime 3x ./...

# The whole pipeline on the bundled demo: a synthetic dataset
# (img/30_pralyco woman, reg/1_woman), a tiny random checkpoint with its own
# vocabulary, scan | bucket | encode, 2 epochs of training with sample
# images per epoch and a loss plot, then samples of the network at 0.8.
# DEMO_RES is the bucket area (64: about 20 s of training on 2 cores).
DEMO_RES ?= 64
demo: build
	rm -rf demo
	$(GO) run ./scripts/demodata demo
	$(GO) run ./scripts/mkcheckpoint -size tiny -o demo/model.safetensors
	$(BIN)/loco-scan --progress never demo/img --reg demo/reg \
	| $(BIN)/loco-bucket -r $(DEMO_RES) --min-bucket-reso $(DEMO_RES) > demo/bucketed.jsonl
	$(BIN)/loco-encode --vae demo/model.safetensors -o demo/cache --progress never < demo/bucketed.jsonl > demo/train.jsonl
	printf '%s\n' 'pralyco, photo of a woman --w 64 --h 64 --s 12 --d 42' 'woman --n pralyco --w 64 --h 64 --s 12 --d 7' > demo/prompts.txt
	$(BIN)/loco-train --model demo/model.safetensors --vocab demo/bpe_simple_vocab_16e6.txt.gz \
		--data demo/train.jsonl --cache demo/cache -o demo/out --output-name pralyco \
		--network-dim 8 --network-alpha 4 --network-args conv_dim=4 --network-args conv_alpha=4 \
		--train-batch-size 16 --max-train-epochs 2 --learning-rate 1e-4 --lr-scheduler cosine \
		--multires-noise-iterations 10 --multires-noise-discount 0.1 --save-every-n-epochs 1 \
		--sample-prompts demo/prompts.txt --sample-every-n-epochs 1 --sample-sampler euler_a \
		--training-comment "trigger: pralyco" --seed 1 --device cpu --progress never
	$(BIN)/loco-sample --model demo/model.safetensors --vocab demo/bpe_simple_vocab_16e6.txt.gz \
		--network demo/out/pralyco.safetensors:0.8 --prompts demo/prompts.txt --seed 1 --sheet -o demo/samples --progress never
	@echo
	@echo "demo: records demo/train.jsonl, latent cache demo/cache/"
	@echo "      networks demo/out/pralyco-000001.safetensors (epoch 1), demo/out/pralyco.safetensors (final)"
	@echo "      samples per epoch demo/out/sample/ (contact sheets *_sheet.png), loss plot demo/out/pralyco-loss.png"
	@echo "      samples of the final network at 0.8: demo/samples/sheet.png"

clean:
	rm -rf $(BIN) demo
