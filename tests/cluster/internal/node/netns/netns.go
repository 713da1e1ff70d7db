// Package netns creates and removes pod network namespaces with iproute2:
// a named namespace (/run/netns/NAME), a veth pair whose host end is
// enslaved to the node bridge, the pod address on eth0, lo up and a default
// route via the bridge address.
package netns

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Dir holds named network namespaces.
const Dir = "/run/netns"

// Prefix of the namespaces (and host veths) this node creates.
const (
	NsPrefix   = "kl-"
	VethPrefix = "klv"
)

// Names derives the namespace and host-side veth names from a pod UID.
func Names(uid string) (ns, veth string) {
	short := strings.ReplaceAll(uid, "-", "")
	if len(short) > 10 {
		short = short[:10]
	}
	return NsPrefix + short, VethPrefix + short // veth: 13 chars, under IFNAMSIZ
}

// Path of a named namespace.
func Path(ns string) string { return filepath.Join(Dir, ns) }

func ip(ctx context.Context, args ...string) error {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", args...)
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	return nil
}

// Setup creates namespace ns with eth0 = podIP/prefixLen, connected to
// bridge through host veth, default route via gateway. It is idempotent
// enough to retry: it first removes leftovers of the same names.
func Setup(ctx context.Context, ns, veth, bridge, podIP string, prefixLen int, gateway string) error {
	Teardown(ctx, ns, veth)
	steps := [][]string{
		{"netns", "add", ns},
		{"link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns},
		{"link", "set", veth, "master", bridge, "up"},
		{"-n", ns, "link", "set", "lo", "up"},
		{"-n", ns, "addr", "add", podIP + "/" + strconv.Itoa(prefixLen), "dev", "eth0"},
		{"-n", ns, "link", "set", "eth0", "up"},
		{"-n", ns, "route", "add", "default", "via", gateway},
	}
	for _, s := range steps {
		if err := ip(ctx, s...); err != nil {
			Teardown(ctx, ns, veth)
			return err
		}
	}
	return nil
}

// Teardown removes the host veth (destroying the pair) and the namespace.
// Errors are ignored: it is used for cleanup.
func Teardown(ctx context.Context, ns, veth string) {
	if veth != "" {
		if _, err := os.Stat(filepath.Join("/sys/class/net", veth)); err == nil {
			_ = ip(ctx, "link", "del", veth)
		}
	}
	if _, err := os.Stat(Path(ns)); err == nil {
		_ = ip(ctx, "netns", "del", ns)
	}
}

// Exists reports whether the named namespace exists.
func Exists(ns string) bool {
	_, err := os.Stat(Path(ns))
	return err == nil
}

// List returns the names of namespaces created by this node (kl-*).
func List() []string {
	ents, err := os.ReadDir(Dir)
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), NsPrefix) {
			out = append(out, e.Name())
		}
	}
	return out
}

// StaleVeths lists host veths named like ours (klv*).
func StaleVeths() []string {
	ents, err := os.ReadDir("/sys/class/net")
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), VethPrefix) {
			out = append(out, e.Name())
		}
	}
	return out
}

// Pids lists the processes inside namespace ns (by comparing
// /proc/PID/ns/net with the namespace's inode).
func Pids(ns string) []int {
	var target os.FileInfo
	target, err := os.Stat(Path(ns))
	if err != nil {
		return nil
	}
	procs, _ := os.ReadDir("/proc")
	var out []int
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil {
			continue
		}
		st, err := os.Stat(filepath.Join("/proc", p.Name(), "ns", "net"))
		if err != nil {
			continue
		}
		if os.SameFile(st, target) {
			out = append(out, pid)
		}
	}
	return out
}

// CheckBridge verifies the bridge exists and is up.
func CheckBridge(bridge string) error {
	b, err := os.ReadFile(filepath.Join("/sys/class/net", bridge, "operstate"))
	if err != nil {
		return fmt.Errorf("bridge %s not found (the launcher creates it): %w", bridge, err)
	}
	if _, err := os.Stat(filepath.Join("/sys/class/net", bridge, "bridge")); err != nil {
		return fmt.Errorf("%s is not a bridge", bridge)
	}
	_ = b
	return nil
}
