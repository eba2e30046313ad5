package inject

import (
	"fmt"
	"strings"

	"sigs.k8s.io/kustomize/kyaml/yaml"
)

// workloadKind says where a kind keeps its pod template.
type workloadKind struct {
	group string   // API group ("" for the core group)
	path  []string // fields from the resource to the pod template; empty for a Pod
}

var workloadKinds = map[string]workloadKind{
	"Pod":                   {"", nil},
	"ReplicationController": {"", []string{"spec", "template"}},
	"Deployment":            {"apps", []string{"spec", "template"}},
	"StatefulSet":           {"apps", []string{"spec", "template"}},
	"DaemonSet":             {"apps", []string{"spec", "template"}},
	"ReplicaSet":            {"apps", []string{"spec", "template"}},
	"Job":                   {"batch", []string{"spec", "template"}},
	"CronJob":               {"batch", []string{"spec", "jobTemplate", "spec", "template"}},
}

// workloadOf returns how to reach the pod template of a resource, or false
// for resources the injector passes through.
func workloadOf(m yaml.ResourceMeta) (workloadKind, bool) {
	w, ok := workloadKinds[m.Kind]
	if !ok {
		return w, false
	}
	group, _, hasGroup := strings.Cut(m.APIVersion, "/")
	if !hasGroup {
		group = ""
	}
	return w, group == w.group
}

// templatePath is the dotted field path of the pod template, for messages.
func (w workloadKind) templatePath() string {
	if len(w.path) == 0 {
		return ""
	}
	return strings.Join(w.path, ".") + "."
}

// describe names a resource in messages: Deployment/web in namespace "x".
func describe(m yaml.ResourceMeta) string {
	s := m.Kind + "/" + m.Name
	if m.Namespace != "" {
		s += fmt.Sprintf(" in namespace %q", m.Namespace)
	}
	return s
}
