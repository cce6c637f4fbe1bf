package cuda

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// withDlopen replaces the loader for one test.
func withDlopen(t *testing.T, f func(path string) (uintptr, error)) {
	old := dlopen
	dlopen = f
	t.Cleanup(func() { dlopen = old })
}

func TestLoadErrorNamesWhatAndWhere(t *testing.T) {
	dir := t.TempDir()
	t.Setenv(libDirEnv, dir)
	withDlopen(t, func(path string) (uintptr, error) { return 0, errors.New("cannot open shared object file") })
	lib := library{"cuBLAS", []string{"libcublas.so.13", "libcublas.so.12"}}
	_, _, err := lib.open([]string{"/opt/x/nvidia/cublas/lib"})
	if err == nil {
		t.Fatal("open succeeded with a loader that always fails")
	}
	msg := err.Error()
	for _, want := range []string{"cuBLAS", "libcublas.so.13", "libcublas.so.12", libDirEnv, dir, "/opt/x/nvidia/cublas/lib", "cannot open shared object file"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not mention %q", msg, want)
		}
	}
	var le *LoadError
	if !errors.As(err, &le) || le.What != "cuBLAS" {
		t.Errorf("error is not a *LoadError for cuBLAS: %#v", err)
	}
}

func TestLibDirEnvComesFirst(t *testing.T) {
	dir := t.TempDir()
	want := filepath.Join(dir, "libnvrtc.so.12")
	if err := os.WriteFile(want, []byte("not really a library"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv(libDirEnv, "/nonexistent:"+dir)
	var tried []string
	withDlopen(t, func(path string) (uintptr, error) {
		tried = append(tried, path)
		if path == want {
			return 42, nil
		}
		return 0, errors.New("no")
	})
	h, path, err := libNvrtc.open(nil)
	if err != nil || h != 42 || path != want {
		t.Fatalf("open = %d, %q, %v; want the file in %s (tried %v)", h, path, err, libDirEnv, tried)
	}
	if len(tried) != 1 {
		t.Errorf("loader tried %v before the %s folder", tried, libDirEnv)
	}
}

func TestSonamePreferenceAndExtraDirs(t *testing.T) {
	t.Setenv(libDirEnv, "")
	dir := t.TempDir()
	for _, so := range []string{"libcublas.so.12", "libcublas.so.11"} {
		os.WriteFile(filepath.Join(dir, so), nil, 0o644)
	}
	withDlopen(t, func(path string) (uintptr, error) {
		if filepath.Dir(path) == dir {
			return 7, nil
		}
		return 0, errors.New("not on the loader path")
	})
	_, path, err := libCublas.open([]string{"/nonexistent", dir})
	if err != nil {
		t.Fatal(err)
	}
	if path != filepath.Join(dir, "libcublas.so.12") {
		t.Errorf("loaded %s, want the newest soname present, libcublas.so.12", path)
	}
}

func TestSearchDirsFindsPythonNvidiaLibs(t *testing.T) {
	root := t.TempDir()
	site := filepath.Join(root, "lib", "python3.11", "site-packages")
	for _, pkg := range []string{"cublas", "cuda_nvrtc"} {
		if err := os.MkdirAll(filepath.Join(site, "nvidia", pkg, "lib"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("VIRTUAL_ENV", root)
	dirs := searchDirs()
	for _, pkg := range []string{"cublas", "cuda_nvrtc"} {
		want := filepath.Join(site, "nvidia", pkg, "lib")
		found := false
		for _, d := range dirs {
			found = found || d == want
		}
		if !found {
			t.Errorf("searchDirs() = %v, missing %s", dirs, want)
		}
	}
}
