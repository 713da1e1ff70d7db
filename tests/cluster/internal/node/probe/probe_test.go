package probe

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

func TestDefaults(t *testing.T) {
	p := ParamsFor(&v1.Probe{})
	if p.Period != 10*time.Second || p.Timeout != time.Second || p.SuccessThreshold != 1 || p.FailureThreshold != 3 {
		t.Fatalf("%+v", p)
	}
}

func TestTrackerThresholds(t *testing.T) {
	tr := NewTracker(Params{SuccessThreshold: 2, FailureThreshold: 3}, Failure)
	if tr.Observe(Success) || tr.Current() != Failure {
		t.Fatal("one success must not flip with successThreshold 2")
	}
	if !tr.Observe(Success) || tr.Current() != Success {
		t.Fatal("two successes must flip")
	}
	tr.Observe(Failure)
	tr.Observe(Failure)
	if tr.Current() != Success {
		t.Fatal("two failures must not flip with failureThreshold 3")
	}
	tr.Observe(Success) // resets the failure run
	tr.Observe(Failure)
	tr.Observe(Failure)
	if tr.Current() != Success {
		t.Fatal("failure run must restart after a success")
	}
	if !tr.Observe(Failure) || tr.Current() != Failure {
		t.Fatal("third consecutive failure must flip")
	}
	// Liveness starts as Success.
	live := NewTracker(Params{SuccessThreshold: 1, FailureThreshold: 1}, Success)
	if live.Observe(Success) {
		t.Fatal("no change expected")
	}
	if !live.Observe(Failure) {
		t.Fatal("failureThreshold 1 flips immediately")
	}
	// Startup starts Unknown and flips on the first success.
	st := NewTracker(Params{SuccessThreshold: 1, FailureThreshold: 3}, Unknown)
	if !st.Observe(Success) || st.Current() != Success {
		t.Fatal("startup")
	}
}

func TestResolvePortAndURL(t *testing.T) {
	c := &v1.Container{Ports: []v1.ContainerPort{{Name: "http", ContainerPort: 8080}}}
	if p, err := ResolvePort(intstr.FromString("http"), c); err != nil || p != 8080 {
		t.Fatalf("%d %v", p, err)
	}
	if _, err := ResolvePort(intstr.FromString("nope"), c); err == nil {
		t.Fatal("unknown named port accepted")
	}
	u, err := URL(&v1.HTTPGetAction{Path: "healthz", Port: intstr.FromString("http"), Scheme: v1.URISchemeHTTPS}, Target{PodIP: "10.88.0.5", Container: c})
	if err != nil || u.String() != "https://10.88.0.5:8080/healthz" {
		t.Fatalf("%v %v", u, err)
	}
}

func TestHTTPAndTCP(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Test") != "yes" {
			w.WriteHeader(http.StatusTeapot)
			return
		}
		if r.URL.Path == "/bad" {
			w.WriteHeader(500)
			return
		}
		w.WriteHeader(200)
	}))
	defer srv.Close()
	host, portS, _ := net.SplitHostPort(srv.Listener.Addr().String())
	port, _ := strconv.Atoi(portS)
	tgt := Target{PodIP: host, Container: &v1.Container{}}
	hdr := []v1.HTTPHeader{{Name: "X-Test", Value: "yes"}}
	ctx := context.Background()
	if r, msg := Run(ctx, &v1.Probe{ProbeHandler: v1.ProbeHandler{HTTPGet: &v1.HTTPGetAction{Path: "/ok", Port: intstr.FromInt32(int32(port)), HTTPHeaders: hdr}}}, tgt, nil); r != Success {
		t.Fatalf("http ok: %v %s", r, msg)
	}
	if r, _ := Run(ctx, &v1.Probe{ProbeHandler: v1.ProbeHandler{HTTPGet: &v1.HTTPGetAction{Path: "/bad", Port: intstr.FromInt32(int32(port)), HTTPHeaders: hdr}}}, tgt, nil); r != Failure {
		t.Fatal("http 500 must fail")
	}
	if r, _ := Run(ctx, &v1.Probe{ProbeHandler: v1.ProbeHandler{TCPSocket: &v1.TCPSocketAction{Port: intstr.FromInt32(int32(port))}}}, tgt, nil); r != Success {
		t.Fatal("tcp must succeed")
	}
	srv.Close()
	if r, _ := Run(ctx, &v1.Probe{ProbeHandler: v1.ProbeHandler{TCPSocket: &v1.TCPSocketAction{Port: intstr.FromInt32(int32(port))}}}, tgt, nil); r != Failure {
		t.Fatal("tcp to closed port must fail")
	}
}

func TestExec(t *testing.T) {
	ok := func(ctx context.Context, cmd []string) (int, string, error) { return 0, "", nil }
	bad := func(ctx context.Context, cmd []string) (int, string, error) { return 3, "nope", nil }
	broken := func(ctx context.Context, cmd []string) (int, string, error) { return -1, "", errors.New("boom") }
	pr := &v1.Probe{ProbeHandler: v1.ProbeHandler{Exec: &v1.ExecAction{Command: []string{"true"}}}}
	if r, _ := Run(context.Background(), pr, Target{}, ok); r != Success {
		t.Fatal("exec ok")
	}
	if r, msg := Run(context.Background(), pr, Target{}, bad); r != Failure || msg == "" {
		t.Fatal("exec exit 3")
	}
	if r, _ := Run(context.Background(), pr, Target{}, broken); r != Failure {
		t.Fatal("exec error")
	}
}
