// Package probe implements container probes: the threshold logic (pure,
// Tracker) and the httpGet / tcpSocket checks. exec probes are run by the
// caller (they need the container's namespaces) through an ExecFunc.
package probe

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// Result of one probe or the tracked state.
type Result int

const (
	Unknown Result = iota
	Success
	Failure
)

func (r Result) String() string {
	switch r {
	case Success:
		return "success"
	case Failure:
		return "failure"
	}
	return "unknown"
}

// Kind of probe.
type Kind string

const (
	Liveness  Kind = "Liveness"
	Readiness Kind = "Readiness"
	Startup   Kind = "Startup"
)

// Params are a probe's timing knobs with the API defaults applied.
type Params struct {
	InitialDelay     time.Duration
	Period           time.Duration
	Timeout          time.Duration
	SuccessThreshold int
	FailureThreshold int
}

// ParamsFor applies the API defaults (period 10s, timeout 1s, thresholds 1/3).
func ParamsFor(p *v1.Probe) Params {
	out := Params{
		InitialDelay:     time.Duration(p.InitialDelaySeconds) * time.Second,
		Period:           time.Duration(p.PeriodSeconds) * time.Second,
		Timeout:          time.Duration(p.TimeoutSeconds) * time.Second,
		SuccessThreshold: int(p.SuccessThreshold),
		FailureThreshold: int(p.FailureThreshold),
	}
	if out.Period <= 0 {
		out.Period = 10 * time.Second
	}
	if out.Timeout <= 0 {
		out.Timeout = time.Second
	}
	if out.SuccessThreshold <= 0 {
		out.SuccessThreshold = 1
	}
	if out.FailureThreshold <= 0 {
		out.FailureThreshold = 3
	}
	return out
}

// Tracker turns individual results into the probe's state, with the
// kubelet's semantics: the state flips to Failure after FailureThreshold
// consecutive failures and to Success after SuccessThreshold consecutive
// successes; until then it keeps its previous value.
type Tracker struct {
	p       Params
	current Result
	last    Result
	run     int
}

// NewTracker starts in state initial (Failure for readiness, Success for
// liveness, Unknown for startup).
func NewTracker(p Params, initial Result) *Tracker {
	return &Tracker{p: p, current: initial}
}

// Current state.
func (t *Tracker) Current() Result { return t.current }

// Observe records one result and reports whether the state changed.
func (t *Tracker) Observe(r Result) bool {
	if r == t.last {
		t.run++
	} else {
		t.last = r
		t.run = 1
	}
	if (r == Failure && t.run < t.p.FailureThreshold) || (r == Success && t.run < t.p.SuccessThreshold) {
		return false
	}
	if r == t.current {
		return false
	}
	t.current = r
	return true
}

// ExecFunc runs cmd in the container and returns its exit code (or an
// error if it could not be run or timed out).
type ExecFunc func(ctx context.Context, cmd []string) (exitCode int, output string, err error)

// Target is where network probes go.
type Target struct {
	PodIP     string
	Container *v1.Container
}

// Run performs one probe. The returned message explains a failure.
func Run(ctx context.Context, pr *v1.Probe, tgt Target, exec ExecFunc) (Result, string) {
	p := ParamsFor(pr)
	ctx, cancel := context.WithTimeout(ctx, p.Timeout)
	defer cancel()
	switch {
	case pr.Exec != nil:
		code, out, err := exec(ctx, pr.Exec.Command)
		if err != nil {
			if ctx.Err() != nil {
				return Failure, fmt.Sprintf("command timed out after %s", p.Timeout)
			}
			return Failure, err.Error()
		}
		if code != 0 {
			return Failure, fmt.Sprintf("command exited with %d: %s", code, truncate(out, 256))
		}
		return Success, ""
	case pr.HTTPGet != nil:
		return HTTPGet(ctx, pr.HTTPGet, tgt)
	case pr.TCPSocket != nil:
		return TCP(ctx, pr.TCPSocket, tgt)
	case pr.GRPC != nil:
		return Failure, "grpc probes are not supported by kubeloop-node"
	}
	return Failure, "probe has no handler"
}

// ResolvePort resolves a numeric or named container port.
func ResolvePort(port intstr.IntOrString, c *v1.Container) (int, error) {
	if port.Type == intstr.Int {
		if port.IntVal <= 0 || port.IntVal > 65535 {
			return 0, fmt.Errorf("invalid port %d", port.IntVal)
		}
		return int(port.IntVal), nil
	}
	if n, err := strconv.Atoi(port.StrVal); err == nil {
		return n, nil
	}
	if c != nil {
		for _, cp := range c.Ports {
			if cp.Name == port.StrVal {
				return int(cp.ContainerPort), nil
			}
		}
	}
	return 0, fmt.Errorf("couldn't find port %q in container", port.StrVal)
}

// URL builds the probe URL (exported for tests).
func URL(h *v1.HTTPGetAction, tgt Target) (*url.URL, error) {
	port, err := ResolvePort(h.Port, tgt.Container)
	if err != nil {
		return nil, err
	}
	host := h.Host
	if host == "" {
		host = tgt.PodIP
	}
	scheme := strings.ToLower(string(h.Scheme))
	if scheme == "" {
		scheme = "http"
	}
	path := h.Path
	if path == "" {
		path = "/"
	} else if !strings.HasPrefix(path, "/") {
		path = "/" + path
	}
	u, err := url.Parse(fmt.Sprintf("%s://%s%s", scheme, net.JoinHostPort(host, strconv.Itoa(port)), path))
	if err != nil {
		return nil, err
	}
	return u, nil
}

var httpTransport = &http.Transport{
	TLSClientConfig:   &tls.Config{InsecureSkipVerify: true},
	DisableKeepAlives: true,
	Proxy:             nil,
}

// HTTPGet probes with GET; 200 <= code < 400 is success.
func HTTPGet(ctx context.Context, h *v1.HTTPGetAction, tgt Target) (Result, string) {
	u, err := URL(h, tgt)
	if err != nil {
		return Failure, err.Error()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return Failure, err.Error()
	}
	req.Header.Set("User-Agent", "kube-probe/1.37")
	req.Header.Set("Accept", "*/*")
	for _, hd := range h.HTTPHeaders {
		if strings.EqualFold(hd.Name, "host") {
			req.Host = hd.Value
			continue
		}
		req.Header.Add(hd.Name, hd.Value)
	}
	client := &http.Client{Transport: httpTransport}
	resp, err := client.Do(req)
	if err != nil {
		return Failure, fmt.Sprintf("Get %q: %v", u.String(), err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 10*1024))
	if resp.StatusCode >= 200 && resp.StatusCode < 400 {
		return Success, ""
	}
	return Failure, fmt.Sprintf("HTTP probe failed with statuscode: %d %s", resp.StatusCode, truncate(string(body), 128))
}

// TCP probes by opening a connection.
func TCP(ctx context.Context, t *v1.TCPSocketAction, tgt Target) (Result, string) {
	port, err := ResolvePort(t.Port, tgt.Container)
	if err != nil {
		return Failure, err.Error()
	}
	host := t.Host
	if host == "" {
		host = tgt.PodIP
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", net.JoinHostPort(host, strconv.Itoa(port)))
	if err != nil {
		return Failure, fmt.Sprintf("dial tcp %s:%d: %v", host, port, err)
	}
	_ = conn.Close()
	return Success, ""
}

func truncate(s string, n int) string {
	s = strings.TrimSpace(s)
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}
