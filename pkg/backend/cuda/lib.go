package cuda

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/ebitengine/purego"
)

// A library is one shared object the backend loads at run time, known by
// the sonames it may carry (newest first).
type library struct {
	what    string   // e.g. "cuBLAS"
	sonames []string // tried in this order
}

var (
	libDriver = library{"the CUDA driver", []string{"libcuda.so.1", "libcuda.so"}}
	libCublas = library{"cuBLAS", []string{"libcublas.so.13", "libcublas.so.12", "libcublas.so.11", "libcublas.so"}}
	libNvrtc  = library{"NVRTC", []string{"libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so.11.2", "libnvrtc.so"}}
)

// dlopen is purego.Dlopen; tests replace it.
var dlopen = func(path string) (uintptr, error) {
	return purego.Dlopen(path, purego.RTLD_NOW|purego.RTLD_GLOBAL)
}

// pythonRoots are the folders under which a Python installation may keep
// site-packages/nvidia/*/lib (PyTorch's CUDA wheels). Globs allowed.
var pythonRoots = []string{
	"/opt/torch/.venv/lib/python3*/site-packages",
	"/usr/local/lib/python3*/dist-packages",
	"/usr/local/lib/python3*/site-packages",
	"/usr/lib/python3/dist-packages",
	"/usr/lib/python3*/site-packages",
	"/opt/conda/lib/python3*/site-packages",
}

// fixedDirs are the usual CUDA installation folders outside the loader path.
var fixedDirs = []string{"/usr/local/nvidia/lib64", "/usr/local/cuda/lib64", "/usr/local/cuda/lib", "/usr/lib/wsl/lib"}

// libDirEnv names the folders (colon-separated) searched before anything else.
const libDirEnv = "LOCO_CUDA_LIB_DIR"

// searchDirs lists the folders to try after LOCO_CUDA_LIB_DIR and the
// loader's own path: CUDA installation folders, then every nvidia/*/lib of
// the Python installations found (virtualenv, conda, home, system).
func searchDirs() []string {
	var roots []string
	for _, env := range []string{"VIRTUAL_ENV", "CONDA_PREFIX"} {
		if v := os.Getenv(env); v != "" {
			roots = append(roots, filepath.Join(v, "lib/python3*/site-packages"))
		}
	}
	if home, err := os.UserHomeDir(); err == nil {
		roots = append(roots, filepath.Join(home, ".local/lib/python3*/site-packages"))
	}
	roots = append(roots, pythonRoots...)
	dirs := append([]string(nil), fixedDirs...)
	seen := map[string]bool{}
	for _, r := range roots {
		matches, _ := filepath.Glob(filepath.Join(r, "nvidia/*/lib"))
		sort.Strings(matches)
		for _, m := range matches {
			if !seen[m] {
				seen[m] = true
				dirs = append(dirs, m)
			}
		}
	}
	return dirs
}

// envDirs are the folders named by LOCO_CUDA_LIB_DIR.
func envDirs() []string {
	var out []string
	for _, d := range strings.Split(os.Getenv(libDirEnv), ":") {
		if d != "" {
			out = append(out, d)
		}
	}
	return out
}

// LoadError says which library could not be loaded, what was tried where,
// and the last loader message.
type LoadError struct {
	What    string
	Sonames []string
	Dirs    []string // folders tried besides the loader's default path
	Last    error
}

func (e *LoadError) Error() string {
	dirs := "none"
	if len(e.Dirs) > 0 {
		dirs = strings.Join(e.Dirs, ", ")
	}
	return fmt.Sprintf("cuda: cannot load %s: tried %s in %s=%q, the loader's default path, and %s (last error: %v); set %s to the folder holding it",
		e.What, strings.Join(e.Sonames, ", "), libDirEnv, os.Getenv(libDirEnv), dirs, e.Last, libDirEnv)
}

// open loads lib: first from LOCO_CUDA_LIB_DIR, then each soname through the
// loader's default path, then from the extra folders. It returns the handle
// and the path (or soname) that loaded.
func (lib library) open(extra []string) (uintptr, string, error) {
	var last error
	try := func(path string) (uintptr, bool) {
		h, err := dlopen(path)
		if err != nil {
			last = err
			return 0, false
		}
		return h, true
	}
	for _, d := range envDirs() {
		for _, so := range lib.sonames {
			p := filepath.Join(d, so)
			if _, err := os.Stat(p); err != nil {
				continue
			}
			if h, ok := try(p); ok {
				return h, p, nil
			}
		}
	}
	for _, so := range lib.sonames {
		if h, ok := try(so); ok {
			return h, so, nil
		}
		for _, d := range extra {
			p := filepath.Join(d, so)
			if _, err := os.Stat(p); err != nil {
				continue
			}
			if h, ok := try(p); ok {
				return h, p, nil
			}
		}
	}
	if last == nil {
		last = errors.New("not found")
	}
	return 0, "", &LoadError{What: lib.what, Sonames: lib.sonames, Dirs: extra, Last: last}
}
