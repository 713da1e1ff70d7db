// Package ipam hands out pod IPs from the node's pod CIDR, like the CNI
// host-local plugin: round-robin from the first usable address upward,
// skipping the network address, the gateway (bridge) address and the
// broadcast address. Allocations can be persisted in a directory (one file
// per IP, holding the owner) so a restarted node keeps them.
package ipam

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
)

// ErrExhausted is returned when every address of the range is in use.
var ErrExhausted = errors.New("ipam: no free address in range")

// Allocator is safe for concurrent use.
type Allocator struct {
	mu      sync.Mutex
	network *net.IPNet
	first   uint32 // first allocatable address
	last    uint32 // last allocatable address
	skip    map[uint32]bool
	byIP    map[uint32]string // ip -> owner
	byOwner map[string]uint32
	next    uint32 // round-robin cursor
	dir     string // persistence dir; "" = memory only
}

// New returns an allocator for cidr (IPv4 only). reserved addresses (the
// bridge address) are never handed out. If dir is not empty, allocations are
// persisted there and loaded from it.
func New(cidr string, dir string, reserved ...string) (*Allocator, error) {
	_, n, err := net.ParseCIDR(cidr)
	if err != nil {
		return nil, fmt.Errorf("ipam: bad CIDR %q: %w", cidr, err)
	}
	if n.IP.To4() == nil {
		return nil, fmt.Errorf("ipam: only IPv4 is supported, got %q", cidr)
	}
	ones, bits := n.Mask.Size()
	if bits-ones < 2 {
		return nil, fmt.Errorf("ipam: CIDR %q is too small", cidr)
	}
	base := ip2u(n.IP)
	size := uint32(1) << uint(bits-ones)
	a := &Allocator{
		network: n,
		first:   base + 1,
		last:    base + size - 2,
		skip:    map[uint32]bool{},
		byIP:    map[uint32]string{},
		byOwner: map[string]uint32{},
		dir:     dir,
	}
	for _, r := range reserved {
		ip := net.ParseIP(r)
		if ip == nil || ip.To4() == nil {
			return nil, fmt.Errorf("ipam: bad reserved address %q", r)
		}
		a.skip[ip2u(ip)] = true
	}
	a.next = a.first
	if dir != "" {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, err
		}
		if err := a.load(); err != nil {
			return nil, err
		}
	}
	return a, nil
}

// PrefixLen is the CIDR's prefix length (16 for a /16).
func (a *Allocator) PrefixLen() int { ones, _ := a.network.Mask.Size(); return ones }

// Contains reports whether ip is inside the allocator's CIDR.
func (a *Allocator) Contains(ip string) bool {
	p := net.ParseIP(ip)
	return p != nil && a.network.Contains(p)
}

// Get returns the address held by owner, if any.
func (a *Allocator) Get(owner string) (string, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	u, ok := a.byOwner[owner]
	if !ok {
		return "", false
	}
	return u2ip(u).String(), true
}

// Allocate returns owner's address, allocating the next free one if owner
// holds none yet.
func (a *Allocator) Allocate(owner string) (string, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if u, ok := a.byOwner[owner]; ok {
		return u2ip(u).String(), nil
	}
	n := a.last - a.first + 1
	cur := a.next
	for i := uint32(0); i < n; i++ {
		if cur > a.last || cur < a.first {
			cur = a.first
		}
		if !a.skip[cur] {
			if _, used := a.byIP[cur]; !used {
				if err := a.take(cur, owner); err != nil {
					return "", err
				}
				a.next = cur + 1
				return u2ip(cur).String(), nil
			}
		}
		cur++
	}
	return "", ErrExhausted
}

// AllocateSpecific gives ip to owner if it is free (or already owner's).
func (a *Allocator) AllocateSpecific(ip, owner string) error {
	p := net.ParseIP(ip)
	if p == nil || p.To4() == nil || !a.network.Contains(p) {
		return fmt.Errorf("ipam: %q is not in %s", ip, a.network)
	}
	u := ip2u(p)
	a.mu.Lock()
	defer a.mu.Unlock()
	if u < a.first || u > a.last || a.skip[u] {
		return fmt.Errorf("ipam: %s is reserved", ip)
	}
	if cur, ok := a.byIP[u]; ok {
		if cur == owner {
			return nil
		}
		return fmt.Errorf("ipam: %s is in use by %s", ip, cur)
	}
	if old, ok := a.byOwner[owner]; ok {
		a.drop(old)
	}
	return a.take(u, owner)
}

// Release frees whatever owner holds (no-op if nothing).
func (a *Allocator) Release(owner string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if u, ok := a.byOwner[owner]; ok {
		a.drop(u)
	}
}

// Owners returns a copy of owner -> ip.
func (a *Allocator) Owners() map[string]string {
	a.mu.Lock()
	defer a.mu.Unlock()
	m := make(map[string]string, len(a.byOwner))
	for o, u := range a.byOwner {
		m[o] = u2ip(u).String()
	}
	return m
}

func (a *Allocator) take(u uint32, owner string) error {
	if a.dir != "" {
		if err := os.WriteFile(filepath.Join(a.dir, u2ip(u).String()), []byte(owner), 0o600); err != nil {
			return fmt.Errorf("ipam: persist: %w", err)
		}
	}
	a.byIP[u] = owner
	a.byOwner[owner] = u
	return nil
}

func (a *Allocator) drop(u uint32) {
	owner := a.byIP[u]
	delete(a.byIP, u)
	delete(a.byOwner, owner)
	if a.dir != "" {
		_ = os.Remove(filepath.Join(a.dir, u2ip(u).String()))
	}
}

func (a *Allocator) load() error {
	ents, err := os.ReadDir(a.dir)
	if err != nil {
		return err
	}
	for _, e := range ents {
		p := net.ParseIP(e.Name())
		if p == nil || p.To4() == nil || !a.network.Contains(p) {
			continue
		}
		b, err := os.ReadFile(filepath.Join(a.dir, e.Name()))
		if err != nil {
			continue
		}
		owner := strings.TrimSpace(string(b))
		u := ip2u(p)
		if owner == "" || u < a.first || u > a.last || a.skip[u] {
			_ = os.Remove(filepath.Join(a.dir, e.Name()))
			continue
		}
		if _, dup := a.byOwner[owner]; dup {
			_ = os.Remove(filepath.Join(a.dir, e.Name()))
			continue
		}
		a.byIP[u] = owner
		a.byOwner[owner] = u
		if u >= a.next {
			a.next = u + 1
		}
	}
	return nil
}

func ip2u(ip net.IP) uint32 { return binary.BigEndian.Uint32(ip.To4()) }

func u2ip(u uint32) net.IP {
	b := make(net.IP, 4)
	binary.BigEndian.PutUint32(b, u)
	return b
}
