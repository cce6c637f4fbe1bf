package backendtest

import (
	"testing"

	"loco/pkg/tensor"
)

// TestRunOnReference: the suite passes on a correct backend (the reference
// itself, storing F32, F16 or BF16), so it has no false alarms.
func TestRunOnReference(t *testing.T) {
	for _, dt := range []tensor.DType{tensor.F32, tensor.F16, tensor.BF16} {
		t.Run(dt.String(), func(t *testing.T) { Run(t, refBackend{}, Options{DType: dt}) })
	}
}
