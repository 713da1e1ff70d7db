package volume

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"kubeloop.io/testcluster/internal/node/envvars"
)

type fakeGetter struct {
	cms     map[string]*v1.ConfigMap
	secrets map[string]*v1.Secret
	tokens  int
}

func (f *fakeGetter) ConfigMap(ns, name string) (*v1.ConfigMap, error) {
	if c, ok := f.cms[name]; ok {
		return c, nil
	}
	return nil, apierrors.NewNotFound(schema.GroupResource{Resource: "configmaps"}, name)
}
func (f *fakeGetter) Secret(ns, name string) (*v1.Secret, error) {
	if s, ok := f.secrets[name]; ok {
		return s, nil
	}
	return nil, apierrors.NewNotFound(schema.GroupResource{Resource: "secrets"}, name)
}
func (f *fakeGetter) Token(pod *v1.Pod, aud string, exp int64) (string, error) {
	f.tokens++
	return "tok-" + string(pod.UID), nil
}

func ptr[T any](v T) *T { return &v }

func TestConfigMapAndSecretPayloads(t *testing.T) {
	g := &fakeGetter{
		cms:     map[string]*v1.ConfigMap{"cfg": {Data: map[string]string{"a": "1", "b": "2"}, BinaryData: map[string][]byte{"bin": {0, 1}}}},
		secrets: map[string]*v1.Secret{"sec": {Data: map[string][]byte{"password": []byte("x")}}},
	}
	p, err := ConfigMapPayload("ns", "cfg", nil, nil, DefaultMode, g)
	if err != nil || len(p) != 3 || string(p["a"].Data) != "1" || p["a"].Mode != 0o644 {
		t.Fatalf("%v %v", p, err)
	}
	p, err = ConfigMapPayload("ns", "cfg", []v1.KeyToPath{{Key: "b", Path: "sub/b.txt", Mode: ptr(int32(0o600))}}, nil, DefaultMode, g)
	if err != nil || len(p) != 1 || p["sub/b.txt"].Mode != 0o600 {
		t.Fatalf("%v %v", p, err)
	}
	if _, err := ConfigMapPayload("ns", "cfg", []v1.KeyToPath{{Key: "zz", Path: "z"}}, nil, DefaultMode, g); err == nil {
		t.Fatal("missing key accepted")
	}
	if _, err := ConfigMapPayload("ns", "nope", nil, nil, DefaultMode, g); err == nil || !strings.Contains(err.Error(), `configmap "nope" not found`) {
		t.Fatalf("missing configmap: %v", err)
	}
	if p, err := SecretPayload("ns", "nope", nil, ptr(true), DefaultMode, g); err != nil || len(p) != 0 {
		t.Fatal("optional secret")
	}
	p, err = SecretPayload("ns", "sec", nil, nil, 0o400, g)
	if err != nil || string(p["password"].Data) != "x" || p["password"].Mode != 0o400 {
		t.Fatalf("%v %v", p, err)
	}
}

func TestProjectedServiceAccountVolume(t *testing.T) {
	g := &fakeGetter{cms: map[string]*v1.ConfigMap{"kube-root-ca.crt": {Data: map[string]string{"ca.crt": "CA"}}}}
	pod := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns1", UID: "u1", Labels: map[string]string{"b": "2", "a": "1"}}}
	pod.Spec.SecurityContext = &v1.PodSecurityContext{RunAsUser: ptr(int64(65532))}
	pod.Spec.Containers = []v1.Container{{Name: "c"}}
	src := &v1.ProjectedVolumeSource{DefaultMode: ptr(int32(0o644)), Sources: []v1.VolumeProjection{
		{ServiceAccountToken: &v1.ServiceAccountTokenProjection{Path: "token", ExpirationSeconds: ptr(int64(3607))}},
		{ConfigMap: &v1.ConfigMapProjection{LocalObjectReference: v1.LocalObjectReference{Name: "kube-root-ca.crt"}, Items: []v1.KeyToPath{{Key: "ca.crt", Path: "ca.crt"}}}},
		{DownwardAPI: &v1.DownwardAPIProjection{Items: []v1.DownwardAPIVolumeFile{
			{Path: "namespace", FieldRef: &v1.ObjectFieldSelector{FieldPath: "metadata.namespace"}},
			{Path: "labels", FieldRef: &v1.ObjectFieldSelector{FieldPath: "metadata.labels"}},
		}}},
	}}
	p, err := ProjectedPayload(pod, src, g, envvars.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if string(p["token"].Data) != "tok-u1" || string(p["ca.crt"].Data) != "CA" || string(p["namespace"].Data) != "ns1" {
		t.Fatalf("%v", p)
	}
	if string(p["labels"].Data) != "a=\"1\"\nb=\"2\"" {
		t.Fatalf("labels: %q", p["labels"].Data)
	}
	if p["token"].FsUser == nil || *p["token"].FsUser != 65532 {
		t.Fatal("token owner should be the pod's single runAsUser")
	}
	pod.Spec.SecurityContext.FSGroup = ptr(int64(65532))
	if TokenOwner(pod) != nil {
		t.Fatal("with fsGroup the token is group-owned, not user-owned")
	}
}

func TestWriteAtomic(t *testing.T) {
	dir := t.TempDir()
	changed, err := WriteAtomic(dir, Payload{"a": {Data: []byte("1"), Mode: 0o644}, "sub/b": {Data: []byte("2"), Mode: 0o600}}, nil)
	if err != nil || !changed {
		t.Fatal(changed, err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "a")); string(b) != "1" {
		t.Fatal("a")
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "sub", "b")); string(b) != "2" {
		t.Fatal("sub/b")
	}
	st, _ := os.Stat(filepath.Join(dir, "sub", "b"))
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v", st.Mode())
	}
	changed, err = WriteAtomic(dir, Payload{"a": {Data: []byte("1"), Mode: 0o644}, "sub/b": {Data: []byte("2"), Mode: 0o600}}, nil)
	if err != nil || changed {
		t.Fatal("identical payload rewritten", err)
	}
	changed, err = WriteAtomic(dir, Payload{"a": {Data: []byte("new"), Mode: 0o644}}, nil)
	if err != nil || !changed {
		t.Fatal(changed, err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "a")); string(b) != "new" {
		t.Fatal("update not visible")
	}
	if _, err := os.Lstat(filepath.Join(dir, "sub")); !os.IsNotExist(err) {
		t.Fatal("stale top-level link kept")
	}
	ents, _ := os.ReadDir(dir)
	hidden := 0
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), "..") && e.Name() != "..data" {
			hidden++
		}
	}
	if hidden != 1 {
		t.Fatalf("old data dirs not cleaned: %d", hidden)
	}
	if _, err := WriteAtomic(dir, Payload{"../x": {}}, nil); err == nil {
		t.Fatal("path escape accepted")
	}
}
