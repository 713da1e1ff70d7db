package ipam

import (
	"errors"
	"testing"
)

func TestAllocateSkipsGatewayAndRoundRobins(t *testing.T) {
	a, err := New("10.88.0.0/16", "", "10.88.0.1")
	if err != nil {
		t.Fatal(err)
	}
	ip1, _ := a.Allocate("a")
	ip2, _ := a.Allocate("b")
	if ip1 != "10.88.0.2" || ip2 != "10.88.0.3" {
		t.Fatalf("got %s %s", ip1, ip2)
	}
	again, _ := a.Allocate("a")
	if again != ip1 {
		t.Fatalf("owner a got a second address %s", again)
	}
	a.Release("a")
	ip3, _ := a.Allocate("c")
	if ip3 != "10.88.0.4" {
		t.Fatalf("expected round robin to 10.88.0.4, got %s", ip3)
	}
}

func TestExhaustionAndWrap(t *testing.T) {
	a, err := New("10.0.0.0/29", "", "10.0.0.1") // usable .1-.6, .1 reserved
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, o := range []string{"a", "b", "c", "d", "e"} {
		ip, err := a.Allocate(o)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, ip)
	}
	if got[0] != "10.0.0.2" || got[4] != "10.0.0.6" {
		t.Fatalf("got %v", got)
	}
	if _, err := a.Allocate("f"); !errors.Is(err, ErrExhausted) {
		t.Fatalf("want ErrExhausted, got %v", err)
	}
	a.Release("b")
	ip, err := a.Allocate("f")
	if err != nil || ip != "10.0.0.3" {
		t.Fatalf("wrap: got %s %v", ip, err)
	}
}

func TestAllocateSpecific(t *testing.T) {
	a, _ := New("10.88.0.0/16", "", "10.88.0.1")
	if err := a.AllocateSpecific("10.88.0.1", "x"); err == nil {
		t.Fatal("gateway must not be allocatable")
	}
	if err := a.AllocateSpecific("10.89.0.1", "x"); err == nil {
		t.Fatal("out of range accepted")
	}
	if err := a.AllocateSpecific("10.88.0.9", "x"); err != nil {
		t.Fatal(err)
	}
	if err := a.AllocateSpecific("10.88.0.9", "y"); err == nil {
		t.Fatal("double allocation accepted")
	}
	if ip, _ := a.Get("x"); ip != "10.88.0.9" {
		t.Fatalf("get: %s", ip)
	}
}

func TestPersistence(t *testing.T) {
	dir := t.TempDir()
	a, _ := New("10.88.0.0/16", dir, "10.88.0.1")
	ip, _ := a.Allocate("pod-1")
	b, err := New("10.88.0.0/16", dir, "10.88.0.1")
	if err != nil {
		t.Fatal(err)
	}
	if got, ok := b.Get("pod-1"); !ok || got != ip {
		t.Fatalf("reloaded %q %v, want %s", got, ok, ip)
	}
	next, _ := b.Allocate("pod-2")
	if next == ip {
		t.Fatal("reloaded allocator reused a held address")
	}
	b.Release("pod-1")
	c, _ := New("10.88.0.0/16", dir, "10.88.0.1")
	if _, ok := c.Get("pod-1"); ok {
		t.Fatal("release was not persisted")
	}
}
