package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	v1 "k8s.io/api/core/v1"

	"kubeloop.io/testcluster/internal/node/cgroup"
	"kubeloop.io/testcluster/internal/node/cinit"
	"kubeloop.io/testcluster/internal/node/envvars"
	"kubeloop.io/testcluster/internal/node/logs"
	"kubeloop.io/testcluster/internal/node/netns"
	"kubeloop.io/testcluster/internal/node/podstatus"
	"kubeloop.io/testcluster/internal/node/probe"
)

// NoCommandMessage is the waiting message of a container without command.
const NoCommandMessage = "kubeloop-node runs commands, not images: set command"

// ctr is one container of a pod (worker-owned).
type ctr struct {
	spec         v1.Container
	isInit       bool
	sidecar      bool
	restartCount int32
	everRan      bool
	run          *crun
	lastTerm     *podstatus.Terminated
	prevTerm     *podstatus.Terminated
	waitReason   string
	waitMsg      string
	configErr    string
	configReason string
	configTries  int
	backoff      time.Duration
	backoffSteps int
	nextStart    time.Time
	done         bool
	ready        bool
	started      bool
	trackers     map[probe.Kind]*probe.Tracker
}

// crun is one run (process) of a container.
type crun struct {
	n         int
	id        string
	pid       int
	startedAt time.Time
	logPath   string
	termPath  string
	cgDir     string
	oomBefore uint64
	startErr  string
	exited    chan struct{}
	cancel    context.CancelFunc
	started   atomic.Bool // startup probe passed (gates liveness/readiness)
	killing   atomic.Bool
	exec      cinit.Spec // template for exec probes / hooks
}

type exitInfo struct {
	code       int32
	signal     int32
	reason     string
	message    string
	finishedAt time.Time
}

// startFailure is a failure before any process ran (the container stays waiting).
type startFailure struct{ reason, msg string }

func (e *startFailure) Error() string { return e.msg }

func (c *ctr) running() bool { return c.run != nil }

func (c *ctr) shouldRestart(pod *v1.Pod, exitCode int32) bool {
	if c.sidecar {
		return true
	}
	if c.isInit {
		return exitCode != 0 && pod.Spec.RestartPolicy != v1.RestartPolicyNever
	}
	switch pod.Spec.RestartPolicy {
	case v1.RestartPolicyNever:
		return false
	case v1.RestartPolicyOnFailure:
		return exitCode != 0
	}
	return true
}

func (c *ctr) status(pod *v1.Pod, volErr string, initPending bool) podstatus.Container {
	s := podstatus.Container{
		Name: c.spec.Name, RestartCount: c.restartCount, Ready: c.ready && c.run != nil, Started: c.started && c.run != nil,
	}
	switch {
	case c.run != nil:
		s.Running, s.StartedAt, s.ContainerID, s.Last = true, c.run.startedAt, c.run.id, c.lastTerm
	case c.done && c.lastTerm != nil:
		s.Terminated, s.Last = c.lastTerm, c.prevTerm
	default:
		s.Last = c.lastTerm
		switch {
		case c.configErr != "":
			s.WaitingReason, s.WaitingMessage = c.configReason, c.configErr
		case c.lastTerm != nil && c.waitReason != "":
			s.WaitingReason, s.WaitingMessage = c.waitReason, c.waitMsg
		case initPending && !c.isInit:
			s.WaitingReason = "PodInitializing"
		default:
			s.WaitingReason = "ContainerCreating"
		}
	}
	return s
}

func (w *podWorker) find(name string) *ctr {
	for _, c := range w.init {
		if c.spec.Name == name {
			return c
		}
	}
	for _, c := range w.ctrs {
		if c.spec.Name == name {
			return c
		}
	}
	return nil
}

// --- starting ---

func (w *podWorker) start(pod *v1.Pod, c *ctr) {
	err := w.startProcess(pod, c)
	if err == nil {
		c.configErr, c.configReason, c.configTries, c.waitReason, c.waitMsg = "", "", 0, "", ""
		return
	}
	var sf *startFailure
	if !errors.As(err, &sf) {
		sf = &startFailure{reason: "CreateContainerError", msg: err.Error()}
	}
	if c.configErr != sf.msg {
		w.log.Warn("cannot start container", "container", c.spec.Name, "reason", sf.reason, "err", sf.msg)
		w.event(pod, c.spec.Name, v1.EventTypeWarning, "Failed", "Error: "+sf.msg)
	}
	c.configErr, c.configReason = sf.msg, sf.reason
	// Retry (a config map may appear later): 2s, 4s, ... 30s.
	d := time.Duration(1<<min(c.configTries, 4)) * 2 * time.Second
	if d > 30*time.Second {
		d = 30 * time.Second
	}
	c.configTries++
	c.nextStart = time.Now().Add(d)
	w.wakeAt(c.nextStart)
}

type creds struct {
	uid, gid int64
	groups   []int64
}

func credentialsFor(pod *v1.Pod, c *v1.Container) (creds, error) {
	psc := pod.Spec.SecurityContext
	if psc == nil {
		psc = &v1.PodSecurityContext{}
	}
	csc := c.SecurityContext
	if csc == nil {
		csc = &v1.SecurityContext{}
	}
	runAsUser := csc.RunAsUser
	if runAsUser == nil {
		runAsUser = psc.RunAsUser
	}
	runAsGroup := csc.RunAsGroup
	if runAsGroup == nil {
		runAsGroup = psc.RunAsGroup
	}
	nonRoot := csc.RunAsNonRoot
	if nonRoot == nil {
		nonRoot = psc.RunAsNonRoot
	}
	podID := fmt.Sprintf("%s_%s(%s)", pod.Name, pod.Namespace, pod.UID)
	if nonRoot != nil && *nonRoot {
		if runAsUser == nil {
			return creds{}, &startFailure{"CreateContainerConfigError", fmt.Sprintf("container has runAsNonRoot and image will run as root (pod: %q, container: %s)", podID, c.Name)}
		}
		if *runAsUser == 0 {
			return creds{}, &startFailure{"CreateContainerConfigError", fmt.Sprintf("container's runAsUser breaks non-root policy (pod: %q, container: %s)", podID, c.Name)}
		}
	}
	var cr creds
	if runAsUser != nil {
		cr.uid = *runAsUser
	}
	pgid, _, known := userInfo(cr.uid)
	switch {
	case runAsGroup != nil:
		cr.gid = *runAsGroup
	case known:
		cr.gid = pgid
	}
	seen := map[int64]bool{}
	add := func(g int64) {
		if !seen[g] {
			seen[g] = true
			cr.groups = append(cr.groups, g)
		}
	}
	if psc.FSGroup != nil {
		add(*psc.FSGroup)
	}
	for _, g := range psc.SupplementalGroups {
		add(g)
	}
	return cr, nil
}

func (w *podWorker) serviceEnv() []envvars.Var {
	host, port := w.n.cfg.APIHost, strconv.Itoa(w.n.cfg.APIPort)
	url := "tcp://" + host + ":" + port
	return []envvars.Var{
		{Name: "KUBERNETES_SERVICE_HOST", Value: host},
		{Name: "KUBERNETES_SERVICE_PORT", Value: port},
		{Name: "KUBERNETES_SERVICE_PORT_HTTPS", Value: port},
		{Name: "KUBERNETES_PORT", Value: url},
		{Name: "KUBERNETES_PORT_" + port + "_TCP", Value: url},
		{Name: "KUBERNETES_PORT_" + port + "_TCP_PROTO", Value: "tcp"},
		{Name: "KUBERNETES_PORT_" + port + "_TCP_PORT", Value: port},
		{Name: "KUBERNETES_PORT_" + port + "_TCP_ADDR", Value: host},
	}
}

func nodePath() string {
	if p := os.Getenv("PATH"); p != "" {
		return p
	}
	return "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
}

func volumeIsReadOnly(pod *v1.Pod, name string) bool {
	for _, v := range pod.Spec.Volumes {
		if v.Name == name {
			return v.ConfigMap != nil || v.Secret != nil || v.Projected != nil || v.DownwardAPI != nil
		}
	}
	return false
}

func (w *podWorker) mountsFor(pod *v1.Pod, c *v1.Container, expand map[string]string) ([]cinit.Mount, error) {
	var out []cinit.Mount
	for _, vm := range c.VolumeMounts {
		src, ok := w.volDirs[vm.Name]
		if !ok {
			return nil, &startFailure{"CreateContainerConfigError", fmt.Sprintf("cannot find volume %q to mount into container %q", vm.Name, c.Name)}
		}
		sub := vm.SubPath
		if vm.SubPathExpr != "" {
			sub = envvars.Expand(vm.SubPathExpr, expand)
		}
		if sub != "" {
			if filepath.IsAbs(sub) || strings.Contains("/"+sub+"/", "/../") {
				return nil, &startFailure{"CreateContainerConfigError", fmt.Sprintf("invalid subPath %q in volume mount %q", sub, vm.Name)}
			}
			p := filepath.Join(src, sub)
			if _, err := os.Lstat(p); os.IsNotExist(err) {
				// Like the kubelet: missing subPath directories get the
				// volume's own mode (0777 for emptyDir) and group.
				st, err := os.Stat(src)
				if err != nil {
					return nil, &startFailure{"CreateContainerConfigError", err.Error()}
				}
				cur := src
				for _, el := range strings.Split(filepath.Clean(sub), "/") {
					cur = filepath.Join(cur, el)
					if _, err := os.Lstat(cur); err == nil {
						continue
					}
					if err := os.Mkdir(cur, 0o700); err != nil {
						return nil, &startFailure{"CreateContainerConfigError", fmt.Sprintf("failed to create subPath directory for volumeMount %q of container %q: %v", vm.Name, c.Name, err)}
					}
					_ = os.Chmod(cur, st.Mode()&(os.ModePerm|os.ModeSetgid))
					if sys, ok := st.Sys().(*syscall.Stat_t); ok {
						_ = os.Lchown(cur, int(sys.Uid), int(sys.Gid))
					}
				}
			}
			root, _ := filepath.EvalSymlinks(src)
			resolved, err := filepath.EvalSymlinks(p)
			if err != nil || (resolved != root && !strings.HasPrefix(resolved, root+"/")) {
				return nil, &startFailure{"CreateContainerConfigError", fmt.Sprintf("subPath %q of volume %q escapes the volume", sub, vm.Name)}
			}
			src = resolved
		}
		out = append(out, cinit.Mount{Source: src, Target: vm.MountPath, ReadOnly: vm.ReadOnly || volumeIsReadOnly(pod, vm.Name)})
	}
	return out, nil
}

func (w *podWorker) startProcess(pod *v1.Pod, c *ctr) error {
	spec := &c.spec
	if len(spec.Command) == 0 {
		return &startFailure{"CreateContainerConfigError", NoCommandMessage}
	}
	cr, err := credentialsFor(pod, spec)
	if err != nil {
		return err
	}
	_, home, _ := userInfo(cr.uid)
	opt := w.envOptions()
	opt.Service = w.serviceEnv()
	opt.Defaults = []envvars.Var{
		{Name: "PATH", Value: nodePath()},
		{Name: "HOME", Value: home},
		{Name: "HOSTNAME", Value: podHostname(pod)},
	}
	g := w.n.newGetter(context.Background())
	vars, expand, err := envvars.Resolve(pod, spec, g, opt)
	if err != nil {
		return &startFailure{"CreateContainerConfigError", err.Error()}
	}
	argv := append(envvars.ExpandAll(spec.Command, expand), envvars.ExpandAll(spec.Args, expand)...)
	mounts, err := w.mountsFor(pod, spec, expand)
	if err != nil {
		return err
	}

	// From here on this is a run of the container.
	if c.everRan {
		c.restartCount++
	}
	n := int(c.restartCount)
	name := spec.Name
	logDir := filepath.Join(w.dir, "logs", name)
	runDir := filepath.Join(w.dir, "run")
	for _, d := range []string{logDir, runDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return err
		}
	}
	termPath := filepath.Join(runDir, fmt.Sprintf("%s-%d.termination-log", name, n))
	if err := os.WriteFile(termPath, nil, 0o660); err != nil {
		return err
	}
	_ = os.Chown(termPath, int(cr.uid), int(cr.gid))
	tmp := spec.TerminationMessagePath
	if tmp == "" {
		tmp = v1.TerminationMessagePathDefault
	}
	hasMount := func(target string) bool {
		for _, m := range mounts {
			if filepath.Clean(m.Target) == filepath.Clean(target) {
				return true
			}
		}
		return false
	}
	if !hasMount(tmp) {
		mounts = append(mounts, cinit.Mount{Source: termPath, Target: tmp})
	}
	if !w.hostNetwork && !hasMount("/etc/hosts") {
		mounts = append(mounts, cinit.Mount{Source: filepath.Join(w.dir, "etc-hosts"), Target: "/etc/hosts"})
	}

	var limit int64
	if q, ok := spec.Resources.Limits[v1.ResourceMemory]; ok {
		limit = q.Value()
	}
	cgDir, err := w.n.cg.Create(string(pod.UID), name, limit)
	if err != nil {
		return &startFailure{"CreateContainerError", "create memory cgroup: " + err.Error()}
	}

	noNewPrivs := spec.SecurityContext != nil && spec.SecurityContext.AllowPrivilegeEscalation != nil && !*spec.SecurityContext.AllowPrivilegeEscalation
	groups := make([]uint32, len(cr.groups))
	for i, g := range cr.groups {
		groups[i] = uint32(g)
	}
	cs := cinit.Spec{
		UID: uint32(cr.uid), GID: uint32(cr.gid), Groups: groups,
		NoNewPrivs:      noNewPrivs,
		WorkingDir:      spec.WorkingDir,
		Argv:            argv,
		Env:             envvars.Strings(vars),
		Mounts:          mounts,
		HideMountsUnder: []string{netns.Dir, w.n.podsDir},
		CreatedLog:      w.n.createdLog(),
	}
	if cgDir != "" {
		cs.Cgroups = []string{cgDir}
	}
	if !w.hostNetwork {
		cs.Netns = netns.Path(w.nsName)
		cs.Hostname = podHostname(pod)
	}
	specPath := filepath.Join(runDir, fmt.Sprintf("%s-%d.spec.json", name, n))
	b, _ := json.Marshal(cs)
	if err := os.WriteFile(specPath, b, 0o600); err != nil {
		return err
	}
	defer os.Remove(specPath)

	logPath := filepath.Join(logDir, fmt.Sprintf("%d.log", n))
	lw, err := logs.NewWriter(logPath)
	if err != nil {
		return err
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		return err
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		return err
	}
	seR, seW, err := os.Pipe()
	if err != nil {
		return err
	}
	args := []string{"--mount", "--propagation", "slave"}
	if !w.hostNetwork {
		args = append(args, "--uts")
	}
	args = append(args, "--", w.n.selfExe, "container-init", "--spec", specPath)
	cmd := exec.Command(w.n.unshare, args...)
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	cmd.Dir = "/"
	cmd.Stdout, cmd.Stderr = outW, errW
	cmd.ExtraFiles = []*os.File{seW}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	oomBefore := w.n.cg.OOMKills(cgDir)
	w.event(pod, name, v1.EventTypeNormal, "Pulled", fmt.Sprintf("Container image %q is not pulled: kubeloop-node runs the command on the host", spec.Image))
	startErr := cmd.Start()
	outW.Close()
	errW.Close()
	seW.Close()
	if startErr != nil {
		outR.Close()
		errR.Close()
		seR.Close()
		lw.Wait(0)
		c.restartCount = max(c.restartCount-boolToInt32(c.everRan), 0)
		return &startFailure{"CreateContainerError", "start container process: " + startErr.Error()}
	}
	lw.Copy(outR, "stdout")
	lw.Copy(errR, "stderr")
	w.n.activeLogs.Store(logPath, struct{}{})
	pid := cmd.Process.Pid
	w.n.recordProc(pid, string(pod.UID))
	_ = os.WriteFile(filepath.Join(runDir, name+".pid"), []byte(strconv.Itoa(pid)+"\n"), 0o600)

	// Wait for the exec (pipe closed) or a start error.
	_ = seR.SetReadDeadline(time.Now().Add(30 * time.Second))
	msg, _ := readAllLimited(seR, 4096)
	seR.Close()

	ctx, cancel := context.WithCancel(w.n.ctx)
	r := &crun{
		n: n, id: fmt.Sprintf("kubeloop://%s/%s/%s/%d", pod.Namespace, pod.Name, name, n),
		pid: pid, startedAt: time.Now(), logPath: logPath, termPath: termPath, cgDir: cgDir,
		oomBefore: oomBefore, startErr: strings.TrimSpace(msg), exited: make(chan struct{}), cancel: cancel,
		exec: cs,
	}
	r.exec.Mounts, r.exec.Netns, r.exec.Hostname, r.exec.HideMountsUnder = nil, "", "", nil
	c.run = r
	c.everRan = true
	c.ready, c.started = false, false
	c.waitReason, c.waitMsg = "", ""
	go w.waitRun(pod, c.spec.Name, r, cmd, lw)
	if r.startErr != "" {
		w.event(pod, name, v1.EventTypeWarning, "Failed", "Error: "+r.startErr)
		return nil // the waiter reports StartError
	}
	w.log.Info("started container", "container", name, "pid", pid, "restartCount", c.restartCount, "argv0", argv[0])
	w.event(pod, name, v1.EventTypeNormal, "Started", "Started container "+name)

	// Probes.
	c.trackers = map[probe.Kind]*probe.Tracker{}
	if spec.StartupProbe != nil {
		c.trackers[probe.Startup] = probe.NewTracker(probe.ParamsFor(spec.StartupProbe), probe.Unknown)
		go w.prober(ctx, pod, c.spec, r, probe.Startup, spec.StartupProbe)
	} else {
		c.started = true
		r.started.Store(true)
	}
	if spec.ReadinessProbe != nil && !(c.isInit && !c.sidecar) {
		c.trackers[probe.Readiness] = probe.NewTracker(probe.ParamsFor(spec.ReadinessProbe), probe.Failure)
		go w.prober(ctx, pod, c.spec, r, probe.Readiness, spec.ReadinessProbe)
	} else {
		c.ready = c.started
	}
	if spec.LivenessProbe != nil && !(c.isInit && !c.sidecar) {
		c.trackers[probe.Liveness] = probe.NewTracker(probe.ParamsFor(spec.LivenessProbe), probe.Success)
		go w.prober(ctx, pod, c.spec, r, probe.Liveness, spec.LivenessProbe)
	}
	if spec.Lifecycle != nil && spec.Lifecycle.PostStart != nil {
		hctx, hcancel := context.WithTimeout(ctx, 30*time.Second)
		herr := w.runHook(hctx, pod, c.spec, r, spec.Lifecycle.PostStart)
		hcancel()
		if herr != nil {
			w.event(pod, name, v1.EventTypeWarning, "FailedPostStartHook", herr.Error())
			go w.killRun(r, gracePeriod(pod))
		}
	}
	return nil
}

func boolToInt32(b bool) int32 {
	if b {
		return 1
	}
	return 0
}

func readAllLimited(f *os.File, n int64) (string, error) {
	var buf bytes.Buffer
	_, err := buf.ReadFrom(&limitedReader{f, n})
	return buf.String(), err
}

type limitedReader struct {
	f *os.File
	n int64
}

func (l *limitedReader) Read(p []byte) (int, error) {
	if l.n <= 0 {
		return 0, errors.New("limit")
	}
	if int64(len(p)) > l.n {
		p = p[:l.n]
	}
	k, err := l.f.Read(p)
	l.n -= int64(k)
	return k, err
}

// waitRun reaps the process, cleans up what it left, and posts the exit.
func (w *podWorker) waitRun(pod *v1.Pod, name string, r *crun, cmd *exec.Cmd, lw *logs.Writer) {
	_ = cmd.Wait()
	finished := time.Now()
	// Like runc, kill whatever the main process left behind.
	_ = syscall.Kill(-r.pid, syscall.SIGKILL)
	cgroup.Kill(r.cgDir, syscall.SIGKILL)
	if !lw.Wait(3 * time.Second) {
		w.log.Warn("container output still open after exit; log truncated", "container", name)
	}
	w.n.activeLogs.Delete(r.logPath)
	w.n.forgetProc(r.pid)
	ex := &exitInfo{finishedAt: finished}
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok {
		if ws.Signaled() {
			ex.signal = int32(ws.Signal())
			ex.code = 128 + ex.signal
		} else {
			ex.code = int32(ws.ExitStatus())
		}
	} else {
		ex.code = int32(cmd.ProcessState.ExitCode())
	}
	switch {
	case r.startErr != "":
		ex.code, ex.signal, ex.reason, ex.message = cinit.ExitCodeStartError, 0, "StartError", r.startErr
	case ex.code == 0:
		ex.reason = "Completed"
	case w.n.cg.OOMKills(r.cgDir) > r.oomBefore:
		ex.reason = "OOMKilled"
	default:
		ex.reason = "Error"
	}
	if ex.message == "" {
		ex.message = readTermMessage(r.termPath)
		var policy v1.TerminationMessagePolicy
		for _, c := range append(append([]v1.Container{}, pod.Spec.InitContainers...), pod.Spec.Containers...) {
			if c.Name == name {
				policy = c.TerminationMessagePolicy
			}
		}
		if ex.message == "" && ex.code != 0 && policy == v1.TerminationMessageFallbackToLogsOnError {
			ex.message = logs.Tail(r.logPath, fallbackLogLines, fallbackLogBytes)
		}
	}
	_ = os.Remove(r.termPath)
	w.post(event{container: name, run: r.n, exit: ex})
	close(r.exited)
}

func readTermMessage(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	b := make([]byte, maxTermMsgBytes)
	n, _ := f.Read(b)
	for n < maxTermMsgBytes {
		k, err := f.Read(b[n:])
		n += k
		if err != nil || k == 0 {
			break
		}
	}
	return string(b[:n])
}

// --- events from waiters and probers ---

func (w *podWorker) applyEvents() {
	evs := w.takeEvents()
	if len(evs) == 0 {
		return
	}
	pod, _ := w.latest()
	for _, ev := range evs {
		c := w.find(ev.container)
		if c == nil || c.run == nil || c.run.n != ev.run {
			continue
		}
		if ev.exit != nil {
			w.handleExit(pod, c, ev.exit)
			continue
		}
		tr := c.trackers[ev.probeKind]
		if tr == nil {
			continue
		}
		changed := tr.Observe(ev.result)
		if ev.result == probe.Failure {
			w.event(pod, c.spec.Name, v1.EventTypeWarning, "Unhealthy", fmt.Sprintf("%s probe failed: %s", ev.probeKind, ev.msg))
		}
		switch ev.probeKind {
		case probe.Startup:
			if tr.Current() == probe.Success && !c.started {
				c.started = true
				c.run.started.Store(true)
				if c.trackers[probe.Readiness] == nil {
					c.ready = true
				}
			}
			if changed && tr.Current() == probe.Failure {
				w.event(pod, c.spec.Name, v1.EventTypeNormal, "Killing", fmt.Sprintf("Container %s failed startup probe, will be restarted", c.spec.Name))
				go w.killRun(c.run, probeGrace(pod, c.spec.StartupProbe))
			}
		case probe.Readiness:
			c.ready = c.started && tr.Current() == probe.Success
		case probe.Liveness:
			if changed && tr.Current() == probe.Failure {
				w.log.Info("liveness probe failed; restarting container", "container", c.spec.Name, "msg", ev.msg)
				w.event(pod, c.spec.Name, v1.EventTypeNormal, "Killing", fmt.Sprintf("Container %s failed liveness probe, will be restarted", c.spec.Name))
				go w.killRun(c.run, probeGrace(pod, c.spec.LivenessProbe))
			}
		}
	}
}

func probeGrace(pod *v1.Pod, p *v1.Probe) time.Duration {
	if p != nil && p.TerminationGracePeriodSeconds != nil {
		return time.Duration(*p.TerminationGracePeriodSeconds) * time.Second
	}
	return gracePeriod(pod)
}

func (w *podWorker) handleExit(pod *v1.Pod, c *ctr, ex *exitInfo) {
	r := c.run
	r.cancel()
	c.run = nil
	c.ready, c.started = false, false
	t := &podstatus.Terminated{
		ExitCode: ex.code, Signal: ex.signal, Reason: ex.reason, Message: ex.message,
		StartedAt: r.startedAt, FinishedAt: ex.finishedAt, ContainerID: r.id,
	}
	c.prevTerm, c.lastTerm = c.lastTerm, t
	w.log.Info("container exited", "container", c.spec.Name, "exitCode", ex.code, "reason", ex.reason)
	if ex.finishedAt.Sub(r.startedAt) >= backoffResetRun {
		c.backoffSteps = 0
	}
	if !w.finished && pod != nil && c.shouldRestart(pod, ex.code) {
		var d time.Duration
		if c.backoffSteps > 0 {
			d = backoffInitial << (c.backoffSteps - 1)
			if d > backoffMax || d <= 0 {
				d = backoffMax
			}
		}
		c.backoffSteps++
		c.backoff = d
		c.nextStart = ex.finishedAt.Add(d)
		if d > 0 {
			w.event(pod, c.spec.Name, v1.EventTypeWarning, "BackOff", fmt.Sprintf("Back-off restarting failed container %s in pod %s_%s(%s)", c.spec.Name, pod.Name, pod.Namespace, pod.UID))
		}
	} else {
		c.done = true
	}
}

// --- probes ---

func (w *podWorker) prober(ctx context.Context, pod *v1.Pod, spec v1.Container, r *crun, kind probe.Kind, pr *v1.Probe) {
	p := probe.ParamsFor(pr)
	if p.InitialDelay > 0 {
		select {
		case <-ctx.Done():
			return
		case <-time.After(p.InitialDelay):
		}
	}
	tgt := probe.Target{PodIP: w.podIP, Container: &spec}
	execFn := func(ctx context.Context, argv []string) (int, string, error) { return w.execIn(ctx, r, argv) }
	for {
		if kind == probe.Startup || r.started.Load() {
			res, msg := probe.Run(ctx, pr, tgt, execFn)
			if ctx.Err() != nil {
				return
			}
			w.post(event{container: spec.Name, run: r.n, probeKind: kind, result: res, msg: msg})
			if kind == probe.Startup && res == probe.Success {
				return // a startup probe stops once it succeeded
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(p.Period):
		}
	}
}

// execIn runs argv inside the container's namespaces, as its user, with
// its environment (exec probes and hooks).
func (w *podWorker) execIn(ctx context.Context, r *crun, argv []string) (int, string, error) {
	spec := r.exec
	spec.Argv = argv
	f, err := os.CreateTemp(filepath.Join(w.dir, "run"), "exec-*.json")
	if err != nil {
		return -1, "", err
	}
	defer os.Remove(f.Name())
	if err := json.NewEncoder(f).Encode(spec); err != nil {
		f.Close()
		return -1, "", err
	}
	f.Close()
	args := []string{"--target", strconv.Itoa(r.pid), "--mount"}
	if !w.hostNetwork {
		args = append(args, "--net", "--uts")
	}
	args = append(args, "--", w.n.selfExe, "container-init", "--spec", f.Name(), "--enter")
	cmd := exec.Command(w.n.nsenter, args...)
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	var out limitedBuffer
	out.max = 64 * 1024
	cmd.Stdout, cmd.Stderr = &out, &out
	seR, seW, err := os.Pipe()
	if err != nil {
		return -1, "", err
	}
	cmd.ExtraFiles = []*os.File{seW}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		seW.Close()
		seR.Close()
		return -1, "", err
	}
	seW.Close()
	done := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		case <-done:
		}
	}()
	msg, _ := readAllLimited(seR, 4096)
	seR.Close()
	werr := cmd.Wait()
	close(done)
	if msg != "" {
		return -1, out.String(), errors.New(strings.TrimSpace(msg))
	}
	if ctx.Err() != nil {
		return -1, out.String(), ctx.Err()
	}
	var ee *exec.ExitError
	if werr != nil && !errors.As(werr, &ee) {
		return -1, out.String(), werr
	}
	return cmd.ProcessState.ExitCode(), out.String(), nil
}

type limitedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
	max int
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if room := l.max - l.buf.Len(); room > 0 {
		if len(p) > room {
			l.buf.Write(p[:room])
		} else {
			l.buf.Write(p)
		}
	}
	return len(p), nil
}

func (l *limitedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func (w *podWorker) runHook(ctx context.Context, pod *v1.Pod, spec v1.Container, r *crun, h *v1.LifecycleHandler) error {
	switch {
	case h.Exec != nil:
		code, out, err := w.execIn(ctx, r, h.Exec.Command)
		if err != nil {
			return fmt.Errorf("exec hook %v: %v", h.Exec.Command, err)
		}
		if code != 0 {
			return fmt.Errorf("exec hook %v exited with %d: %s", h.Exec.Command, code, strings.TrimSpace(out))
		}
	case h.HTTPGet != nil:
		res, msg := probe.HTTPGet(ctx, h.HTTPGet, probe.Target{PodIP: w.podIP, Container: &spec})
		if res != probe.Success {
			return fmt.Errorf("http hook: %s", msg)
		}
	case h.Sleep != nil:
		select {
		case <-ctx.Done():
		case <-time.After(time.Duration(h.Sleep.Seconds) * time.Second):
		}
	}
	return nil
}

// --- stopping ---

// signalRun signals every process of the run exactly once: those in the
// container's cgroup, or (without cgroups) its process group.
func signalRun(r *crun, sig syscall.Signal) {
	if r.cgDir != "" && cgroup.Kill(r.cgDir, sig) > 0 {
		return
	}
	_ = syscall.Kill(-r.pid, sig)
}

// killRun stops a run: SIGTERM, grace, SIGKILL. It returns when the
// process was reaped (or after a safety timeout).
func (w *podWorker) killRun(r *crun, grace time.Duration) {
	if r == nil {
		return
	}
	r.killing.Store(true)
	signalRun(r, syscall.SIGTERM)
	select {
	case <-r.exited:
		return
	case <-time.After(grace):
	}
	signalRun(r, syscall.SIGKILL)
	select {
	case <-r.exited:
	case <-time.After(10 * time.Second):
		w.log.Error("process did not exit after SIGKILL", "pid", r.pid)
	}
}

// stopAll stops every running container of the pod within grace (running
// preStop hooks first when hooks is set) and applies the exits.
func (w *podWorker) stopAll(pod *v1.Pod, grace time.Duration, hooks bool) {
	var wg sync.WaitGroup
	deadline := time.Now().Add(grace)
	for _, c := range append(append([]*ctr{}, w.init...), w.ctrs...) {
		r := c.run
		if r == nil {
			continue
		}
		if pod != nil {
			w.event(pod, c.spec.Name, v1.EventTypeNormal, "Killing", "Stopping container "+c.spec.Name)
		}
		wg.Add(1)
		go func(c *ctr) {
			defer wg.Done()
			if hooks && c.spec.Lifecycle != nil && c.spec.Lifecycle.PreStop != nil && pod != nil {
				ctx, cancel := context.WithDeadline(context.Background(), deadline)
				if err := w.runHook(ctx, pod, c.spec, r, c.spec.Lifecycle.PreStop); err != nil {
					w.event(pod, c.spec.Name, v1.EventTypeWarning, "FailedPreStopHook", err.Error())
				}
				cancel()
			}
			w.killRun(r, time.Until(deadline))
		}(c)
	}
	wg.Wait()
	// Apply the exits (they were posted by the waiters).
	w.finishedGuard(func() { w.applyEvents() })
}

// finishedGuard runs f with finished set, so exits do not schedule restarts.
func (w *podWorker) finishedGuard(f func()) {
	prev := w.finished
	w.finished = true
	f()
	w.finished = prev
}
