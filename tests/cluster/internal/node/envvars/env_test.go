package envvars

import (
	"testing"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

type fakeSources struct {
	cms     map[string]*v1.ConfigMap
	secrets map[string]*v1.Secret
}

func (f fakeSources) ConfigMap(ns, name string) (*v1.ConfigMap, error) {
	if cm, ok := f.cms[name]; ok {
		return cm, nil
	}
	return nil, apierrors.NewNotFound(schema.GroupResource{Resource: "configmaps"}, name)
}

func (f fakeSources) Secret(ns, name string) (*v1.Secret, error) {
	if s, ok := f.secrets[name]; ok {
		return s, nil
	}
	return nil, apierrors.NewNotFound(schema.GroupResource{Resource: "secrets"}, name)
}

func ptr[T any](v T) *T { return &v }

func testPod() *v1.Pod {
	return &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: "web-0", Namespace: "ns1", UID: "uid-1",
			Labels:      map[string]string{"app": "web"},
			Annotations: map[string]string{"batch.kubernetes.io/job-completion-index": "3"},
		},
		Spec: v1.PodSpec{NodeName: "kubeloop-node", ServiceAccountName: "sa1"},
	}
}

func toMap(vars []Var) map[string]string {
	m := map[string]string{}
	for _, v := range vars {
		m[v.Name] = v.Value
	}
	return m
}

func TestResolvePrecedenceAndExpansion(t *testing.T) {
	pod := testPod()
	src := fakeSources{
		cms:     map[string]*v1.ConfigMap{"cfg": {Data: map[string]string{"A": "from-cm", "B": "b", "bad=key": "x"}}},
		secrets: map[string]*v1.Secret{"sec": {Data: map[string][]byte{"token": []byte("s3cr3t")}}},
	}
	c := &v1.Container{
		Name: "main",
		EnvFrom: []v1.EnvFromSource{
			{ConfigMapRef: &v1.ConfigMapEnvSource{LocalObjectReference: v1.LocalObjectReference{Name: "cfg"}}},
			{Prefix: "S_", SecretRef: &v1.SecretEnvSource{LocalObjectReference: v1.LocalObjectReference{Name: "sec"}}},
		},
		Env: []v1.EnvVar{
			{Name: "A", Value: "from-env"},
			{Name: "GREETING", Value: "hi $(B) $(KUBERNETES_SERVICE_HOST) $(UNDEF) $$(B)"},
			{Name: "POD", ValueFrom: &v1.EnvVarSource{FieldRef: &v1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
			{Name: "NS", ValueFrom: &v1.EnvVarSource{FieldRef: &v1.ObjectFieldSelector{FieldPath: "metadata.namespace"}}},
			{Name: "UID", ValueFrom: &v1.EnvVarSource{FieldRef: &v1.ObjectFieldSelector{FieldPath: "metadata.uid"}}},
			{Name: "APP", ValueFrom: &v1.EnvVarSource{FieldRef: &v1.ObjectFieldSelector{FieldPath: "metadata.labels['app']"}}},
			{Name: "IDX", ValueFrom: &v1.EnvVarSource{FieldRef: &v1.ObjectFieldSelector{FieldPath: "metadata.annotations['batch.kubernetes.io/job-completion-index']"}}},
			{Name: "NODE", ValueFrom: &v1.EnvVarSource{FieldRef: &v1.ObjectFieldSelector{FieldPath: "spec.nodeName"}}},
			{Name: "SA", ValueFrom: &v1.EnvVarSource{FieldRef: &v1.ObjectFieldSelector{FieldPath: "spec.serviceAccountName"}}},
			{Name: "IP", ValueFrom: &v1.EnvVarSource{FieldRef: &v1.ObjectFieldSelector{FieldPath: "status.podIP"}}},
			{Name: "HOSTIP", ValueFrom: &v1.EnvVarSource{FieldRef: &v1.ObjectFieldSelector{FieldPath: "status.hostIP"}}},
			{Name: "TOKEN", ValueFrom: &v1.EnvVarSource{SecretKeyRef: &v1.SecretKeySelector{LocalObjectReference: v1.LocalObjectReference{Name: "sec"}, Key: "token"}}},
			{Name: "CMB", ValueFrom: &v1.EnvVarSource{ConfigMapKeyRef: &v1.ConfigMapKeySelector{LocalObjectReference: v1.LocalObjectReference{Name: "cfg"}, Key: "B"}}},
			{Name: "KUBERNETES_SERVICE_PORT", Value: "override"},
		},
	}
	opt := Options{
		PodIP: "10.88.0.7", HostIP: "10.88.0.1",
		Service:  []Var{{"KUBERNETES_SERVICE_HOST", "10.88.0.1"}, {"KUBERNETES_SERVICE_PORT", "6443"}},
		Defaults: []Var{{"PATH", "/usr/bin"}, {"HOSTNAME", "web-0"}, {"A", "default"}},
	}
	vars, expand, err := Resolve(pod, c, src, opt)
	if err != nil {
		t.Fatal(err)
	}
	m := toMap(vars)
	want := map[string]string{
		"A": "from-env", "B": "b", "S_token": "s3cr3t",
		"GREETING": "hi b 10.88.0.1 $(UNDEF) $(B)",
		"POD":      "web-0", "NS": "ns1", "UID": "uid-1", "APP": "web", "IDX": "3",
		"NODE": "kubeloop-node", "SA": "sa1", "IP": "10.88.0.7", "HOSTIP": "10.88.0.1",
		"TOKEN": "s3cr3t", "CMB": "b",
		"KUBERNETES_SERVICE_HOST": "10.88.0.1", "KUBERNETES_SERVICE_PORT": "override",
		"PATH": "/usr/bin", "HOSTNAME": "web-0",
	}
	for k, v := range want {
		if m[k] != v {
			t.Errorf("%s = %q, want %q", k, m[k], v)
		}
	}
	if _, ok := m["bad=key"]; ok {
		t.Error("invalid envFrom key was not skipped")
	}
	if _, ok := expand["PATH"]; ok {
		t.Error("image defaults must not take part in command expansion")
	}
	args := ExpandAll([]string{"--pod=$(POD)", "$(NOPE)"}, expand)
	if args[0] != "--pod=web-0" || args[1] != "$(NOPE)" {
		t.Errorf("args = %v", args)
	}
}

func TestResolveOptionalAndErrors(t *testing.T) {
	pod := testPod()
	src := fakeSources{cms: map[string]*v1.ConfigMap{"cfg": {Data: map[string]string{"A": "1"}}}}
	ok := &v1.Container{Name: "c", Env: []v1.EnvVar{
		{Name: "X", ValueFrom: &v1.EnvVarSource{ConfigMapKeyRef: &v1.ConfigMapKeySelector{LocalObjectReference: v1.LocalObjectReference{Name: "missing"}, Key: "k", Optional: ptr(true)}}},
		{Name: "Y", ValueFrom: &v1.EnvVarSource{ConfigMapKeyRef: &v1.ConfigMapKeySelector{LocalObjectReference: v1.LocalObjectReference{Name: "cfg"}, Key: "nokey", Optional: ptr(true)}}},
	}, EnvFrom: []v1.EnvFromSource{{SecretRef: &v1.SecretEnvSource{LocalObjectReference: v1.LocalObjectReference{Name: "nosecret"}, Optional: ptr(true)}}}}
	vars, _, err := Resolve(pod, ok, src, Options{})
	if err != nil || len(vars) != 0 {
		t.Fatalf("optional refs: vars=%v err=%v", vars, err)
	}
	cases := map[string]v1.EnvVar{
		`secret "nosecret" not found`:                  {Name: "X", ValueFrom: &v1.EnvVarSource{SecretKeyRef: &v1.SecretKeySelector{LocalObjectReference: v1.LocalObjectReference{Name: "nosecret"}, Key: "k"}}},
		`couldn't find key nokey in ConfigMap ns1/cfg`: {Name: "X", ValueFrom: &v1.EnvVarSource{ConfigMapKeyRef: &v1.ConfigMapKeySelector{LocalObjectReference: v1.LocalObjectReference{Name: "cfg"}, Key: "nokey"}}},
	}
	for want, ev := range cases {
		_, _, err := Resolve(pod, &v1.Container{Name: "c", Env: []v1.EnvVar{ev}}, src, Options{})
		if err == nil || err.Error() != want || !IsConfigError(err) {
			t.Errorf("got %v, want %q", err, want)
		}
	}
}

func TestResourceFieldRef(t *testing.T) {
	pod := testPod()
	pod.Spec.Containers = []v1.Container{{Name: "c", Resources: v1.ResourceRequirements{
		Limits: v1.ResourceList{v1.ResourceMemory: resource.MustParse("64Mi")},
	}}}
	c := &pod.Spec.Containers[0]
	c.Env = []v1.EnvVar{
		{Name: "MEM", ValueFrom: &v1.EnvVarSource{ResourceFieldRef: &v1.ResourceFieldSelector{Resource: "limits.memory", Divisor: resource.MustParse("1Mi")}}},
		{Name: "CPU", ValueFrom: &v1.EnvVarSource{ResourceFieldRef: &v1.ResourceFieldSelector{Resource: "limits.cpu"}}},
	}
	vars, _, err := Resolve(pod, c, fakeSources{}, Options{NodeAllocatable: v1.ResourceList{v1.ResourceCPU: resource.MustParse("2"), v1.ResourceMemory: resource.MustParse("1Gi")}})
	if err != nil {
		t.Fatal(err)
	}
	m := toMap(vars)
	if m["MEM"] != "64" || m["CPU"] != "2" {
		t.Fatalf("got %v", m)
	}
}

func TestFieldValueUnsupported(t *testing.T) {
	if _, err := FieldValue(testPod(), "spec.bogus", Options{}); err == nil {
		t.Fatal("expected error")
	}
}
