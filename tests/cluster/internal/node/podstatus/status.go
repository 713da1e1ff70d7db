// Package podstatus computes a pod's status (phase, conditions, container
// statuses) from what the node knows about its containers. It is pure: no
// I/O, the clock is an input. The rules follow the kubelet's
// (pkg/kubelet/kubelet_pods.go getPhase, pkg/kubelet/status/generate.go).
package podstatus

import (
	"fmt"
	"sort"
	"strings"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Terminated describes one finished run of a container.
type Terminated struct {
	ExitCode    int32
	Signal      int32
	Reason      string
	Message     string
	StartedAt   time.Time
	FinishedAt  time.Time
	ContainerID string
}

// Container is the node's view of one container.
type Container struct {
	Name         string
	RestartCount int32
	// Exactly one of Waiting / Running / Terminated describes the current state.
	WaitingReason  string
	WaitingMessage string
	Running        bool
	StartedAt      time.Time // when Running
	Terminated     *Terminated
	Last           *Terminated // lastState
	ContainerID    string      // of the current run (Running)
	Ready          bool
	Started        bool
}

// Input is everything Compute needs.
type Input struct {
	Pod          *v1.Pod // spec and the status currently stored (for fields the node does not own)
	Now          time.Time
	SandboxReady bool
	PodIP        string
	HostIP       string
	StartTime    time.Time
	Init         []Container // in spec order
	Containers   []Container // in spec order
	// Terminal forces a terminal phase (the pod is being deleted and all its
	// containers are stopped, or the node gave up on it).
	Terminal bool
	Reason   string
	Message  string
	// PrevConditions are the conditions last sent, used to keep
	// lastTransitionTime stable; falls back to Pod.Status.Conditions.
	PrevConditions []v1.PodCondition
}

// IsRestartableInit reports whether c is a sidecar (init container with restartPolicy Always).
func IsRestartableInit(c *v1.Container) bool {
	return c.RestartPolicy != nil && *c.RestartPolicy == v1.ContainerRestartPolicyAlways
}

func sidecarHasStarted(c Container) bool {
	return c.Started || c.Terminated != nil || c.Last != nil
}

// Phase computes the pod phase.
func Phase(spec *v1.PodSpec, init, containers []Container, terminal bool) v1.PodPhase {
	// Init containers.
	for i, ic := range init {
		if i < len(spec.InitContainers) && IsRestartableInit(&spec.InitContainers[i]) {
			// A sidecar counts as initialized once it has started.
			if !sidecarHasStarted(ic) && !terminal {
				return v1.PodPending
			}
			continue
		}
		if ic.Terminated != nil && ic.Terminated.ExitCode == 0 {
			continue
		}
		if ic.Terminated != nil && (spec.RestartPolicy == v1.RestartPolicyNever || terminal) {
			return v1.PodFailed
		}
		if terminal {
			return v1.PodFailed
		}
		return v1.PodPending
	}
	var running, waiting, stopped, succeeded int
	for _, c := range containers {
		switch {
		case c.Running:
			running++
		case c.Terminated != nil:
			stopped++
			if c.Terminated.ExitCode == 0 {
				succeeded++
			}
		case c.Last != nil:
			// Waiting to restart after a termination.
			stopped++
			if c.Last.ExitCode == 0 {
				succeeded++
			}
		default:
			waiting++
		}
	}
	if terminal {
		if running == 0 && waiting == 0 && len(containers) > 0 && succeeded == len(containers) {
			return v1.PodSucceeded
		}
		return v1.PodFailed
	}
	switch {
	case waiting > 0:
		return v1.PodPending
	case running > 0:
		return v1.PodRunning
	case stopped == len(containers) && len(containers) > 0:
		switch spec.RestartPolicy {
		case v1.RestartPolicyAlways:
			return v1.PodRunning
		case v1.RestartPolicyOnFailure:
			if succeeded == len(containers) {
				return v1.PodSucceeded
			}
			return v1.PodRunning
		default:
			if succeeded == len(containers) {
				return v1.PodSucceeded
			}
			return v1.PodFailed
		}
	}
	return v1.PodPending
}

// Compute returns the full status to store. Fields the node does not own
// (qosClass, nominatedNodeName, foreign conditions, ...) are copied from
// in.Pod.Status.
func Compute(in Input) v1.PodStatus {
	pod := in.Pod
	st := *pod.Status.DeepCopy()
	now := metav1.NewTime(in.Now)

	st.ObservedGeneration = pod.Generation
	st.Phase = Phase(&pod.Spec, in.Init, in.Containers, in.Terminal)
	st.Reason = in.Reason
	st.Message = in.Message
	if in.HostIP != "" {
		st.HostIP = in.HostIP
		st.HostIPs = []v1.HostIP{{IP: in.HostIP}}
	}
	if in.PodIP != "" {
		st.PodIP = in.PodIP
		st.PodIPs = []v1.PodIP{{IP: in.PodIP}}
	}
	if !in.StartTime.IsZero() {
		t := metav1.NewTime(in.StartTime)
		st.StartTime = &t
	}

	st.InitContainerStatuses = containerStatuses(pod.Spec.InitContainers, in.Init)
	st.ContainerStatuses = containerStatuses(pod.Spec.Containers, in.Containers)

	prev := in.PrevConditions
	if prev == nil {
		prev = pod.Status.Conditions
	}
	own := ownConditions(in, st.Phase, st.Conditions)
	var conds []v1.PodCondition
	owned := map[v1.PodConditionType]bool{}
	for _, c := range own {
		owned[c.Type] = true
	}
	for _, c := range st.Conditions {
		if !owned[c.Type] {
			conds = append(conds, c)
		}
	}
	for _, c := range own {
		c.ObservedGeneration = pod.Generation
		c.LastTransitionTime = now
		for _, p := range prev {
			if p.Type == c.Type && p.Status == c.Status && !p.LastTransitionTime.IsZero() {
				c.LastTransitionTime = p.LastTransitionTime
			}
		}
		conds = append(conds, c)
	}
	st.Conditions = conds
	return st
}

func ownConditions(in Input, phase v1.PodPhase, existing []v1.PodCondition) []v1.PodCondition {
	pod := in.Pod
	var out []v1.PodCondition

	sandbox := v1.PodCondition{Type: v1.PodReadyToStartContainers, Status: v1.ConditionFalse}
	if in.SandboxReady {
		sandbox.Status = v1.ConditionTrue
	}
	out = append(out, sandbox)

	// Initialized.
	var pendingInit []string
	for i, c := range pod.Spec.InitContainers {
		var cs *Container
		if i < len(in.Init) {
			cs = &in.Init[i]
		}
		if IsRestartableInit(&c) {
			if cs == nil || !sidecarHasStarted(*cs) {
				pendingInit = append(pendingInit, c.Name)
			}
			continue
		}
		if cs == nil || cs.Terminated == nil || cs.Terminated.ExitCode != 0 {
			pendingInit = append(pendingInit, c.Name)
		}
	}
	initialized := v1.PodCondition{Type: v1.PodInitialized, Status: v1.ConditionTrue}
	if phase == v1.PodSucceeded {
		// All init containers must have completed for the pod to succeed.
		pendingInit = nil
	}
	if len(pendingInit) > 0 {
		initialized.Status = v1.ConditionFalse
		initialized.Reason = "ContainersNotInitialized"
		initialized.Message = fmt.Sprintf("containers with incomplete status: [%s]", strings.Join(pendingInit, " "))
	}
	out = append(out, initialized)

	// ContainersReady and Ready.
	var unready []string
	for i, c := range pod.Spec.InitContainers {
		if !IsRestartableInit(&c) {
			continue
		}
		if i >= len(in.Init) || !in.Init[i].Ready {
			unready = append(unready, c.Name)
		}
	}
	for i, c := range pod.Spec.Containers {
		if i >= len(in.Containers) || !in.Containers[i].Ready {
			unready = append(unready, c.Name)
		}
	}
	cr := v1.PodCondition{Type: v1.ContainersReady, Status: v1.ConditionTrue}
	ready := v1.PodCondition{Type: v1.PodReady, Status: v1.ConditionTrue}
	switch {
	case phase == v1.PodSucceeded || phase == v1.PodFailed:
		cr.Status, cr.Reason = v1.ConditionFalse, "PodCompleted"
		ready.Status, ready.Reason = v1.ConditionFalse, "PodCompleted"
	case len(unready) > 0:
		msg := fmt.Sprintf("containers with unready status: [%s]", strings.Join(unready, " "))
		cr.Status, cr.Reason, cr.Message = v1.ConditionFalse, "ContainersNotReady", msg
		ready.Status, ready.Reason, ready.Message = v1.ConditionFalse, "ContainersNotReady", msg
	case len(pod.Spec.ReadinessGates) > 0:
		var missing, notTrue []string
		for _, g := range pod.Spec.ReadinessGates {
			found := false
			for _, c := range existing {
				if c.Type == g.ConditionType {
					found = true
					if c.Status != v1.ConditionTrue {
						notTrue = append(notTrue, string(g.ConditionType))
					}
				}
			}
			if !found {
				missing = append(missing, string(g.ConditionType))
			}
		}
		if len(missing) > 0 || len(notTrue) > 0 {
			ready.Status, ready.Reason = v1.ConditionFalse, "ReadinessGatesNotReady"
			var parts []string
			for _, m := range missing {
				parts = append(parts, fmt.Sprintf("corresponding condition of pod readiness gate %q does not exist.", m))
			}
			if len(notTrue) > 0 {
				parts = append(parts, fmt.Sprintf("the status of pod readiness gate %q is not \"True\", but False", strings.Join(notTrue, ", ")))
			}
			ready.Message = strings.Join(parts, ", ")
		}
	}
	out = append(out, cr, ready)
	return out
}

func containerStatuses(specs []v1.Container, cs []Container) []v1.ContainerStatus {
	if len(specs) == 0 {
		return nil
	}
	out := make([]v1.ContainerStatus, 0, len(specs))
	for i, spec := range specs {
		var c Container
		if i < len(cs) {
			c = cs[i]
		} else {
			c = Container{Name: spec.Name, WaitingReason: "ContainerCreating"}
		}
		started := c.Started
		s := v1.ContainerStatus{
			Name:         spec.Name,
			Image:        spec.Image,
			ImageID:      ImageID(spec.Image),
			RestartCount: c.RestartCount,
			Ready:        c.Ready,
			Started:      &started,
		}
		switch {
		case c.Running:
			s.State.Running = &v1.ContainerStateRunning{StartedAt: metav1.NewTime(c.StartedAt)}
			s.ContainerID = c.ContainerID
		case c.Terminated != nil:
			s.State.Terminated = term(c.Terminated)
			s.ContainerID = c.Terminated.ContainerID
		default:
			reason := c.WaitingReason
			if reason == "" {
				reason = "ContainerCreating"
			}
			s.State.Waiting = &v1.ContainerStateWaiting{Reason: reason, Message: c.WaitingMessage}
		}
		if c.Last != nil {
			s.LastTerminationState.Terminated = term(c.Last)
		}
		out = append(out, s)
	}
	return out
}

func term(t *Terminated) *v1.ContainerStateTerminated {
	return &v1.ContainerStateTerminated{
		ExitCode:    t.ExitCode,
		Signal:      t.Signal,
		Reason:      t.Reason,
		Message:     t.Message,
		StartedAt:   metav1.NewTime(t.StartedAt),
		FinishedAt:  metav1.NewTime(t.FinishedAt),
		ContainerID: t.ContainerID,
	}
}

// ImageID is what the node reports as imageID: images are never pulled.
func ImageID(image string) string {
	if image == "" {
		return "kubeloop://none"
	}
	return "kubeloop://" + image
}

// ConditionsEqual compares two condition lists ignoring order.
func ConditionsEqual(a, b []v1.PodCondition) bool {
	if len(a) != len(b) {
		return false
	}
	key := func(l []v1.PodCondition) []string {
		var s []string
		for _, c := range l {
			s = append(s, fmt.Sprintf("%s|%s|%s|%s|%d", c.Type, c.Status, c.Reason, c.Message, c.LastTransitionTime.Unix()))
		}
		sort.Strings(s)
		return s
	}
	ka, kb := key(a), key(b)
	for i := range ka {
		if ka[i] != kb[i] {
			return false
		}
	}
	return true
}
