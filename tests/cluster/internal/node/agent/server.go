package agent

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"kubeloop.io/testcluster/internal/node/logs"
)

// startServer serves the kubelet endpoint the API server calls:
// /containerLogs/{namespace}/{pod}/{container}, /pods and /healthz, over
// HTTPS with the node's serving certificate. Every path except /healthz
// requires a client certificate signed by --client-ca-file.
func (n *Node) startServer(errCh chan<- error) (*http.Server, error) {
	caPEM, err := os.ReadFile(n.cfg.ClientCAFile)
	if err != nil {
		return nil, fmt.Errorf("read --client-ca-file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("no certificates in %s", n.cfg.ClientCAFile)
	}
	cert, err := tls.LoadX509KeyPair(n.cfg.TLSCertFile, n.cfg.TLSKeyFile)
	if err != nil {
		return nil, fmt.Errorf("load serving certificate: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("ok")) })
	mux.HandleFunc("/containerLogs/", n.authn(n.serveLogs))
	mux.HandleFunc("/pods", n.authn(n.servePods))
	mux.HandleFunc("/", n.authn(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, fmt.Sprintf("kubeloop-node does not serve %s (only /containerLogs, /pods, /healthz)", r.URL.Path), http.StatusNotFound)
	}))
	srv := &http.Server{
		Handler: mux,
		TLSConfig: &tls.Config{
			Certificates: []tls.Certificate{cert},
			ClientCAs:    pool,
			ClientAuth:   tls.VerifyClientCertIfGiven,
			MinVersion:   tls.VersionTLS12,
		},
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          nil,
	}
	addr := net.JoinHostPort(n.cfg.Address, strconv.Itoa(n.cfg.Port))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", addr, err)
	}
	go func() {
		if err := srv.ServeTLS(ln, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
			errCh <- err
		}
	}()
	n.log.Info("kubelet endpoint listening", "addr", "https://"+addr)
	return srv, nil
}

func (n *Node) authn(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 {
			http.Error(w, "Unauthorized: a client certificate signed by the cluster CA is required", http.StatusUnauthorized)
			return
		}
		h(w, r)
	}
}

func (n *Node) servePods(w http.ResponseWriter, r *http.Request) {
	list := v1.PodList{TypeMeta: metav1.TypeMeta{Kind: "PodList", APIVersion: "v1"}}
	for _, p := range n.allPods() {
		list.Items = append(list.Items, *p)
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(list)
}

type flushWriter struct {
	w http.ResponseWriter
	f http.Flusher
}

func (fw flushWriter) Write(p []byte) (int, error) { return fw.w.Write(p) }
func (fw flushWriter) Flush() {
	if fw.f != nil {
		fw.f.Flush()
	}
}

// serveLogs implements GET /containerLogs/{namespace}/{pod}/{container}.
func (n *Node) serveLogs(w http.ResponseWriter, r *http.Request) {
	parts := strings.Split(strings.TrimPrefix(r.URL.Path, "/containerLogs/"), "/")
	if len(parts) != 3 || parts[0] == "" || parts[1] == "" || parts[2] == "" {
		http.Error(w, "path must be /containerLogs/{namespace}/{pod}/{container}", http.StatusBadRequest)
		return
	}
	ns, podName, container := parts[0], parts[1], parts[2]
	q := r.URL.Query()
	boolParam := func(k string) bool { v := q.Get(k); return v == "true" || v == "1" }
	var opt logs.Options
	opt.Follow = boolParam("follow")
	opt.Timestamps = boolParam("timestamps")
	previous := boolParam("previous")
	for _, p := range []struct {
		key string
		dst **int64
	}{{"tailLines", &opt.TailLines}, {"limitBytes", &opt.LimitBytes}} {
		if v := q.Get(p.key); v != "" {
			i, err := strconv.ParseInt(v, 10, 64)
			if err != nil || i < 0 {
				http.Error(w, fmt.Sprintf("invalid %s %q", p.key, v), http.StatusBadRequest)
				return
			}
			*p.dst = &i
		}
	}
	if v := q.Get("sinceSeconds"); v != "" {
		i, err := strconv.ParseInt(v, 10, 64)
		if err != nil || i <= 0 {
			http.Error(w, fmt.Sprintf("invalid sinceSeconds %q", v), http.StatusBadRequest)
			return
		}
		t := time.Now().Add(-time.Duration(i) * time.Second)
		opt.SinceTime = &t
	}
	if v := q.Get("sinceTime"); v != "" {
		t, err := time.Parse(time.RFC3339, v)
		if err != nil {
			http.Error(w, fmt.Sprintf("invalid sinceTime %q", v), http.StatusBadRequest)
			return
		}
		opt.SinceTime = &t
	}

	uid, pod := n.lookupPod(ns, podName)
	if uid == "" {
		http.Error(w, fmt.Sprintf("pod %s/%s not found on node %s", ns, podName, n.cfg.NodeName), http.StatusNotFound)
		return
	}
	if pod != nil && !hasContainer(pod, container) {
		http.Error(w, fmt.Sprintf("container %s is not valid for pod %s", container, podName), http.StatusBadRequest)
		return
	}
	runs := logRuns(filepath.Join(n.podsDir, string(uid), "logs", container))
	var path string
	switch {
	case previous && len(runs) < 2:
		http.Error(w, fmt.Sprintf("previous terminated container %q in pod %q not found", container, podName), http.StatusBadRequest)
		return
	case previous:
		path = runs[len(runs)-2]
	case len(runs) == 0:
		http.Error(w, fmt.Sprintf("container %q in pod %q is waiting to start: %s", container, podName, waitingReason(pod, container)), http.StatusBadRequest)
		return
	default:
		path = runs[len(runs)-1]
	}
	if previous {
		opt.Follow = false
	}
	opt.Active = func() bool { _, ok := n.activeLogs.Load(path); return ok }
	w.Header().Set("Content-Type", "text/plain")
	w.Header().Set("Cache-Control", "no-cache")
	f, _ := w.(http.Flusher)
	ctx := r.Context()
	if !opt.Follow {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Minute)
		defer cancel()
	}
	if err := logs.Read(ctx, path, flushWriter{w, f}, opt); err != nil && ctx.Err() == nil {
		n.log.Warn("serve container logs", "pod", ns+"/"+podName, "container", container, "err", err)
	}
}

func hasContainer(pod *v1.Pod, name string) bool {
	for _, c := range pod.Spec.Containers {
		if c.Name == name {
			return true
		}
	}
	for _, c := range pod.Spec.InitContainers {
		if c.Name == name {
			return true
		}
	}
	return false
}

func waitingReason(pod *v1.Pod, name string) string {
	if pod != nil {
		for _, s := range append(append([]v1.ContainerStatus{}, pod.Status.InitContainerStatuses...), pod.Status.ContainerStatuses...) {
			if s.Name == name && s.State.Waiting != nil {
				return s.State.Waiting.Reason
			}
		}
	}
	return "ContainerCreating"
}

// logRuns lists a container's log files, oldest run first.
func logRuns(dir string) []string {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	type run struct {
		n    int
		path string
	}
	var rs []run
	for _, e := range ents {
		if k, ok := strings.CutSuffix(e.Name(), ".log"); ok {
			if i, err := strconv.Atoi(k); err == nil {
				rs = append(rs, run{i, filepath.Join(dir, e.Name())})
			}
		}
	}
	sort.Slice(rs, func(i, j int) bool { return rs[i].n < rs[j].n })
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.path
	}
	return out
}
