package agent

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
	coordinationv1 "k8s.io/api/coordination/v1"
	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/record"
	"k8s.io/utils/ptr"

	"kubeloop.io/testcluster/internal/node/cgroup"
	"kubeloop.io/testcluster/internal/node/cinit"
	"kubeloop.io/testcluster/internal/node/ipam"
	"kubeloop.io/testcluster/internal/node/netns"
)

// Node is the running node agent.
type Node struct {
	cfg Config
	log *slog.Logger

	client   kubernetes.Interface
	recorder record.EventRecorder

	ipam    *ipam.Allocator
	cg      *cgroup.Manager
	selfExe string
	unshare string
	nsenter string
	podsDir string
	procDir string

	nodeUID     types.UID
	allocatable v1.ResourceList
	bootTime    time.Time

	mu      sync.Mutex
	workers map[types.UID]*podWorker
	byName  map[string]types.UID // namespace/name -> uid (newest)

	activeLogs sync.Map // log path -> struct{}
	tokens     *tokenCache

	informer cache.SharedIndexInformer
	ctx      context.Context // cancelled on shutdown
	wg       sync.WaitGroup  // pod workers
}

// New prepares a node (no side effects beyond validation).
func New(cfg Config, log *slog.Logger) (*Node, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.MaxPods <= 0 {
		cfg.MaxPods = 110
	}
	if cfg.StatusPeriod <= 0 {
		cfg.StatusPeriod = 10 * time.Second
	}
	if cfg.LeasePeriod <= 0 {
		cfg.LeasePeriod = 10 * time.Second
	}
	if cfg.LeaseDuration <= 0 {
		cfg.LeaseDuration = 40
	}
	if cfg.ShutdownGrace <= 0 {
		cfg.ShutdownGrace = 5 * time.Second
	}
	if cfg.VolumeRefresh <= 0 {
		cfg.VolumeRefresh = time.Minute
	}
	n := &Node{
		cfg:      cfg,
		log:      log,
		workers:  map[types.UID]*podWorker{},
		byName:   map[string]types.UID{},
		bootTime: time.Now(),
	}
	var err error
	if n.selfExe, err = os.Executable(); err != nil {
		return nil, fmt.Errorf("find own executable: %w", err)
	}
	if n.selfExe, err = filepath.EvalSymlinks(n.selfExe); err != nil {
		return nil, err
	}
	for _, b := range []struct {
		name string
		dst  *string
	}{{"unshare", &n.unshare}, {"nsenter", &n.nsenter}, {"ip", new(string)}} {
		p, err := exec.LookPath(b.name)
		if err != nil {
			return nil, fmt.Errorf("%s (util-linux / iproute2) is required: %w", b.name, err)
		}
		*b.dst = p
	}
	return n, nil
}

// Run runs the node until ctx is cancelled, then stops every pod's
// processes (leaving the pod objects) and returns.
func (n *Node) Run(ctx context.Context) error {
	if os.Geteuid() != 0 {
		return errors.New("kubeloop-node must run as root (network namespaces, mounts, setuid)")
	}
	if err := netns.CheckBridge(n.cfg.Bridge); err != nil {
		return err
	}
	n.podsDir = filepath.Join(n.cfg.StateDir, "pods")
	n.procDir = filepath.Join(n.cfg.StateDir, "procs")
	for _, d := range []string{n.cfg.StateDir, n.podsDir, n.procDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return err
		}
		_ = os.Chmod(d, 0o700)
	}
	var err error
	n.ipam, err = ipam.New(n.cfg.PodCIDR, filepath.Join(n.cfg.StateDir, "ipam"), n.cfg.BridgeIP)
	if err != nil {
		return err
	}
	n.cg, err = cgroup.Detect("")
	if err != nil {
		n.log.Warn("memory limits will not be enforced", "err", err)
	} else {
		n.log.Info("memory cgroups", "version", n.cg.Version.String(), "root", n.cg.Root)
	}
	n.cleanupStale()
	n.allocatable = n.capacity()

	restCfg, err := clientcmd.BuildConfigFromFlags("", n.cfg.Kubeconfig)
	if err != nil {
		return fmt.Errorf("load kubeconfig: %w", err)
	}
	restCfg.QPS = 50
	restCfg.Burst = 100
	restCfg.UserAgent = "kubeloop-node/" + Version
	n.client, err = kubernetes.NewForConfig(restCfg)
	if err != nil {
		return err
	}
	n.tokens = newTokenCache(n.client)
	bc := record.NewBroadcaster(record.WithContext(context.Background()))
	bc.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: n.client.CoreV1().Events("")})
	defer bc.Shutdown()
	n.recorder = bc.NewRecorder(scheme.Scheme, v1.EventSource{Component: "kubelet", Host: n.cfg.NodeName})

	srvErr := make(chan error, 1)
	srv, err := n.startServer(srvErr)
	if err != nil {
		return err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()

	if err := n.register(ctx); err != nil {
		return err
	}
	go n.leaseLoop(ctx)
	go n.statusLoop(ctx)

	if err := n.cleanupOrphanPods(ctx); err != nil {
		return err
	}

	wctx, stopWorkers := context.WithCancel(context.Background())
	defer stopWorkers()
	n.ctx = wctx
	n.informer = cache.NewSharedIndexInformer(&cache.ListWatch{
		ListFunc: func(o metav1.ListOptions) (runtime.Object, error) {
			o.FieldSelector = fields.OneTermEqualSelector("spec.nodeName", n.cfg.NodeName).String()
			return n.client.CoreV1().Pods("").List(ctx, o)
		},
		WatchFunc: func(o metav1.ListOptions) (watch.Interface, error) {
			o.FieldSelector = fields.OneTermEqualSelector("spec.nodeName", n.cfg.NodeName).String()
			return n.client.CoreV1().Pods("").Watch(ctx, o)
		},
	}, &v1.Pod{}, 0, cache.Indexers{})
	_, _ = n.informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { n.podChanged(obj) },
		UpdateFunc: func(_, obj any) { n.podChanged(obj) },
		DeleteFunc: func(obj any) { n.podRemoved(obj) },
	})
	ictx, stopInformer := context.WithCancel(context.Background())
	go n.informer.RunWithContext(ictx)
	n.log.Info("node running", "node", n.cfg.NodeName, "podCIDR", n.cfg.PodCIDR, "bridge", n.cfg.Bridge)

	select {
	case <-ctx.Done():
	case err := <-srvErr:
		n.log.Error("kubelet server failed", "err", err)
	}
	n.log.Info("shutting down: stopping all pods' processes (pod objects are left in place)")
	stopInformer()
	stopWorkers()
	done := make(chan struct{})
	go func() { n.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(n.cfg.ShutdownGrace + 10*time.Second):
		n.log.Warn("some pod workers did not stop in time")
	}
	n.removeHostLeftovers()
	n.log.Info("node stopped")
	return nil
}

func (n *Node) createdLog() string { return filepath.Join(n.cfg.StateDir, "created-mount-points") }

// removeHostLeftovers removes what containers left on the host once no
// container runs: empty mount points they created and the empty kubeloop
// cgroup parent.
func (n *Node) removeHostLeftovers() {
	if k := cinit.RemoveCreated(n.createdLog()); k > 0 {
		n.log.Info("removed empty mount points created on the host", "count", k)
	}
	if n.cg != nil && n.cg.Root != "" {
		_ = syscall.Rmdir(n.cg.Root)
	}
}

// --- registration, lease, status ---

func (n *Node) nodeStatus() v1.NodeStatus {
	now := metav1.Now()
	capacity := n.capacity()
	cond := func(t v1.NodeConditionType, s v1.ConditionStatus, reason, msg string) v1.NodeCondition {
		return v1.NodeCondition{Type: t, Status: s, Reason: reason, Message: msg, LastHeartbeatTime: now, LastTransitionTime: metav1.NewTime(n.bootTime)}
	}
	return v1.NodeStatus{
		Capacity:    capacity,
		Allocatable: capacity,
		Phase:       v1.NodeRunning,
		Conditions: []v1.NodeCondition{
			cond(v1.NodeMemoryPressure, v1.ConditionFalse, "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
			cond(v1.NodeDiskPressure, v1.ConditionFalse, "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
			cond(v1.NodePIDPressure, v1.ConditionFalse, "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
			cond(v1.NodeReady, v1.ConditionTrue, "KubeletReady", "kubeloop-node is posting ready status"),
		},
		Addresses: []v1.NodeAddress{
			{Type: v1.NodeInternalIP, Address: n.cfg.BridgeIP},
			{Type: v1.NodeHostName, Address: n.cfg.NodeName},
		},
		DaemonEndpoints: v1.NodeDaemonEndpoints{KubeletEndpoint: v1.DaemonEndpoint{Port: int32(n.cfg.Port)}},
		NodeInfo: v1.NodeSystemInfo{
			MachineID:               readTrim("/etc/machine-id"),
			SystemUUID:              readTrim("/sys/class/dmi/id/product_uuid"),
			BootID:                  readTrim("/proc/sys/kernel/random/boot_id"),
			KernelVersion:           kernelVersion(),
			OSImage:                 osImage(),
			ContainerRuntimeVersion: "kubeloop://" + Version,
			KubeletVersion:          Version,
			OperatingSystem:         "linux",
			Architecture:            goruntime.GOARCH,
		},
	}
}

func (n *Node) register(ctx context.Context) error {
	node := &v1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name: n.cfg.NodeName,
			Labels: map[string]string{
				"kubernetes.io/hostname":  n.cfg.NodeName,
				"kubernetes.io/os":        "linux",
				"kubernetes.io/arch":      goruntime.GOARCH,
				"beta.kubernetes.io/os":   "linux",
				"beta.kubernetes.io/arch": goruntime.GOARCH,
			},
			Annotations: map[string]string{
				"node.alpha.kubernetes.io/ttl":                           "0",
				"volumes.kubernetes.io/controller-managed-attach-detach": "true",
			},
		},
		Spec:   v1.NodeSpec{PodCIDR: n.cfg.PodCIDR, PodCIDRs: []string{n.cfg.PodCIDR}},
		Status: n.nodeStatus(),
	}
	delay := 200 * time.Millisecond
	lastLog := time.Time{}
	for {
		created, err := n.client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
		if err == nil {
			n.nodeUID = created.UID
			n.log.Info("registered node", "node", n.cfg.NodeName)
			return nil
		}
		if apierrors.IsAlreadyExists(err) {
			existing, gerr := n.client.CoreV1().Nodes().Get(ctx, n.cfg.NodeName, metav1.GetOptions{})
			if gerr == nil {
				n.nodeUID = existing.UID
				if perr := n.patchNodeStatus(ctx); perr != nil {
					n.log.Error("update node status", "err", perr)
				}
				n.log.Info("node already registered; status updated", "node", n.cfg.NodeName)
				return nil
			}
			err = gerr
		}
		if time.Since(lastLog) > 5*time.Second {
			n.log.Info("waiting for the API server to register the node", "err", err)
			lastLog = time.Now()
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(delay):
		}
		if delay < 2*time.Second {
			delay *= 2
		}
	}
}

func (n *Node) patchNodeStatus(ctx context.Context) error {
	b, err := json.Marshal(map[string]any{"status": n.nodeStatus()})
	if err != nil {
		return err
	}
	_, err = n.client.CoreV1().Nodes().Patch(ctx, n.cfg.NodeName, types.StrategicMergePatchType, b, metav1.PatchOptions{}, "status")
	return err
}

func (n *Node) statusLoop(ctx context.Context) {
	t := time.NewTicker(n.cfg.StatusPeriod)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := n.patchNodeStatus(ctx); err != nil && ctx.Err() == nil {
			n.log.Error("update node status", "node", n.cfg.NodeName, "err", err)
			if apierrors.IsNotFound(err) {
				// Someone deleted the Node object: register again.
				if rerr := n.register(ctx); rerr != nil {
					n.log.Error("re-register node", "err", rerr)
				}
			}
		}
	}
}

func (n *Node) leaseLoop(ctx context.Context) {
	leases := n.client.CoordinationV1().Leases(v1.NamespaceNodeLease)
	var cur *coordinationv1.Lease
	renew := func() error {
		now := metav1.NewMicroTime(time.Now())
		if cur == nil {
			l, err := leases.Get(ctx, n.cfg.NodeName, metav1.GetOptions{})
			if apierrors.IsNotFound(err) {
				l = &coordinationv1.Lease{
					ObjectMeta: metav1.ObjectMeta{
						Name: n.cfg.NodeName, Namespace: v1.NamespaceNodeLease,
						OwnerReferences: []metav1.OwnerReference{{APIVersion: "v1", Kind: "Node", Name: n.cfg.NodeName, UID: n.nodeUID}},
					},
					Spec: coordinationv1.LeaseSpec{
						HolderIdentity:       ptr.To(n.cfg.NodeName),
						LeaseDurationSeconds: ptr.To(n.cfg.LeaseDuration),
						RenewTime:            &now,
					},
				}
				l, err = leases.Create(ctx, l, metav1.CreateOptions{})
				if err != nil {
					return err
				}
				cur = l
				return nil
			}
			if err != nil {
				return err
			}
			cur = l
		}
		l := cur.DeepCopy()
		l.Spec.HolderIdentity = ptr.To(n.cfg.NodeName)
		l.Spec.LeaseDurationSeconds = ptr.To(n.cfg.LeaseDuration)
		l.Spec.RenewTime = &now
		if len(l.OwnerReferences) == 0 && n.nodeUID != "" {
			l.OwnerReferences = []metav1.OwnerReference{{APIVersion: "v1", Kind: "Node", Name: n.cfg.NodeName, UID: n.nodeUID}}
		}
		updated, err := leases.Update(ctx, l, metav1.UpdateOptions{})
		if err != nil {
			cur = nil
			return err
		}
		cur = updated
		return nil
	}
	for {
		if err := renew(); err != nil && ctx.Err() == nil {
			n.log.Error("renew node lease", "lease", v1.NamespaceNodeLease+"/"+n.cfg.NodeName, "err", err)
			// Retry sooner after an error.
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
			}
			continue
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(n.cfg.LeasePeriod):
		}
	}
}

// --- cleanup of a previous run ---

type procRecord struct {
	Pid       int    `json:"pid"`
	StartTime string `json:"startTime"`
	Pod       string `json:"pod"`
}

func (n *Node) recordProc(pid int, pod string) {
	b, _ := json.Marshal(procRecord{Pid: pid, StartTime: procStartTime(pid), Pod: pod})
	_ = os.WriteFile(filepath.Join(n.procDir, strconv.Itoa(pid)), b, 0o600)
}

func (n *Node) forgetProc(pid int) { _ = os.Remove(filepath.Join(n.procDir, strconv.Itoa(pid))) }

// cleanupStale kills processes of a previous node run and removes its
// network namespaces, veths, cgroups and tmpfs mounts.
func (n *Node) cleanupStale() {
	killed := 0
	ents, _ := os.ReadDir(n.procDir)
	for _, e := range ents {
		p := filepath.Join(n.procDir, e.Name())
		b, err := os.ReadFile(p)
		_ = os.Remove(p)
		if err != nil {
			continue
		}
		var r procRecord
		if json.Unmarshal(b, &r) != nil || r.Pid <= 1 {
			continue
		}
		if st := procStartTime(r.Pid); st != "" && st == r.StartTime {
			_ = syscall.Kill(-r.Pid, syscall.SIGKILL)
			_ = syscall.Kill(r.Pid, syscall.SIGKILL)
			killed++
		}
	}
	for _, uid := range n.cg.PodUIDs() {
		dir := n.cg.PodDir(uid)
		killed += len(cgroup.Procs(dir))
		if err := cgroup.Remove(dir); err != nil {
			n.log.Warn("remove stale cgroup", "dir", dir, "err", err)
		}
	}
	ctx := context.Background()
	for _, ns := range netns.List() {
		for _, pid := range netns.Pids(ns) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			killed++
		}
		netns.Teardown(ctx, ns, "")
		n.log.Info("removed stale network namespace", "netns", ns)
	}
	for _, v := range netns.StaleVeths() {
		netns.Teardown(ctx, "", v)
	}
	for _, mp := range mountsUnder(n.podsDir) {
		if err := unix.Unmount(mp, unix.MNT_DETACH); err != nil {
			n.log.Warn("unmount stale volume", "path", mp, "err", err)
		}
	}
	if killed > 0 {
		n.log.Info("killed processes left by a previous node run", "count", killed)
	}
	n.removeHostLeftovers()
}

// cleanupOrphanPods lists the pods bound to this node and removes state of
// pods that no longer exist.
func (n *Node) cleanupOrphanPods(ctx context.Context) error {
	var list *v1.PodList
	var err error
	for {
		list, err = n.client.CoreV1().Pods("").List(ctx, metav1.ListOptions{
			FieldSelector: fields.OneTermEqualSelector("spec.nodeName", n.cfg.NodeName).String(),
		})
		if err == nil {
			break
		}
		n.log.Error("list pods bound to this node", "err", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
	live := map[string]bool{}
	for _, p := range list.Items {
		live[string(p.UID)] = true
	}
	ents, _ := os.ReadDir(n.podsDir)
	for _, e := range ents {
		if !live[e.Name()] {
			if err := os.RemoveAll(filepath.Join(n.podsDir, e.Name())); err != nil {
				n.log.Warn("remove state of deleted pod", "uid", e.Name(), "err", err)
			}
		}
	}
	for owner := range n.ipam.Owners() {
		if !live[owner] {
			n.ipam.Release(owner)
		}
	}
	return nil
}

// mountsUnder lists mount points at or below dir, deepest first.
func mountsUnder(dir string) []string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		mp := fields[4]
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			out = append(out, mp)
		}
	}
	for i := 0; i < len(out); i++ {
		for j := i + 1; j < len(out); j++ {
			if len(out[j]) > len(out[i]) {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
}
