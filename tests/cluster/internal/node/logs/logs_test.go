package logs

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func writeLog(t *testing.T, lines ...string) string {
	p := filepath.Join(t.TempDir(), "0.log")
	if err := os.WriteFile(p, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func read(t *testing.T, p string, o Options) string {
	var b bytes.Buffer
	if err := Read(context.Background(), p, &b, o); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func TestReadOptions(t *testing.T) {
	p := writeLog(t,
		"2026-01-01T00:00:01.000000000Z stdout F one",
		"2026-01-01T00:00:02.000000000Z stderr F two",
		"2026-01-01T00:00:03.000000000Z stdout P thr",
		"2026-01-01T00:00:03.500000000Z stdout F ee",
		"2026-01-01T00:00:04.000000000Z stdout F four",
	)
	if got := read(t, p, Options{}); got != "one\ntwo\nthree\nfour\n" {
		t.Errorf("all: %q", got)
	}
	two := int64(2)
	if got := read(t, p, Options{TailLines: &two}); got != "ee\nfour\n" {
		t.Errorf("tail: %q", got)
	}
	zero := int64(0)
	if got := read(t, p, Options{TailLines: &zero}); got != "" {
		t.Errorf("tail 0: %q", got)
	}
	lim := int64(6)
	if got := read(t, p, Options{LimitBytes: &lim}); got != "one\ntw" {
		t.Errorf("limit: %q", got)
	}
	since := time.Date(2026, 1, 1, 0, 0, 3, 0, time.UTC)
	if got := read(t, p, Options{SinceTime: &since}); got != "three\nfour\n" {
		t.Errorf("since: %q", got)
	}
	one := int64(1)
	if got := read(t, p, Options{TailLines: &one, Timestamps: true}); got != "2026-01-01T00:00:04.000000000Z four\n" {
		t.Errorf("timestamps: %q", got)
	}
}

func TestWriterAndFollow(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "0.log")
	w, err := NewWriter(p)
	if err != nil {
		t.Fatal(err)
	}
	pr, pw, _ := os.Pipe()
	er, ew, _ := os.Pipe()
	w.Copy(pr, "stdout")
	w.Copy(er, "stderr")
	var active atomic.Bool
	active.Store(true)
	done := make(chan string)
	go func() {
		var b bytes.Buffer
		_ = Read(context.Background(), p, &b, Options{Follow: true, Active: active.Load, Poll: 10 * time.Millisecond})
		done <- b.String()
	}()
	io.WriteString(pw, "hello\n")
	time.Sleep(30 * time.Millisecond)
	io.WriteString(ew, "oops\n")
	time.Sleep(30 * time.Millisecond)
	io.WriteString(pw, "no newline")
	pw.Close()
	ew.Close()
	if !w.Wait(time.Second) {
		t.Fatal("writer did not finish")
	}
	active.Store(false)
	select {
	case got := <-done:
		if got != "hello\noops\nno newline" {
			t.Fatalf("follow got %q", got)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("follow did not stop after the writer closed")
	}
	if got := Tail(p, 80, 8); got != " newline" {
		t.Fatalf("tail bytes: %q", got)
	}
}
