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

demo: build
	rm -rf demo
	$(GO) run ./scripts/demodata demo
	$(BIN)/loco-scan demo/img --reg demo/reg | $(BIN)/loco-bucket -r 512 > demo/bucketed.jsonl
	@echo "first bucketed record (all $$(wc -l < demo/bucketed.jsonl) in demo/bucketed.jsonl):"
	@head -n 1 demo/bucketed.jsonl

clean:
	rm -rf $(BIN) demo
