// Package volume builds the content of configMap, secret, downwardAPI and
// projected volumes (pure payload builders), writes it atomically into a
// directory the way the kubelet's AtomicWriter does (..data symlink swap,
// so a refreshed token or config map is seen all at once), and applies
// fsGroup ownership.
package volume

import (
	"fmt"
	"path"
	"sort"
	"strings"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/kubernetes/pkg/api/v1/resource"
	"k8s.io/kubernetes/pkg/fieldpath"

	"kubeloop.io/testcluster/internal/node/envvars"
)

// DefaultMode for configMap, secret, downwardAPI and projected volumes (0644).
const DefaultMode int32 = 0o644

// File is one file of a payload.
type File struct {
	Data   []byte
	Mode   int32
	FsUser *int64 // owner, when set
}

// Payload maps relative paths to files.
type Payload map[string]File

// Getter fetches what the payload builders need. ConfigMap and Secret
// return errors for which apierrors.IsNotFound is true when missing.
type Getter interface {
	ConfigMap(namespace, name string) (*v1.ConfigMap, error)
	Secret(namespace, name string) (*v1.Secret, error)
	// Token returns a service-account token bound to the pod.
	Token(pod *v1.Pod, audience string, expirationSeconds int64) (string, error)
}

func modeOr(m *int32, def int32) int32 {
	if m != nil {
		return *m
	}
	return def
}

// ConfigMapPayload is the content of a configMap volume (or projection).
func ConfigMapPayload(ns string, name string, items []v1.KeyToPath, optional *bool, defaultMode int32, g Getter) (Payload, error) {
	cm, err := g.ConfigMap(ns, name)
	if err != nil {
		if apierrors.IsNotFound(err) && optional != nil && *optional {
			return Payload{}, nil
		}
		if apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("configmap %q not found", name)
		}
		return nil, fmt.Errorf("failed to get configmap %q: %w", name, err)
	}
	data := map[string][]byte{}
	for k, v := range cm.Data {
		data[k] = []byte(v)
	}
	for k, v := range cm.BinaryData {
		data[k] = v
	}
	return keyedPayload("configmap", ns, name, data, items, optional, defaultMode)
}

// SecretPayload is the content of a secret volume (or projection).
func SecretPayload(ns string, name string, items []v1.KeyToPath, optional *bool, defaultMode int32, g Getter) (Payload, error) {
	s, err := g.Secret(ns, name)
	if err != nil {
		if apierrors.IsNotFound(err) && optional != nil && *optional {
			return Payload{}, nil
		}
		if apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("secret %q not found", name)
		}
		return nil, fmt.Errorf("failed to get secret %q: %w", name, err)
	}
	return keyedPayload("secret", ns, name, s.Data, items, optional, defaultMode)
}

func keyedPayload(kind, ns, name string, data map[string][]byte, items []v1.KeyToPath, optional *bool, defaultMode int32) (Payload, error) {
	out := Payload{}
	if len(items) == 0 {
		for k, v := range data {
			out[k] = File{Data: v, Mode: defaultMode}
		}
		return out, nil
	}
	for _, it := range items {
		v, ok := data[it.Key]
		if !ok {
			if optional != nil && *optional {
				continue
			}
			return nil, fmt.Errorf("configured to use key %s of %s %s/%s, but the key does not exist", it.Key, kind, ns, name)
		}
		out[it.Path] = File{Data: v, Mode: modeOr(it.Mode, defaultMode)}
	}
	return out, nil
}

// DownwardAPIPayload is the content of a downwardAPI volume (or projection).
func DownwardAPIPayload(pod *v1.Pod, items []v1.DownwardAPIVolumeFile, defaultMode int32, opt envvars.Options) (Payload, error) {
	out := Payload{}
	for _, it := range items {
		var val string
		var err error
		switch {
		case it.FieldRef != nil:
			switch it.FieldRef.FieldPath {
			case "metadata.labels":
				val = fieldpath.FormatMap(pod.Labels)
			case "metadata.annotations":
				val = fieldpath.FormatMap(pod.Annotations)
			default:
				val, err = envvars.FieldValue(pod, it.FieldRef.FieldPath, opt)
			}
		case it.ResourceFieldRef != nil:
			val, err = resource.ExtractResourceValueByContainerNameAndNodeAllocatable(it.ResourceFieldRef, pod, it.ResourceFieldRef.ContainerName, opt.NodeAllocatable)
		}
		if err != nil {
			return nil, fmt.Errorf("downward API item %q: %w", it.Path, err)
		}
		out[it.Path] = File{Data: []byte(val), Mode: modeOr(it.Mode, defaultMode)}
	}
	return out, nil
}

// TokenOwner is the uid a projected token file is chowned to: with no
// fsGroup, when every container runs as the same explicit user (as the
// kubelet does, so a 0600 token stays readable).
func TokenOwner(pod *v1.Pod) *int64 {
	psc := pod.Spec.SecurityContext
	if psc != nil && psc.FSGroup != nil {
		return nil
	}
	var uid *int64
	all := append(append([]v1.Container{}, pod.Spec.InitContainers...), pod.Spec.Containers...)
	for _, c := range all {
		var u *int64
		if c.SecurityContext != nil && c.SecurityContext.RunAsUser != nil {
			u = c.SecurityContext.RunAsUser
		} else if psc != nil {
			u = psc.RunAsUser
		}
		if u == nil {
			return nil
		}
		if uid != nil && *uid != *u {
			return nil
		}
		uid = u
	}
	return uid
}

// ProjectedPayload is the content of a projected volume.
func ProjectedPayload(pod *v1.Pod, src *v1.ProjectedVolumeSource, g Getter, opt envvars.Options) (Payload, error) {
	mode := modeOr(src.DefaultMode, DefaultMode)
	out := Payload{}
	merge := func(p Payload) {
		for k, v := range p {
			out[k] = v
		}
	}
	for _, s := range src.Sources {
		switch {
		case s.ConfigMap != nil:
			p, err := ConfigMapPayload(pod.Namespace, s.ConfigMap.Name, s.ConfigMap.Items, s.ConfigMap.Optional, mode, g)
			if err != nil {
				return nil, err
			}
			merge(p)
		case s.Secret != nil:
			p, err := SecretPayload(pod.Namespace, s.Secret.Name, s.Secret.Items, s.Secret.Optional, mode, g)
			if err != nil {
				return nil, err
			}
			merge(p)
		case s.DownwardAPI != nil:
			p, err := DownwardAPIPayload(pod, s.DownwardAPI.Items, mode, opt)
			if err != nil {
				return nil, err
			}
			merge(p)
		case s.ServiceAccountToken != nil:
			t := s.ServiceAccountToken
			exp := int64(3600)
			if t.ExpirationSeconds != nil {
				exp = *t.ExpirationSeconds
			}
			tok, err := g.Token(pod, t.Audience, exp)
			if err != nil {
				return nil, fmt.Errorf("failed to fetch token: %w", err)
			}
			out[t.Path] = File{Data: []byte(tok), Mode: mode, FsUser: TokenOwner(pod)}
		case s.ClusterTrustBundle != nil:
			return nil, fmt.Errorf("clusterTrustBundle projections are not supported by kubeloop-node")
		case s.PodCertificate != nil:
			return nil, fmt.Errorf("podCertificate projections are not supported by kubeloop-node")
		}
	}
	return out, nil
}

// ValidatePaths rejects absolute paths, ".." elements and paths starting
// with "..", which the atomic writer reserves.
func ValidatePaths(p Payload) error {
	for k := range p {
		if k == "" || path.IsAbs(k) {
			return fmt.Errorf("invalid path %q", k)
		}
		for _, el := range strings.Split(k, "/") {
			if el == ".." {
				return fmt.Errorf("path %q must not contain '..'", k)
			}
		}
		if strings.HasPrefix(k, "..") {
			return fmt.Errorf("path %q must not start with '..'", k)
		}
	}
	return nil
}

// SortedPaths lists a payload's paths.
func SortedPaths(p Payload) []string {
	keys := make([]string, 0, len(p))
	for k := range p {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
