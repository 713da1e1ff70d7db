package agent

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

func TestCredentials(t *testing.T) {
	pod := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns", UID: "u"}}
	c := &v1.Container{Name: "c"}
	cr, err := credentialsFor(pod, c)
	if err != nil || cr.uid != 0 || cr.gid != 0 {
		t.Fatalf("default root: %+v %v", cr, err)
	}
	pod.Spec.SecurityContext = &v1.PodSecurityContext{RunAsNonRoot: ptr.To(true)}
	if _, err := credentialsFor(pod, c); err == nil || !strings.Contains(err.Error(), "runAsNonRoot and image will run as root") {
		t.Fatalf("runAsNonRoot without user: %v", err)
	}
	pod.Spec.SecurityContext.RunAsUser = ptr.To(int64(0))
	if _, err := credentialsFor(pod, c); err == nil || !strings.Contains(err.Error(), "breaks non-root policy") {
		t.Fatalf("runAsNonRoot with uid 0: %v", err)
	}
	pod.Spec.SecurityContext = &v1.PodSecurityContext{
		RunAsUser: ptr.To(int64(1000)), RunAsGroup: ptr.To(int64(1000)), FSGroup: ptr.To(int64(2000)),
		SupplementalGroups: []int64{3000, 2000}, RunAsNonRoot: ptr.To(true),
	}
	c.SecurityContext = &v1.SecurityContext{RunAsUser: ptr.To(int64(65532))}
	cr, err = credentialsFor(pod, c)
	if err != nil || cr.uid != 65532 || cr.gid != 1000 || len(cr.groups) != 2 || cr.groups[0] != 2000 || cr.groups[1] != 3000 {
		t.Fatalf("container wins, fsGroup first, no duplicates: %+v %v", cr, err)
	}
}

func TestShouldRestart(t *testing.T) {
	pod := &v1.Pod{}
	app := &ctr{}
	for policy, want := range map[v1.RestartPolicy][2]bool{
		v1.RestartPolicyAlways:    {true, true},
		v1.RestartPolicyOnFailure: {false, true},
		v1.RestartPolicyNever:     {false, false},
	} {
		pod.Spec.RestartPolicy = policy
		if got := [2]bool{app.shouldRestart(pod, 0), app.shouldRestart(pod, 1)}; got != want {
			t.Errorf("%s: got %v want %v", policy, got, want)
		}
	}
	initC := &ctr{isInit: true}
	pod.Spec.RestartPolicy = v1.RestartPolicyAlways
	if initC.shouldRestart(pod, 0) || !initC.shouldRestart(pod, 1) {
		t.Error("init containers restart only on failure")
	}
	pod.Spec.RestartPolicy = v1.RestartPolicyNever
	if initC.shouldRestart(pod, 1) {
		t.Error("init container with Never must not restart")
	}
	if !(&ctr{isInit: true, sidecar: true}).shouldRestart(pod, 0) {
		t.Error("sidecars always restart")
	}
}

func TestContainerStatusWaitingReasons(t *testing.T) {
	pod := &v1.Pod{}
	c := &ctr{spec: v1.Container{Name: "c"}}
	if s := c.status(pod, "", true); s.WaitingReason != "PodInitializing" {
		t.Errorf("%+v", s)
	}
	c.configErr, c.configReason = NoCommandMessage, "CreateContainerConfigError"
	if s := c.status(pod, "", false); s.WaitingReason != "CreateContainerConfigError" || s.WaitingMessage != NoCommandMessage {
		t.Errorf("%+v", s)
	}
}

func TestLogRuns(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []string{"10.log", "2.log", "0.log", "x.log"} {
		_ = os.WriteFile(filepath.Join(dir, n), nil, 0o644)
	}
	got := logRuns(dir)
	if len(got) != 3 || filepath.Base(got[0]) != "0.log" || filepath.Base(got[2]) != "10.log" {
		t.Fatalf("%v", got)
	}
}
