package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sys/unix"
	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/strategicpatch"

	"kubeloop.io/testcluster/internal/node/cgroup"
	"kubeloop.io/testcluster/internal/node/envvars"
	"kubeloop.io/testcluster/internal/node/netns"
	"kubeloop.io/testcluster/internal/node/podstatus"
	"kubeloop.io/testcluster/internal/node/probe"
	"kubeloop.io/testcluster/internal/node/volume"
)

const (
	backoffInitial   = 10 * time.Second
	backoffMax       = 5 * time.Minute
	backoffResetRun  = 10 * time.Minute
	retryShort       = 2 * time.Second
	maxTermMsgBytes  = 4096
	fallbackLogLines = 80
	fallbackLogBytes = 2048
)

// event is something that happened to a pod's containers, posted by the
// process waiters and probers, applied by the worker goroutine.
type event struct {
	container string
	run       int
	exit      *exitInfo
	probeKind probe.Kind
	result    probe.Result
	msg       string
}

// podWorker owns one pod. Everything except the fields under mu is only
// touched by the worker goroutine.
type podWorker struct {
	n   *Node
	uid types.UID
	log *slog.Logger

	mu     sync.Mutex
	pod    *v1.Pod
	gone   bool
	events []event
	notify chan struct{}

	dir          string
	nsName, veth string
	podIP        string
	hostNetwork  bool
	sandboxReady bool
	startTime    time.Time
	initialized  bool // state seeded from the stored status
	finished     bool // terminal: nothing will run again
	terminal     bool // report a terminal phase (deleted / gave up)
	torndown     bool
	deleted      bool // delete call done
	reason, msg  string

	volDirs      map[string]string
	volErr       string
	volRetryAt   time.Time
	volTries     int
	sandboxRetry time.Time
	volSynced    time.Time
	tmpfsMounted []string

	init []*ctr
	ctrs []*ctr

	sender    *statusSender
	lastConds []v1.PodCondition
	lastJSON  string
	wake      time.Time
}

func newPodWorker(n *Node, pod *v1.Pod) *podWorker {
	ns, veth := netns.Names(string(pod.UID))
	w := &podWorker{
		n:      n,
		uid:    pod.UID,
		log:    n.log.With("pod", pod.Namespace+"/"+pod.Name, "uid", string(pod.UID)),
		notify: make(chan struct{}, 1),
		dir:    filepath.Join(n.podsDir, string(pod.UID)),
		nsName: ns,
		veth:   veth,
	}
	w.sender = newStatusSender(w)
	return w
}

func (w *podWorker) kick() {
	select {
	case w.notify <- struct{}{}:
	default:
	}
}

func (w *podWorker) setPod(p *v1.Pod) {
	w.mu.Lock()
	w.pod = p
	w.mu.Unlock()
	w.kick()
}

func (w *podWorker) setGone() {
	w.mu.Lock()
	w.gone = true
	w.mu.Unlock()
	w.kick()
}

func (w *podWorker) post(ev event) {
	w.mu.Lock()
	w.events = append(w.events, ev)
	w.mu.Unlock()
	w.kick()
}

func (w *podWorker) latest() (*v1.Pod, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.pod, w.gone
}

func (w *podWorker) takeEvents() []event {
	w.mu.Lock()
	defer w.mu.Unlock()
	ev := w.events
	w.events = nil
	return ev
}

func (w *podWorker) wakeAt(t time.Time) {
	if t.IsZero() {
		return
	}
	if w.wake.IsZero() || t.Before(w.wake) {
		w.wake = t
	}
}

func (w *podWorker) loop() {
	defer w.n.removeWorker(w.uid)
	defer w.sender.stop()
	go w.sender.run()
	for {
		if w.step() {
			return
		}
		var timer <-chan time.Time
		if !w.wake.IsZero() {
			d := time.Until(w.wake)
			if d < 0 {
				d = 0
			}
			timer = time.After(d)
		}
		select {
		case <-w.notify:
		case <-timer:
		case <-w.n.ctx.Done():
		}
	}
}

// step runs one reconcile pass and reports whether the worker is done. A
// panic is logged and retried later, so one bad pod never takes the node down.
func (w *podWorker) step() (done bool) {
	defer func() {
		if r := recover(); r != nil {
			w.log.Error("pod worker panicked; retrying later", "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
			w.wakeAt(time.Now().Add(retryShort))
			done = false
		}
	}()
	w.wake = time.Time{}
	w.applyEvents()
	pod, gone := w.latest()
	if pod == nil {
		return false
	}
	shutdown := w.n.ctx.Err() != nil
	switch {
	case shutdown:
		w.stopAll(pod, minDuration(gracePeriod(pod), w.n.cfg.ShutdownGrace), false)
		w.teardown(false)
		return true
	case gone:
		w.stopAll(pod, minDuration(gracePeriod(pod), 2*time.Second), false)
		w.teardown(true)
		if err := os.RemoveAll(w.dir); err != nil {
			w.log.Warn("remove pod state", "err", err)
		}
		w.n.tokens.forget(w.uid)
		return true
	case pod.DeletionTimestamp != nil:
		w.terminate(pod)
	default:
		w.sync(pod)
	}
	w.pushStatus(pod)
	return false
}

// --- state seeding ---

func (w *podWorker) seed(pod *v1.Pod) {
	w.initialized = true
	w.hostNetwork = pod.Spec.HostNetwork
	prev := map[string]v1.ContainerStatus{}
	for _, s := range pod.Status.InitContainerStatuses {
		prev["init/"+s.Name] = s
	}
	for _, s := range pod.Status.ContainerStatuses {
		prev[s.Name] = s
	}
	mk := func(spec v1.Container, isInit bool) *ctr {
		c := &ctr{spec: spec, isInit: isInit, sidecar: isInit && podstatus.IsRestartableInit(&spec)}
		key := spec.Name
		if isInit {
			key = "init/" + spec.Name
		}
		s, ok := prev[key]
		if !ok {
			return c
		}
		// A previous node run started this container: its processes are gone.
		c.restartCount = s.RestartCount
		c.everRan = true
		if t := s.State.Terminated; t != nil {
			c.lastTerm = fromAPI(t)
		} else if t := s.LastTerminationState.Terminated; t != nil && s.State.Running == nil {
			c.lastTerm = fromAPI(t)
		}
		if s.State.Running != nil {
			c.lastTerm = &podstatus.Terminated{
				ExitCode: 137, Reason: "ContainerStatusUnknown",
				Message:     "The container could not be located when the node restarted",
				StartedAt:   s.State.Running.StartedAt.Time,
				FinishedAt:  time.Now(),
				ContainerID: s.ContainerID,
			}
			if t := s.LastTerminationState.Terminated; t != nil {
				c.prevTerm = fromAPI(t)
			}
		}
		if s.State.Terminated != nil && !c.shouldRestart(pod, s.State.Terminated.ExitCode) {
			c.done = true
		}
		if isInit && !c.sidecar && s.State.Terminated != nil && s.State.Terminated.ExitCode == 0 {
			c.done = true
		}
		if !isInit && s.State.Running != nil && !c.shouldRestart(pod, 137) {
			c.done = true
		}
		return c
	}
	for _, s := range pod.Spec.InitContainers {
		w.init = append(w.init, mk(s, true))
	}
	for _, s := range pod.Spec.Containers {
		w.ctrs = append(w.ctrs, mk(s, false))
	}
	if pod.Status.StartTime != nil {
		w.startTime = pod.Status.StartTime.Time
	}
	if pod.Status.Phase == v1.PodSucceeded || pod.Status.Phase == v1.PodFailed {
		w.finished = true
		w.torndown = true
		w.reason, w.msg = pod.Status.Reason, pod.Status.Message
		w.podIP = pod.Status.PodIP
		for _, c := range append(append([]*ctr{}, w.init...), w.ctrs...) {
			c.done = true
		}
	}
}

func fromAPI(t *v1.ContainerStateTerminated) *podstatus.Terminated {
	return &podstatus.Terminated{
		ExitCode: t.ExitCode, Signal: t.Signal, Reason: t.Reason, Message: t.Message,
		StartedAt: t.StartedAt.Time, FinishedAt: t.FinishedAt.Time, ContainerID: t.ContainerID,
	}
}

// --- the reconcile step ---

func (w *podWorker) sync(pod *v1.Pod) {
	if !w.initialized {
		w.seed(pod)
	}
	if w.finished {
		return
	}
	now := time.Now()
	if w.startTime.IsZero() {
		w.startTime = now
	}
	if err := os.MkdirAll(w.dir, 0o700); err != nil {
		w.log.Error("create pod state dir", "err", err)
		w.wakeAt(now.Add(retryShort))
		return
	}
	// activeDeadlineSeconds.
	if ads := pod.Spec.ActiveDeadlineSeconds; ads != nil && now.Sub(w.startTime) >= time.Duration(*ads)*time.Second {
		w.reason, w.msg = "DeadlineExceeded", "Pod was active on the node longer than the specified deadline"
		w.event(pod, "", v1.EventTypeNormal, "DeadlineExceeded", w.msg)
		w.stopAll(pod, gracePeriod(pod), true)
		w.markAllDone()
		w.finish(pod)
		return
	} else if ads != nil {
		w.wakeAt(w.startTime.Add(time.Duration(*ads) * time.Second))
	}
	if !w.sandboxReady && now.Before(w.sandboxRetry) {
		w.wakeAt(w.sandboxRetry)
		return
	}
	if !w.ensureSandbox(pod) {
		w.sandboxRetry = now.Add(retryShort)
		w.wakeAt(w.sandboxRetry)
		return
	}
	if w.volErr != "" && now.Before(w.volRetryAt) {
		w.wakeAt(w.volRetryAt)
		return
	}
	w.syncVolumes(pod, false)
	if w.volErr != "" {
		return
	}

	// Init containers, in order.
	for _, c := range w.init {
		if c.sidecar {
			if !c.running() {
				if c.everRan || c.configErr != "" {
					w.maybeRestart(pod, c, now)
				} else {
					w.start(pod, c)
				}
			}
			if c.running() && c.started {
				continue
			}
			return
		}
		if c.done && c.lastTerm != nil && c.lastTerm.ExitCode == 0 {
			continue
		}
		if c.done {
			// Failed and not restartable: the pod failed.
			w.stopAll(pod, gracePeriod(pod), false)
			w.markAllDone()
			w.finish(pod)
			return
		}
		if c.running() {
			return
		}
		if c.everRan || c.configErr != "" {
			w.maybeRestart(pod, c, now)
		} else {
			w.start(pod, c)
		}
		return
	}

	// App containers.
	allDone := true
	for _, c := range w.ctrs {
		switch {
		case c.running():
			allDone = false
		case c.done:
		case c.everRan || c.configErr != "":
			allDone = false
			w.maybeRestart(pod, c, now)
		default:
			allDone = false
			w.start(pod, c)
		}
	}
	// Sidecars that exited are restarted while the pod runs.
	for _, c := range w.init {
		if c.sidecar && !c.running() && !allDone {
			w.maybeRestart(pod, c, now)
		}
	}
	if allDone && len(w.ctrs) > 0 {
		w.stopAll(pod, gracePeriod(pod), false) // sidecars
		w.markAllDone()
		w.finish(pod)
		return
	}
	// Periodic volume refresh (tokens, config maps).
	next := w.volSynced.Add(w.n.cfg.VolumeRefresh)
	if t := w.n.tokens.nextRefresh(w.uid); !t.IsZero() && t.Before(next) {
		next = t
	}
	if !now.Before(next) {
		w.syncVolumes(pod, true)
		next = now.Add(w.n.cfg.VolumeRefresh)
	}
	w.wakeAt(next)
}

// maybeRestart restarts c if its policy allows and its back-off expired.
// It returns false if c will not run again.
func (w *podWorker) maybeRestart(pod *v1.Pod, c *ctr, now time.Time) bool {
	if c.configErr != "" {
		if now.Before(c.nextStart) {
			w.wakeAt(c.nextStart)
			return true
		}
		w.start(pod, c)
		return true
	}
	if c.lastTerm == nil {
		w.start(pod, c)
		return true
	}
	if c.done || !c.shouldRestart(pod, c.lastTerm.ExitCode) {
		c.done = true
		return false
	}
	if now.Before(c.nextStart) {
		c.waitReason = "CrashLoopBackOff"
		c.waitMsg = fmt.Sprintf("back-off %s restarting failed container=%s pod=%s_%s(%s)",
			c.backoff.Round(time.Second), c.spec.Name, pod.Name, pod.Namespace, pod.UID)
		w.wakeAt(c.nextStart)
		return true
	}
	w.start(pod, c)
	return true
}

func (w *podWorker) markAllDone() {
	for _, c := range append(append([]*ctr{}, w.init...), w.ctrs...) {
		c.done = true
		if c.lastTerm == nil && !c.running() && c.waitReason == "" {
			c.waitReason = "PodInitializing"
		}
	}
}

// finish makes the pod terminal: everything stopped, sandbox removed.
func (w *podWorker) finish(pod *v1.Pod) {
	w.finished = true
	w.teardown(true)
}

// ensureSandbox creates the network namespace (once).
func (w *podWorker) ensureSandbox(pod *v1.Pod) bool {
	if w.sandboxReady {
		return true
	}
	if w.hostNetwork {
		w.podIP = w.n.cfg.BridgeIP
		w.sandboxReady = true
		return true
	}
	owner := string(pod.UID)
	ip, ok := w.n.ipam.Get(owner)
	if !ok {
		// Keep the address a previous node run gave this pod, if possible.
		if prev := pod.Status.PodIP; prev != "" && w.n.ipam.Contains(prev) && w.n.ipam.AllocateSpecific(prev, owner) == nil {
			ip = prev
		} else {
			var err error
			if ip, err = w.n.ipam.Allocate(owner); err != nil {
				w.log.Error("allocate pod IP", "err", err)
				w.event(pod, "", v1.EventTypeWarning, "FailedCreatePodSandBox", "Failed to allocate an IP: "+err.Error())
				return false
			}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := netns.Setup(ctx, w.nsName, w.veth, w.n.cfg.Bridge, ip, w.n.ipam.PrefixLen(), w.n.cfg.BridgeIP); err != nil {
		w.log.Error("create pod network namespace", "netns", w.nsName, "err", err)
		w.event(pod, "", v1.EventTypeWarning, "FailedCreatePodSandBox", "Failed to create pod sandbox: "+err.Error())
		return false
	}
	w.podIP = ip
	w.sandboxReady = true
	w.writeHosts(pod)
	return true
}

func (w *podWorker) writeHosts(pod *v1.Pod) {
	host := podHostname(pod)
	content := "# Kubernetes-managed hosts file (kubeloop-node).\n" +
		"127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n" +
		"fe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n"
	fqdn := host
	if pod.Spec.Subdomain != "" {
		fqdn = host + "." + pod.Spec.Subdomain + "." + pod.Namespace + ".svc.cluster.local"
		content += w.podIP + "\t" + fqdn + "\t" + host + "\n"
	} else {
		content += w.podIP + "\t" + host + "\n"
	}
	for _, ha := range pod.Spec.HostAliases {
		for _, h := range ha.Hostnames {
			content += ha.IP + "\t" + h + "\n"
		}
	}
	_ = os.WriteFile(filepath.Join(w.dir, "etc-hosts"), []byte(content), 0o644)
}

func podHostname(pod *v1.Pod) string {
	h := pod.Name
	if pod.Spec.Hostname != "" {
		h = pod.Spec.Hostname
	}
	if len(h) > 63 {
		h = h[:63]
	}
	return h
}

// --- volumes ---

func fsGroupOf(pod *v1.Pod) *int64 {
	if pod.Spec.SecurityContext != nil {
		return pod.Spec.SecurityContext.FSGroup
	}
	return nil
}

func (w *podWorker) syncVolumes(pod *v1.Pod, refresh bool) {
	if w.volDirs != nil && !refresh {
		return
	}
	first := w.volDirs == nil
	dirs := map[string]string{}
	g := w.n.newGetter(context.Background())
	opt := w.envOptions()
	fsGroup := fsGroupOf(pod)
	var firstErr error
	for _, v := range pod.Spec.Volumes {
		dir := filepath.Join(w.dir, "volumes", v.Name)
		var err error
		var payload volume.Payload
		atomic := false
		switch {
		case v.EmptyDir != nil:
			if !refresh {
				err = w.setupEmptyDir(dir, v.EmptyDir, fsGroup, first)
			}
		case v.HostPath != nil:
			dir = v.HostPath.Path
			if !refresh {
				err = setupHostPath(v.HostPath)
			}
		case v.ConfigMap != nil:
			atomic = true
			payload, err = volume.ConfigMapPayload(pod.Namespace, v.ConfigMap.Name, v.ConfigMap.Items, v.ConfigMap.Optional, modeOr(v.ConfigMap.DefaultMode), g)
		case v.Secret != nil:
			atomic = true
			payload, err = volume.SecretPayload(pod.Namespace, v.Secret.SecretName, v.Secret.Items, v.Secret.Optional, modeOr(v.Secret.DefaultMode), g)
		case v.Projected != nil:
			atomic = true
			payload, err = volume.ProjectedPayload(pod, v.Projected, g, opt)
		case v.DownwardAPI != nil:
			atomic = true
			payload, err = volume.DownwardAPIPayload(pod, v.DownwardAPI.Items, modeOr(v.DownwardAPI.DefaultMode), opt)
		default:
			err = fmt.Errorf("volume type is not supported by kubeloop-node (supported: emptyDir, hostPath, configMap, secret, projected, downwardAPI)")
		}
		if err == nil && atomic {
			_, err = volume.WriteAtomic(dir, payload, fsGroup)
		}
		if err != nil {
			err = fmt.Errorf("MountVolume.SetUp failed for volume %q : %v", v.Name, err)
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		dirs[v.Name] = dir
	}
	w.volSynced = time.Now()
	if firstErr != nil {
		if refresh && w.volErr == "" {
			// Keep running containers; just report.
			w.log.Warn("volume refresh failed", "err", firstErr)
			return
		}
		if w.volErr != firstErr.Error() || w.volTries%8 == 0 {
			w.log.Warn("volumes not ready; will retry", "err", firstErr)
			w.event(pod, "", v1.EventTypeWarning, "FailedMount", firstErr.Error())
		}
		w.volErr = firstErr.Error()
		// Retry 0.5s, 1s, 2s, ... 16s (the object may be created later).
		d := time.Duration(500<<min(w.volTries, 5)) * time.Millisecond
		w.volTries++
		w.volRetryAt = time.Now().Add(d)
		w.wakeAt(w.volRetryAt)
		w.volDirs = nil
		return
	}
	w.volErr, w.volTries = "", 0
	w.volDirs = dirs
}

func modeOr(m *int32) int32 {
	if m != nil {
		return *m
	}
	return volume.DefaultMode
}

func (w *podWorker) setupEmptyDir(dir string, src *v1.EmptyDirVolumeSource, fsGroup *int64, first bool) error {
	if _, err := os.Stat(dir); err == nil {
		return nil
	}
	if err := os.MkdirAll(dir, 0o777); err != nil {
		return err
	}
	if src.Medium == v1.StorageMediumMemory {
		opts := "mode=0777"
		if src.SizeLimit != nil && !src.SizeLimit.IsZero() {
			opts += ",size=" + strconv.FormatInt(src.SizeLimit.Value(), 10)
		}
		if err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, opts); err != nil {
			return fmt.Errorf("mount tmpfs: %w", err)
		}
		w.tmpfsMounted = append(w.tmpfsMounted, dir)
	}
	if err := os.Chmod(dir, 0o777); err != nil {
		return err
	}
	if fsGroup != nil {
		return volume.SetOwnership(dir, *fsGroup, false)
	}
	return nil
}

func setupHostPath(h *v1.HostPathVolumeSource) error {
	t := v1.HostPathUnset
	if h.Type != nil {
		t = *h.Type
	}
	st, err := os.Stat(h.Path)
	switch t {
	case v1.HostPathDirectoryOrCreate:
		if os.IsNotExist(err) {
			return os.MkdirAll(h.Path, 0o755)
		}
	case v1.HostPathFileOrCreate:
		if os.IsNotExist(err) {
			if err := os.MkdirAll(filepath.Dir(h.Path), 0o755); err != nil {
				return err
			}
			f, err := os.OpenFile(h.Path, os.O_CREATE|os.O_RDONLY, 0o644)
			if err != nil {
				return err
			}
			return f.Close()
		}
	case v1.HostPathDirectory:
		if err != nil || !st.IsDir() {
			return fmt.Errorf("hostPath type check failed: %s is not a directory", h.Path)
		}
	case v1.HostPathFile:
		if err != nil || !st.Mode().IsRegular() {
			return fmt.Errorf("hostPath type check failed: %s is not a file", h.Path)
		}
	case v1.HostPathSocket:
		if err != nil || st.Mode()&os.ModeSocket == 0 {
			return fmt.Errorf("hostPath type check failed: %s is not a socket file", h.Path)
		}
	case v1.HostPathCharDev, v1.HostPathBlockDev:
		if err != nil || st.Mode()&os.ModeDevice == 0 {
			return fmt.Errorf("hostPath type check failed: %s is not a device", h.Path)
		}
	}
	return nil
}

func (w *podWorker) envOptions() envvars.Options {
	return envvars.Options{
		PodIP: w.podIP, PodIPs: []string{w.podIP},
		HostIP: w.n.cfg.BridgeIP, HostIPs: []string{w.n.cfg.BridgeIP},
		NodeAllocatable: w.n.allocatable,
	}
}

// --- teardown ---

// teardown removes the pod's network namespace, cgroups and tmpfs
// volumes. releaseIP also frees the pod IP (not on node shutdown, so a
// restarted node gives the pod the same address).
func (w *podWorker) teardown(releaseIP bool) {
	if !w.torndown {
		if dir := w.n.cg.PodDir(string(w.uid)); dir != "" {
			if err := cgroup.Remove(dir); err != nil {
				w.log.Warn("remove pod cgroup", "dir", dir, "err", err)
			}
		}
		if !w.hostNetwork {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			netns.Teardown(ctx, w.nsName, w.veth)
			cancel()
		}
		for _, d := range w.tmpfsMounted {
			if err := unix.Unmount(d, unix.MNT_DETACH); err != nil {
				w.log.Warn("unmount tmpfs volume", "path", d, "err", err)
			}
		}
		w.tmpfsMounted = nil
		w.sandboxReady = false
		w.torndown = true
	}
	if releaseIP {
		w.n.ipam.Release(string(w.uid))
	}
}

// --- graceful deletion ---

func gracePeriod(pod *v1.Pod) time.Duration {
	if pod == nil {
		return 0
	}
	if pod.DeletionGracePeriodSeconds != nil {
		return time.Duration(*pod.DeletionGracePeriodSeconds) * time.Second
	}
	if pod.Spec.TerminationGracePeriodSeconds != nil {
		return time.Duration(*pod.Spec.TerminationGracePeriodSeconds) * time.Second
	}
	return 30 * time.Second
}

func minDuration(a, b time.Duration) time.Duration {
	if a < b {
		return a
	}
	return b
}

// terminate handles a pod with a deletionTimestamp: stop everything
// within the grace period, report a terminal status, then delete the
// object (grace 0, UID precondition).
func (w *podWorker) terminate(pod *v1.Pod) {
	if !w.initialized {
		w.seed(pod)
	}
	if w.deleted {
		return
	}
	if !w.finished {
		w.log.Info("terminating pod", "grace", gracePeriod(pod).String())
		w.stopAll(pod, gracePeriod(pod), true)
		w.markAllDone()
		w.finished = true
		w.terminal = true
	}
	w.teardown(true)
	// Final status first, so Jobs and ReplicaSets see the terminal phase.
	w.pushStatus(pod)
	w.sender.flush(5 * time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := w.n.client.CoreV1().Pods(pod.Namespace).Delete(ctx, pod.Name, metav1.DeleteOptions{
		GracePeriodSeconds: ptrInt64(0),
		Preconditions:      &metav1.Preconditions{UID: &w.uid},
	})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		w.log.Error("delete pod after termination", "err", err)
		w.wakeAt(time.Now().Add(retryShort))
		return
	}
	w.deleted = true
	w.log.Info("pod terminated and deleted")
}

func ptrInt64(v int64) *int64 { return &v }

// --- status ---

func (w *podWorker) buildStatus(pod *v1.Pod) v1.PodStatus {
	in := podstatus.Input{
		Pod:            pod,
		Now:            time.Now(),
		SandboxReady:   w.sandboxReady,
		PodIP:          w.podIP,
		HostIP:         w.n.cfg.BridgeIP,
		StartTime:      w.startTime,
		Terminal:       w.terminal,
		Reason:         w.reason,
		Message:        w.msg,
		PrevConditions: w.lastConds,
	}
	initPending := false
	for _, c := range w.init {
		in.Init = append(in.Init, c.status(pod, w.volErr, false))
		if !c.sidecar && !(c.lastTerm != nil && c.lastTerm.ExitCode == 0 && !c.running()) {
			initPending = true
		}
	}
	for _, c := range w.ctrs {
		in.Containers = append(in.Containers, c.status(pod, w.volErr, initPending))
	}
	if w.reason != "" && w.finished {
		in.Terminal = true
	}
	return podstatus.Compute(in)
}

func (w *podWorker) pushStatus(pod *v1.Pod) {
	if !w.initialized || pod == nil {
		return
	}
	if w.deleted {
		return
	}
	st := w.buildStatus(pod)
	// Compare without volatile parts.
	b, _ := json.Marshal(st)
	if string(b) == w.lastJSON {
		return
	}
	w.lastJSON = string(b)
	w.lastConds = st.Conditions
	w.sender.set(pod, st)
}

// statusSender patches pods/status in the background, always with the
// newest wanted status, retrying on errors.
type statusSender struct {
	w       *podWorker
	mu      sync.Mutex
	pod     *v1.Pod
	want    *v1.PodStatus
	seq     int
	sent    int
	server  *v1.Pod // last object the server returned
	kick    chan struct{}
	done    chan struct{}
	flushed *sync.Cond
}

func newStatusSender(w *podWorker) *statusSender {
	s := &statusSender{w: w, kick: make(chan struct{}, 1), done: make(chan struct{})}
	s.flushed = sync.NewCond(&s.mu)
	return s
}

func (s *statusSender) set(pod *v1.Pod, st v1.PodStatus) {
	s.mu.Lock()
	s.pod = pod
	s.want = &st
	s.seq++
	s.mu.Unlock()
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

func (s *statusSender) stop() { close(s.done) }

// flush waits until the newest status was sent (or timeout).
func (s *statusSender) flush(timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		s.mu.Lock()
		ok := s.sent >= s.seq
		s.mu.Unlock()
		if ok {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (s *statusSender) run() {
	delay := 200 * time.Millisecond
	for {
		select {
		case <-s.done:
			return
		case <-s.kick:
		}
		for {
			s.mu.Lock()
			if s.sent >= s.seq {
				s.mu.Unlock()
				break
			}
			seq, pod, want, server := s.seq, s.pod, s.want, s.server
			s.mu.Unlock()
			base := pod
			if server != nil && newerRV(server.ResourceVersion, pod.ResourceVersion) {
				base = server
			}
			updated, err := s.patch(base, want)
			if err != nil {
				if apierrors.IsNotFound(err) {
					s.mu.Lock()
					s.sent = seq
					s.mu.Unlock()
					break
				}
				s.w.log.Error("update pod status", "err", err)
				select {
				case <-s.done:
					return
				case <-time.After(delay):
				}
				if delay < 5*time.Second {
					delay *= 2
				}
				continue
			}
			delay = 200 * time.Millisecond
			s.mu.Lock()
			if updated != nil {
				s.server = updated
			}
			if seq > s.sent {
				s.sent = seq
			}
			s.mu.Unlock()
		}
	}
}

func newerRV(a, b string) bool {
	ai, err1 := strconv.ParseUint(a, 10, 64)
	bi, err2 := strconv.ParseUint(b, 10, 64)
	return err1 == nil && err2 == nil && ai > bi
}

func (s *statusSender) patch(base *v1.Pod, want *v1.PodStatus) (*v1.Pod, error) {
	oldJSON, err := json.Marshal(v1.Pod{Status: base.Status})
	if err != nil {
		return nil, err
	}
	newJSON, err := json.Marshal(v1.Pod{Status: *want})
	if err != nil {
		return nil, err
	}
	patch, err := strategicpatch.CreateTwoWayMergePatch(oldJSON, newJSON, v1.Pod{})
	if err != nil {
		return nil, err
	}
	var m map[string]any
	if err := json.Unmarshal(patch, &m); err != nil {
		return nil, err
	}
	if len(m) == 0 {
		return nil, nil
	}
	m["metadata"] = map[string]any{"uid": string(base.UID)}
	patch, _ = json.Marshal(m)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return s.w.n.client.CoreV1().Pods(base.Namespace).Patch(ctx, base.Name, types.StrategicMergePatchType, patch, metav1.PatchOptions{}, "status")
}

// --- events ---

func (w *podWorker) event(pod *v1.Pod, container, typ, reason, msg string) {
	if pod == nil || w.n.recorder == nil {
		return
	}
	ref := &v1.ObjectReference{
		Kind: "Pod", APIVersion: "v1", Namespace: pod.Namespace, Name: pod.Name, UID: pod.UID,
		ResourceVersion: pod.ResourceVersion,
	}
	if container != "" {
		ref.FieldPath = fieldPathFor(pod, container)
	}
	w.n.recorder.Event(ref, typ, reason, msg)
}

func fieldPathFor(pod *v1.Pod, name string) string {
	for i, c := range pod.Spec.InitContainers {
		if c.Name == name {
			return fmt.Sprintf("spec.initContainers{%s}", pod.Spec.InitContainers[i].Name)
		}
	}
	return fmt.Sprintf("spec.containers{%s}", name)
}
