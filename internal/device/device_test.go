package device

import (
	"errors"
	"os"
	"testing"

	"loco/internal/cli"
	"loco/pkg/tensor"
)

func TestEngineChoices(t *testing.T) {
	e, err := Engine("cpu", "fp16", "testing", nil)
	if err != nil || e.B.Name() != "cpu" || e.Act != tensor.F32 {
		t.Fatalf("cpu: %v %v", e, err)
	}
	var ue *cli.UsageError
	if _, err := Engine("tpu", "fp16", "testing", nil); !errors.As(err, &ue) {
		t.Errorf("bad device: %v", err)
	}
	if _, err := Engine("cpu", "fp8", "testing", nil); !errors.As(err, &ue) {
		t.Errorf("bad precision: %v", err)
	}
	// Without a GPU, auto falls back to the CPU and cuda is an error.
	if os.Getenv("LOCO_REQUIRE_CUDA") == "" {
		e, err := Engine("auto", "fp16", "testing", nil)
		if err != nil {
			t.Fatal(err)
		}
		if e.B.Name() == "cpu" {
			if _, err := Engine("cuda", "fp16", "testing", nil); err == nil {
				t.Error("--device cuda without a GPU gave no error")
			}
		}
	}
}
