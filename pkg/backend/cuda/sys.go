package cuda

import (
	"runtime"

	"github.com/ebitengine/purego"
)

// dlsymOptional looks up a symbol that older libraries may lack.
func dlsymOptional(h uintptr, name string) (uintptr, error) {
	return purego.Dlsym(h, name)
}

// syscallPtr calls fn and returns its pointer-sized result.
//
//go:uintptrescapes
func syscallPtr(fn uintptr, args ...uintptr) (uintptr, error) {
	r, _, _ := purego.SyscallN(fn, args...)
	return r, nil
}

// keepAlive keeps host buffers referenced by C pointers alive until here.
func keepAlive(v ...any) { runtime.KeepAlive(v) }
