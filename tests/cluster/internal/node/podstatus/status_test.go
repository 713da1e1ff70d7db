package podstatus

import (
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func spec(policy v1.RestartPolicy, n int) v1.PodSpec {
	s := v1.PodSpec{RestartPolicy: policy}
	for i := 0; i < n; i++ {
		s.Containers = append(s.Containers, v1.Container{Name: string(rune('a' + i)), Image: "python"})
	}
	return s
}

func exited(code int32) Container {
	return Container{Terminated: &Terminated{ExitCode: code}}
}

func TestPhase(t *testing.T) {
	running := Container{Running: true, Started: true}
	waiting := Container{WaitingReason: "ContainerCreating"}
	backoff := Container{WaitingReason: "CrashLoopBackOff", Last: &Terminated{ExitCode: 1}}
	cases := []struct {
		name     string
		policy   v1.RestartPolicy
		cs       []Container
		terminal bool
		want     v1.PodPhase
	}{
		{"creating", v1.RestartPolicyAlways, []Container{waiting}, false, v1.PodPending},
		{"running", v1.RestartPolicyAlways, []Container{running, backoff}, false, v1.PodRunning},
		{"crashloop", v1.RestartPolicyAlways, []Container{backoff}, false, v1.PodRunning},
		{"never ok", v1.RestartPolicyNever, []Container{exited(0), exited(0)}, false, v1.PodSucceeded},
		{"never fail", v1.RestartPolicyNever, []Container{exited(0), exited(2)}, false, v1.PodFailed},
		{"onfailure ok", v1.RestartPolicyOnFailure, []Container{exited(0)}, false, v1.PodSucceeded},
		{"onfailure fail restarts", v1.RestartPolicyOnFailure, []Container{exited(1)}, false, v1.PodRunning},
		{"always all exited", v1.RestartPolicyAlways, []Container{exited(0)}, false, v1.PodRunning},
		{"deleted killed", v1.RestartPolicyAlways, []Container{exited(143)}, true, v1.PodFailed},
		{"deleted clean exit", v1.RestartPolicyAlways, []Container{exited(0)}, true, v1.PodSucceeded},
		{"one still starting", v1.RestartPolicyAlways, []Container{running, waiting}, false, v1.PodPending},
	}
	for _, c := range cases {
		s := spec(c.policy, len(c.cs))
		if got := Phase(&s, nil, c.cs, c.terminal); got != c.want {
			t.Errorf("%s: got %s want %s", c.name, got, c.want)
		}
	}
}

func TestPhaseInit(t *testing.T) {
	s := spec(v1.RestartPolicyNever, 1)
	s.InitContainers = []v1.Container{{Name: "init"}}
	app := []Container{{WaitingReason: "PodInitializing"}}
	if got := Phase(&s, []Container{{Running: true}}, app, false); got != v1.PodPending {
		t.Errorf("init running: %s", got)
	}
	if got := Phase(&s, []Container{exited(1)}, app, false); got != v1.PodFailed {
		t.Errorf("init failed with Never: %s", got)
	}
	s.RestartPolicy = v1.RestartPolicyOnFailure
	if got := Phase(&s, []Container{exited(1)}, app, false); got != v1.PodPending {
		t.Errorf("init failed with OnFailure: %s", got)
	}
	if got := Phase(&s, []Container{exited(0)}, []Container{{Running: true}}, false); got != v1.PodRunning {
		t.Errorf("init done: %s", got)
	}
}

func TestComputeConditionsAndStatuses(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 10, 0, time.UTC)
	earlier := metav1.NewTime(now.Add(-time.Minute))
	pod := &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "p", Generation: 1},
		Spec:       spec(v1.RestartPolicyAlways, 2),
		Status: v1.PodStatus{
			QOSClass: v1.PodQOSBestEffort,
			Conditions: []v1.PodCondition{
				{Type: v1.PodScheduled, Status: v1.ConditionTrue, LastTransitionTime: earlier},
				{Type: v1.PodInitialized, Status: v1.ConditionTrue, LastTransitionTime: earlier},
			},
		},
	}
	in := Input{
		Pod: pod, Now: now, SandboxReady: true, PodIP: "10.88.0.5", HostIP: "10.88.0.1", StartTime: now,
		Containers: []Container{
			{Name: "a", Running: true, Started: true, Ready: true, StartedAt: now, ContainerID: "kubeloop://ns/p/a/0"},
			{Name: "b", Running: true, Started: true, Ready: false, StartedAt: now, RestartCount: 1,
				Last: &Terminated{ExitCode: 137, Signal: 9, Reason: "Error", ContainerID: "kubeloop://ns/p/b/0"}},
		},
	}
	st := Compute(in)
	if st.Phase != v1.PodRunning || st.PodIP != "10.88.0.5" || len(st.PodIPs) != 1 || st.HostIP != "10.88.0.1" {
		t.Fatalf("status basics: %+v", st)
	}
	if st.QOSClass != v1.PodQOSBestEffort {
		t.Error("qosClass not preserved")
	}
	cond := map[v1.PodConditionType]v1.PodCondition{}
	for _, c := range st.Conditions {
		cond[c.Type] = c
	}
	if cond[v1.PodScheduled].Status != v1.ConditionTrue {
		t.Error("foreign condition PodScheduled dropped")
	}
	if lt := cond[v1.PodInitialized].LastTransitionTime; !lt.Equal(&earlier) {
		t.Error("unchanged condition got a new transition time")
	}
	if c := cond[v1.PodReady]; c.Status != v1.ConditionFalse || c.Reason != "ContainersNotReady" || c.Message != "containers with unready status: [b]" {
		t.Errorf("Ready: %+v", c)
	}
	if cond[v1.PodReadyToStartContainers].Status != v1.ConditionTrue {
		t.Error("PodReadyToStartContainers")
	}
	b := st.ContainerStatuses[1]
	if b.RestartCount != 1 || b.State.Running == nil || b.LastTerminationState.Terminated == nil || b.LastTerminationState.Terminated.ExitCode != 137 {
		t.Errorf("container b: %+v", b)
	}
	if b.Image != "python" || b.ImageID == "" || b.Started == nil || !*b.Started {
		t.Errorf("container b image/started: %+v", b)
	}

	// All ready -> Ready True.
	in.Containers[1].Ready = true
	st = Compute(in)
	for _, c := range st.Conditions {
		if (c.Type == v1.PodReady || c.Type == v1.ContainersReady) && c.Status != v1.ConditionTrue {
			t.Errorf("%s not True: %+v", c.Type, c)
		}
	}
}

func TestComputeSucceededAndReadinessGates(t *testing.T) {
	now := time.Now()
	pod := &v1.Pod{Spec: spec(v1.RestartPolicyNever, 1)}
	st := Compute(Input{Pod: pod, Now: now, Containers: []Container{exited(0)}})
	if st.Phase != v1.PodSucceeded {
		t.Fatalf("phase %s", st.Phase)
	}
	for _, c := range st.Conditions {
		if c.Type == v1.PodReady && (c.Status != v1.ConditionFalse || c.Reason != "PodCompleted") {
			t.Errorf("Ready: %+v", c)
		}
	}
	pod = &v1.Pod{Spec: spec(v1.RestartPolicyAlways, 1)}
	pod.Spec.ReadinessGates = []v1.PodReadinessGate{{ConditionType: "example.com/gate"}}
	st = Compute(Input{Pod: pod, Now: now, Containers: []Container{{Running: true, Ready: true, Started: true}}})
	for _, c := range st.Conditions {
		if c.Type == v1.PodReady && (c.Status != v1.ConditionFalse || c.Reason != "ReadinessGatesNotReady") {
			t.Errorf("Ready with gate: %+v", c)
		}
		if c.Type == v1.ContainersReady && c.Status != v1.ConditionTrue {
			t.Errorf("ContainersReady with gate: %+v", c)
		}
	}
}

func TestInitializedCondition(t *testing.T) {
	pod := &v1.Pod{Spec: spec(v1.RestartPolicyAlways, 1)}
	pod.Spec.InitContainers = []v1.Container{{Name: "i1"}, {Name: "i2"}}
	st := Compute(Input{Pod: pod, Now: time.Now(), Init: []Container{exited(0), {Running: true}}, Containers: []Container{{WaitingReason: "PodInitializing"}}})
	for _, c := range st.Conditions {
		if c.Type == v1.PodInitialized && (c.Status != v1.ConditionFalse || c.Message != "containers with incomplete status: [i2]") {
			t.Errorf("Initialized: %+v", c)
		}
	}
	if st.ContainerStatuses[0].State.Waiting.Reason != "PodInitializing" {
		t.Error("app container waiting reason")
	}
	if len(st.InitContainerStatuses) != 2 {
		t.Error("init statuses")
	}
}

func TestSidecarPhase(t *testing.T) {
	always := v1.ContainerRestartPolicyAlways
	s := spec(v1.RestartPolicyNever, 1)
	s.InitContainers = []v1.Container{{Name: "side", RestartPolicy: &always}}
	if got := Phase(&s, []Container{{Running: true}}, []Container{{WaitingReason: "PodInitializing"}}, false); got != v1.PodPending {
		t.Errorf("sidecar not started yet: %s", got)
	}
	if got := Phase(&s, []Container{{Running: true, Started: true}}, []Container{{Running: true}}, false); got != v1.PodRunning {
		t.Errorf("sidecar started: %s", got)
	}
	// Main finished, sidecar stopped by the node: the pod succeeded.
	if got := Phase(&s, []Container{exited(143)}, []Container{exited(0)}, false); got != v1.PodSucceeded {
		t.Errorf("after main completed: %s", got)
	}
}
