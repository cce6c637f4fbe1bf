package cuda

import (
	"fmt"
	"strings"
	"testing"
	"unsafe"

	"github.com/ebitengine/purego"
)

// TestCallManyArguments calls libc's snprintf with 22 integer arguments
// through the trampoline that cuBLAS's 23-argument GEMM needs, and checks
// every one arrived in order.
func TestCallManyArguments(t *testing.T) {
	if !callManySupported {
		t.Skip("callMany is only implemented on amd64")
	}
	libc, err := purego.Dlopen("libc.so.6", purego.RTLD_NOW)
	if err != nil {
		t.Skipf("no libc.so.6 to call: %v", err)
	}
	snprintf, err := purego.Dlsym(libc, "snprintf")
	if err != nil {
		t.Fatal(err)
	}
	const nvals = 19 // buf, size, format + 19 = 22 arguments
	format := cString(strings.TrimSpace(strings.Repeat("%d ", nvals)))
	out := make([]byte, 256)
	args := []uintptr{uintptr(unsafe.Pointer(&out[0])), uintptr(len(out)), uintptr(unsafe.Pointer(&format[0]))}
	var want []string
	for i := 0; i < nvals; i++ {
		v := 1000 + 37*i - 500*(i%3)
		args = append(args, uintptr(v))
		want = append(want, fmt.Sprint(v))
	}
	n := int32(callMany(snprintf, args...))
	keepAlive(out, format)
	got := string(out[:max(n, 0)])
	if got != strings.Join(want, " ") {
		t.Fatalf("snprintf through callMany wrote %q (returned %d), want %q", got, n, strings.Join(want, " "))
	}
}
