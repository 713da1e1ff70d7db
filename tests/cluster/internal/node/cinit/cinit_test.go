package cinit

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLookPath(t *testing.T) {
	dir := t.TempDir()
	exe := filepath.Join(dir, "tool")
	if err := os.WriteFile(exe, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	_ = os.WriteFile(filepath.Join(dir, "data"), nil, 0o644)
	if p, err := LookPath("tool", "/nonexistent:"+dir); err != nil || p != exe {
		t.Fatalf("%q %v", p, err)
	}
	if _, err := LookPath("nope", dir); err == nil || !strings.Contains(err.Error(), "executable file not found in $PATH") {
		t.Fatalf("%v", err)
	}
	if p, err := LookPath(exe, ""); err != nil || p != exe {
		t.Fatalf("absolute: %q %v", p, err)
	}
	if _, err := LookPath(filepath.Join(dir, "data"), ""); err == nil {
		t.Fatal("non-executable accepted")
	}
}

func TestUnescape(t *testing.T) {
	if got := unescape(`/a\040b`); got != "/a b" {
		t.Fatalf("%q", got)
	}
}

func TestCreatedMountPointsAreRemoved(t *testing.T) {
	root := t.TempDir()
	log := filepath.Join(root, "created")
	target := filepath.Join(root, "a", "b", "c")
	if err := ensureTarget(target, true, log); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(root, "x", "termination-log")
	if err := ensureTarget(file, false, log); err != nil {
		t.Fatal(err)
	}
	keep := filepath.Join(root, "a", "keep.txt")
	_ = os.WriteFile(keep, []byte("data"), 0o644)
	if n := RemoveCreated(log); n != 4 { // c, b, termination-log, x (a is not empty)
		t.Fatalf("removed %d", n)
	}
	if _, err := os.Stat(filepath.Join(root, "a", "b")); !os.IsNotExist(err) {
		t.Fatal("a/b should be gone")
	}
	if _, err := os.Stat(keep); err != nil {
		t.Fatal("unrelated file removed")
	}
}
