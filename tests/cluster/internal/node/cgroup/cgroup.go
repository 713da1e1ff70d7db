// Package cgroup puts containers in memory cgroups (v1: the memory
// controller hierarchy, v2: the unified hierarchy) under a "kubeloop"
// parent: <root>/kubeloop/<pod-uid>/<container>. It sets memory limits,
// reads the OOM-kill counter and enumerates / kills a pod's processes.
package cgroup

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Version of the hierarchy in use.
type Version int

const (
	None Version = iota
	V1
	V2
)

func (v Version) String() string {
	switch v {
	case V1:
		return "v1"
	case V2:
		return "v2"
	}
	return "none"
}

// Manager handles the kubeloop subtree. The zero value (None) does nothing.
type Manager struct {
	Version Version
	Root    string // .../kubeloop
}

// Detect picks the hierarchy: v2 if /sys/fs/cgroup is the unified
// hierarchy with the memory controller, else v1 if the memory controller is
// mounted at /sys/fs/cgroup/memory, else none.
func Detect(base string) (*Manager, error) {
	if base == "" {
		base = "/sys/fs/cgroup"
	}
	if b, err := os.ReadFile(filepath.Join(base, "cgroup.controllers")); err == nil {
		if !strings.Contains(" "+string(b)+" ", " memory") {
			return &Manager{}, fmt.Errorf("cgroup v2 without the memory controller")
		}
		m := &Manager{Version: V2, Root: filepath.Join(base, "kubeloop")}
		if err := os.MkdirAll(m.Root, 0o755); err != nil {
			return &Manager{}, err
		}
		if err := enableMemory(base); err != nil {
			return &Manager{}, err
		}
		if err := enableMemory(m.Root); err != nil {
			return &Manager{}, err
		}
		return m, nil
	}
	if _, err := os.Stat(filepath.Join(base, "memory", "memory.limit_in_bytes")); err == nil {
		m := &Manager{Version: V1, Root: filepath.Join(base, "memory", "kubeloop")}
		if err := os.MkdirAll(m.Root, 0o755); err != nil {
			return &Manager{}, err
		}
		return m, nil
	}
	return &Manager{}, fmt.Errorf("no memory cgroup controller found under %s", base)
}

func enableMemory(dir string) error {
	b, _ := os.ReadFile(filepath.Join(dir, "cgroup.subtree_control"))
	if strings.Contains(string(b), "memory") {
		return nil
	}
	if err := os.WriteFile(filepath.Join(dir, "cgroup.subtree_control"), []byte("+memory"), 0); err != nil {
		return fmt.Errorf("enable memory controller in %s: %w", dir, err)
	}
	return nil
}

// PodDir is the pod's cgroup directory ("" when disabled).
func (m *Manager) PodDir(podUID string) string {
	if m == nil || m.Version == None {
		return ""
	}
	return filepath.Join(m.Root, podUID)
}

// Create makes (or reuses) the container's cgroup and sets its memory
// limit (limit <= 0: unlimited). It returns the directory to join.
func (m *Manager) Create(podUID, container string, limit int64) (string, error) {
	if m == nil || m.Version == None {
		return "", nil
	}
	pod := m.PodDir(podUID)
	if err := os.MkdirAll(pod, 0o755); err != nil {
		return "", err
	}
	if m.Version == V2 {
		if err := enableMemory(pod); err != nil {
			return "", err
		}
	}
	dir := filepath.Join(pod, container)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	var file, val string
	if m.Version == V1 {
		file, val = "memory.limit_in_bytes", "-1"
		if limit > 0 {
			val = strconv.FormatInt(limit, 10)
		}
	} else {
		file, val = "memory.max", "max"
		if limit > 0 {
			val = strconv.FormatInt(limit, 10)
		}
		// No swap for limited containers, like the kubelet's default.
		if limit > 0 {
			_ = os.WriteFile(filepath.Join(dir, "memory.swap.max"), []byte("0"), 0)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, file), []byte(val), 0); err != nil {
		return "", fmt.Errorf("set %s=%s: %w", file, val, err)
	}
	return dir, nil
}

// OOMKills returns the cgroup's OOM-kill counter.
func (m *Manager) OOMKills(dir string) uint64 {
	if m == nil || m.Version == None || dir == "" {
		return 0
	}
	file := "memory.oom_control"
	if m.Version == V2 {
		file = "memory.events"
	}
	f, err := os.Open(filepath.Join(dir, file))
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 2 && fields[0] == "oom_kill" {
			n, _ := strconv.ParseUint(fields[1], 10, 64)
			return n
		}
	}
	return 0
}

// Procs lists the processes in dir and its descendants.
func Procs(dir string) []int {
	var out []int
	_ = filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err != nil || !info.IsDir() {
			return nil
		}
		b, err := os.ReadFile(filepath.Join(p, "cgroup.procs"))
		if err != nil {
			return nil
		}
		for _, l := range strings.Fields(string(b)) {
			if pid, err := strconv.Atoi(l); err == nil {
				out = append(out, pid)
			}
		}
		return nil
	})
	return out
}

// Kill sends sig to every process in dir (recursively) and returns how many.
func Kill(dir string, sig syscall.Signal) int {
	if dir == "" {
		return 0
	}
	pids := Procs(dir)
	for _, p := range pids {
		_ = syscall.Kill(p, sig)
	}
	return len(pids)
}

// Remove kills what is left in dir with SIGKILL and removes the directory
// tree (leaves first), retrying briefly while processes exit.
func Remove(dir string) error {
	if dir == "" {
		return nil
	}
	if _, err := os.Stat(dir); os.IsNotExist(err) {
		return nil
	}
	var lastErr error
	for i := 0; i < 50; i++ {
		Kill(dir, syscall.SIGKILL)
		lastErr = removeTree(dir)
		if lastErr == nil {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return lastErr
}

func removeTree(dir string) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		if os.IsNotExist(err) {
			return nil
		}
		return err
	}
	for _, e := range ents {
		if e.IsDir() {
			if err := removeTree(filepath.Join(dir, e.Name())); err != nil {
				return err
			}
		}
	}
	if err := syscall.Rmdir(dir); err != nil && !os.IsNotExist(err) {
		return err
	}
	return nil
}

// PodUIDs lists the pod directories under the kubeloop root.
func (m *Manager) PodUIDs() []string {
	if m == nil || m.Version == None {
		return nil
	}
	ents, _ := os.ReadDir(m.Root)
	var out []string
	for _, e := range ents {
		if e.IsDir() {
			out = append(out, e.Name())
		}
	}
	return out
}
