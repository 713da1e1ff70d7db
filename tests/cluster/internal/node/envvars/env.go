// Package envvars computes a container's environment and expands $(VAR)
// references in command, args and subPathExpr the way the kubelet does
// (pkg/kubelet/kubelet_pods.go makeEnvironmentVariables):
//
//   - envFrom entries first (later sources override earlier ones; keys that
//     are not valid variable names are skipped),
//   - then env entries in order, each value $(VAR)-expanded against what is
//     defined so far plus the service variables,
//   - then the service variables (KUBERNETES_SERVICE_HOST, ...) unless already
//     defined,
//   - and finally the "image" defaults (PATH, HOME, HOSTNAME), which anything
//     from the pod overrides.
package envvars

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/kubernetes/pkg/api/v1/resource"
	"k8s.io/kubernetes/pkg/fieldpath"
	"k8s.io/kubernetes/third_party/forked/golang/expansion"
)

// Sources fetches referenced objects. Implementations return an error for
// which apierrors.IsNotFound is true when the object does not exist.
type Sources interface {
	ConfigMap(namespace, name string) (*v1.ConfigMap, error)
	Secret(namespace, name string) (*v1.Secret, error)
}

// Var is one resolved variable.
type Var struct{ Name, Value string }

// Options are the node-provided inputs.
type Options struct {
	PodIP   string
	PodIPs  []string
	HostIP  string
	HostIPs []string
	// NodeAllocatable fills limits a container does not set, for resourceFieldRef.
	NodeAllocatable v1.ResourceList
	// Service are the service variables (KUBERNETES_SERVICE_HOST, ...): they
	// take part in $(VAR) expansion and are overridden by the pod's own.
	Service []Var
	// Defaults are the "image" defaults (PATH, HOME, HOSTNAME): lowest
	// precedence, not visible to $(VAR) expansion (as with the kubelet).
	Defaults []Var
}

// ConfigError is a CreateContainerConfigError.
type ConfigError struct{ msg string }

func (e *ConfigError) Error() string { return e.msg }

func cfgErr(format string, a ...any) error { return &ConfigError{fmt.Sprintf(format, a...)} }

// IsConfigError reports whether err is a *ConfigError.
func IsConfigError(err error) bool {
	var ce *ConfigError
	return errors.As(err, &ce)
}

// Resolve returns the container's environment, sorted by name, and the
// map used to expand command/args.
func Resolve(pod *v1.Pod, c *v1.Container, src Sources, opt Options) ([]Var, map[string]string, error) {
	tmp := map[string]string{}
	svc := map[string]string{}
	for _, v := range opt.Service {
		svc[v.Name] = v.Value
	}

	for _, ef := range c.EnvFrom {
		switch {
		case ef.ConfigMapRef != nil:
			ref := ef.ConfigMapRef
			optional := ref.Optional != nil && *ref.Optional
			cm, err := src.ConfigMap(pod.Namespace, ref.Name)
			if err != nil {
				if apierrors.IsNotFound(err) && optional {
					continue
				}
				return nil, nil, fetchErr("configmap", ref.Name, err)
			}
			for k, v := range cm.Data {
				if name := ef.Prefix + k; validName(name) {
					tmp[name] = v
				}
			}
		case ef.SecretRef != nil:
			ref := ef.SecretRef
			optional := ref.Optional != nil && *ref.Optional
			s, err := src.Secret(pod.Namespace, ref.Name)
			if err != nil {
				if apierrors.IsNotFound(err) && optional {
					continue
				}
				return nil, nil, fetchErr("secret", ref.Name, err)
			}
			for k, v := range s.Data {
				if name := ef.Prefix + k; validName(name) {
					tmp[name] = string(v)
				}
			}
		}
	}

	mapping := expansion.MappingFuncFor(tmp, svc)
	for _, e := range c.Env {
		if e.ValueFrom == nil {
			tmp[e.Name] = expansion.Expand(e.Value, mapping)
			continue
		}
		vf := e.ValueFrom
		switch {
		case vf.FieldRef != nil:
			val, err := FieldValue(pod, vf.FieldRef.FieldPath, opt)
			if err != nil {
				return nil, nil, cfgErr("env %s: %v", e.Name, err)
			}
			tmp[e.Name] = val
		case vf.ResourceFieldRef != nil:
			val, err := resource.ExtractResourceValueByContainerNameAndNodeAllocatable(vf.ResourceFieldRef, pod, c.Name, opt.NodeAllocatable)
			if err != nil {
				return nil, nil, cfgErr("env %s: %v", e.Name, err)
			}
			tmp[e.Name] = val
		case vf.ConfigMapKeyRef != nil:
			ref := vf.ConfigMapKeyRef
			v, skip, err := keyOf("ConfigMap", pod.Namespace, ref.Name, ref.Key, ref.Optional, func() (map[string]string, error) {
				cm, err := src.ConfigMap(pod.Namespace, ref.Name)
				if err != nil {
					return nil, err
				}
				return cm.Data, nil
			})
			if err != nil {
				return nil, nil, err
			}
			if !skip {
				tmp[e.Name] = v
			}
		case vf.SecretKeyRef != nil:
			ref := vf.SecretKeyRef
			v, skip, err := keyOf("Secret", pod.Namespace, ref.Name, ref.Key, ref.Optional, func() (map[string]string, error) {
				secret, err := src.Secret(pod.Namespace, ref.Name)
				if err != nil {
					return nil, err
				}
				data := make(map[string]string, len(secret.Data))
				for k, b := range secret.Data {
					data[k] = string(b)
				}
				return data, nil
			})
			if err != nil {
				return nil, nil, err
			}
			if !skip {
				tmp[e.Name] = v
			}
		case vf.FileKeyRef != nil:
			return nil, nil, cfgErr("env %s: fileKeyRef is not supported by kubeloop-node", e.Name)
		}
	}
	for k, v := range svc {
		if _, ok := tmp[k]; !ok {
			tmp[k] = v
		}
	}
	// The expansion map for command/args is what the kubelet passes to the
	// runtime: pod-defined + service variables (not image defaults).
	expand := make(map[string]string, len(tmp))
	for k, v := range tmp {
		expand[k] = v
	}
	for _, d := range opt.Defaults {
		if _, ok := tmp[d.Name]; !ok {
			tmp[d.Name] = d.Value
		}
	}
	out := make([]Var, 0, len(tmp))
	for k, v := range tmp {
		out = append(out, Var{k, v})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, expand, nil
}

// fetchErr words an object lookup failure like the kubelet does.
func fetchErr(kind, name string, err error) error {
	if apierrors.IsNotFound(err) {
		return cfgErr("%s %q not found", kind, name)
	}
	return cfgErr("failed to get %s %q: %v", kind, name, err)
}

// Expand applies $(VAR) expansion ($$ escapes a dollar) with vars.
func Expand(s string, vars map[string]string) string {
	return expansion.Expand(s, expansion.MappingFuncFor(vars))
}

// ExpandAll expands each string of in.
func ExpandAll(in []string, vars map[string]string) []string {
	if in == nil {
		return nil
	}
	m := expansion.MappingFuncFor(vars)
	out := make([]string, len(in))
	for i, s := range in {
		out[i] = expansion.Expand(s, m)
	}
	return out
}

// FieldValue resolves a downward-API fieldRef path for pod.
func FieldValue(pod *v1.Pod, path string, opt Options) (string, error) {
	switch path {
	case "spec.nodeName":
		return pod.Spec.NodeName, nil
	case "spec.serviceAccountName":
		return pod.Spec.ServiceAccountName, nil
	case "status.hostIP":
		return opt.HostIP, nil
	case "status.hostIPs":
		return strings.Join(nonEmpty(opt.HostIPs, opt.HostIP), ","), nil
	case "status.podIP":
		return opt.PodIP, nil
	case "status.podIPs":
		return strings.Join(nonEmpty(opt.PodIPs, opt.PodIP), ","), nil
	}
	if strings.HasPrefix(path, "metadata.") {
		return fieldpath.ExtractFieldPathAsString(pod, path)
	}
	return "", fmt.Errorf("unsupported fieldPath %q", path)
}

func nonEmpty(list []string, single string) []string {
	if len(list) > 0 {
		return list
	}
	if single == "" {
		return nil
	}
	return []string{single}
}

// validName accepts what relaxed environment-variable validation accepts:
// printable ASCII other than '=', not empty.
func validName(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if r < 32 || r > 126 || r == '=' {
			return false
		}
	}
	return true
}

// Strings renders vars as KEY=VALUE.
func Strings(vars []Var) []string {
	out := make([]string, len(vars))
	for i, v := range vars {
		out[i] = v.Name + "=" + v.Value
	}
	return out
}

// keyOf reads one key of a ConfigMap or Secret for an env var, the way the
// kubelet does: an optional reference to a missing object or key is skipped
// (skip=true); a required one is an error naming the object and key.
func keyOf(kind, namespace, name, key string, optionalRef *bool, data func() (map[string]string, error)) (value string, skip bool, err error) {
	optional := optionalRef != nil && *optionalRef
	values, err := data()
	if err != nil {
		if apierrors.IsNotFound(err) && optional {
			return "", true, nil
		}
		return "", false, fetchErr(strings.ToLower(kind), name, err)
	}
	v, ok := values[key]
	if !ok {
		if optional {
			return "", true, nil
		}
		return "", false, cfgErr("couldn't find key %v in %s %v/%v", key, kind, namespace, name)
	}
	return v, false, nil
}
