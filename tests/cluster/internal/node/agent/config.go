// Package agent is kubeloop-node's kubelet: node registration and lease,
// the pod informer, one worker per pod (network namespace, volumes,
// processes, probes, restarts, status), graceful deletion and the kubelet
// HTTPS endpoint for logs.
package agent

import (
	"errors"
	"net"
	"time"
)

// Version is reported as nodeInfo.kubeletVersion (set by build.sh).
var Version = "v1.37.2"

// Config is the node's command line.
type Config struct {
	NodeName      string
	Kubeconfig    string
	StateDir      string
	Bridge        string
	BridgeIP      string
	PodCIDR       string
	APIHost       string
	APIPort       int
	Address       string
	Port          int
	TLSCertFile   string
	TLSKeyFile    string
	ClientCAFile  string
	MaxPods       int
	StatusPeriod  time.Duration
	LeasePeriod   time.Duration
	LeaseDuration int32
	ShutdownGrace time.Duration
	// VolumeRefresh is how often configMap/secret/projected volumes are re-synced.
	VolumeRefresh time.Duration
}

// Validate checks the required fields.
func (c *Config) Validate() error {
	switch {
	case c.NodeName == "":
		return errors.New("--node-name is required")
	case c.Kubeconfig == "":
		return errors.New("--kubeconfig is required")
	case c.StateDir == "":
		return errors.New("--state-dir is required")
	case c.Bridge == "":
		return errors.New("--bridge is required")
	case net.ParseIP(c.BridgeIP) == nil:
		return errors.New("--bridge-ip must be an IP address")
	case c.PodCIDR == "":
		return errors.New("--pod-cidr is required")
	case c.APIHost == "" || c.APIPort <= 0:
		return errors.New("--api-host and --api-port are required")
	case c.TLSCertFile == "" || c.TLSKeyFile == "" || c.ClientCAFile == "":
		return errors.New("--tls-cert-file, --tls-private-key-file and --client-ca-file are required")
	}
	return nil
}
