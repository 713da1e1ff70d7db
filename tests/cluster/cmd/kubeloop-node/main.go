// kubeloop-node is the part of a kubelet the kubeloop test cluster needs:
// it registers a Node and runs the pods bound to it as host processes in
// per-pod network namespaces (see tests/cluster/README.md, "The node").
//
//	kubeloop-node --node-name=kubeloop-node --kubeconfig=DIR/node.kubeconfig \
//	  --state-dir=DIR/node --bridge=kl0 --bridge-ip=10.88.0.1 \
//	  --pod-cidr=10.88.0.0/16 --api-host=10.88.0.1 --api-port=6443 --port=10250 \
//	  --tls-cert-file=PKI/node-serving.crt --tls-private-key-file=PKI/node-serving.key \
//	  --client-ca-file=PKI/ca.crt
//
// "kubeloop-node container-init --spec FILE" is internal: the node
// re-executes itself that way to start each container process.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"kubeloop.io/testcluster/internal/node/agent"
	"kubeloop.io/testcluster/internal/node/cinit"
)

func init() {
	if len(os.Args) > 1 && os.Args[1] == "container-init" {
		cinit.PrepareThread()
	}
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "container-init" {
		os.Exit(cinit.Main(os.Args[2:]))
	}
	os.Exit(run())
}

func run() int {
	var cfg agent.Config
	fs := flag.NewFlagSet("kubeloop-node", flag.ContinueOnError)
	fs.StringVar(&cfg.NodeName, "node-name", "kubeloop-node", "name of the Node object")
	fs.StringVar(&cfg.Kubeconfig, "kubeconfig", "", "kubeconfig with the node's client certificate (CN=system:node:<name>, O=system:nodes)")
	fs.StringVar(&cfg.StateDir, "state-dir", "", "directory for pod state: volumes, logs, IP allocations, process records")
	fs.StringVar(&cfg.Bridge, "bridge", "kl0", "host bridge the pod veths are attached to (created by the launcher)")
	fs.StringVar(&cfg.BridgeIP, "bridge-ip", "10.88.0.1", "the bridge's address: pods' default gateway and the node's InternalIP")
	fs.StringVar(&cfg.PodCIDR, "pod-cidr", "10.88.0.0/16", "pod addresses are allocated from this range")
	fs.StringVar(&cfg.APIHost, "api-host", "10.88.0.1", "KUBERNETES_SERVICE_HOST given to pods")
	fs.IntVar(&cfg.APIPort, "api-port", 6443, "KUBERNETES_SERVICE_PORT given to pods")
	fs.StringVar(&cfg.Address, "address", "0.0.0.0", "address of the kubelet HTTPS endpoint")
	fs.IntVar(&cfg.Port, "port", 10250, "port of the kubelet HTTPS endpoint (logs)")
	fs.StringVar(&cfg.TLSCertFile, "tls-cert-file", "", "serving certificate of the kubelet endpoint")
	fs.StringVar(&cfg.TLSKeyFile, "tls-private-key-file", "", "key of the serving certificate")
	fs.StringVar(&cfg.ClientCAFile, "client-ca-file", "", "CA that must sign client certificates (the API server's kubelet client cert)")
	fs.IntVar(&cfg.MaxPods, "max-pods", 110, "pods capacity reported")
	fs.DurationVar(&cfg.StatusPeriod, "node-status-update-frequency", 10*time.Second, "node status heartbeat period")
	fs.DurationVar(&cfg.LeasePeriod, "lease-renew-interval", 10*time.Second, "node lease renew period")
	fs.DurationVar(&cfg.ShutdownGrace, "shutdown-grace-period", 5*time.Second, "on SIGTERM, SIGKILL pod processes after at most this long")
	fs.DurationVar(&cfg.VolumeRefresh, "volume-refresh-period", time.Minute, "how often configMap/secret/projected volumes are re-synced")
	verbose := fs.Bool("v", false, "debug logging")
	showVersion := fs.Bool("version", false, "print the version and exit")
	if err := fs.Parse(os.Args[1:]); err != nil {
		return 2
	}
	if *showVersion {
		fmt.Println("kubeloop-node", agent.Version)
		return 0
	}
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	n, err := agent.New(cfg, log)
	if err != nil {
		log.Error("invalid configuration", "err", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := n.Run(ctx); err != nil {
		log.Error("node failed", "err", err)
		return 1
	}
	return 0
}
