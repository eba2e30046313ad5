package inject

import (
	"fmt"
	"slices"

	"sigs.k8s.io/kustomize/kyaml/yaml"

	"github.com/conduitmesh/conduit/pkg/contract"
)

// removeOurs takes out everything a previous injection added, leaving the
// user's fields, order and comments as they were. Empty lists stay, so a
// re-injection puts ours back in the same place.
func removeOurs(template, spec *yaml.RNode) {
	for _, field := range []string{"initContainers", "containers"} {
		list := spec.Field(field)
		if list == nil {
			continue
		}
		y := list.Value.YNode()
		y.Content = slices.DeleteFunc(y.Content, func(c *yaml.Node) bool {
			return isOurs(stringField(yaml.NewRNode(c), "name"))
		})
	}
	labels := []string{contract.LabelControlPlaneNS}
	for _, k := range contract.WorkloadKinds {
		labels = append(labels, contract.WorkloadLabel(k))
	}
	deleteKeys(template, "labels", labels)
	deleteKeys(template, "annotations", []string{contract.AnnotationCreatedBy, contract.AnnotationProxyVersion})
}

func deleteKeys(template *yaml.RNode, field string, keys []string) {
	m, err := template.Pipe(yaml.Lookup("metadata", field))
	if err != nil || m == nil {
		return
	}
	for _, k := range keys {
		_ = m.PipeE(yaml.Clear(k))
	}
}

// addOurs puts in the init step, the proxy and our metadata.
func addOurs(template, spec *yaml.RNode, s podSettings) error {
	initNode, proxyNode := initContainer(s), proxyContainer(s)
	inits, err := spec.Pipe(yaml.LookupCreate(yaml.SequenceNode, "initContainers"))
	if err != nil {
		return err
	}
	// The init step goes first so the redirect is in place before any other
	// container, the proxy included, starts.
	ours := []*yaml.Node{initNode}
	if s.NativeSidecar {
		ours = append(ours, proxyNode)
	} else {
		containers, err := spec.Pipe(yaml.LookupCreate(yaml.SequenceNode, "containers"))
		if err != nil {
			return err
		}
		containers.YNode().Content = append([]*yaml.Node{proxyNode}, containers.YNode().Content...)
	}
	inits.YNode().Content = append(ours, inits.YNode().Content...)

	labels := [][2]string{{contract.LabelControlPlaneNS, s.ControlPlaneNamespace}}
	if s.workloadName != "" {
		labels = append(labels, [2]string{contract.WorkloadLabel(s.workloadKind), s.workloadName})
	}
	if err := setMetadata(template, "labels", labels); err != nil {
		return err
	}
	return setMetadata(template, "annotations", [][2]string{
		{contract.AnnotationCreatedBy, contract.CreatedByPrefix + s.Version},
		{contract.AnnotationProxyVersion, proxyVersion(s.Image, s.Version)},
	})
}

// setMetadata sets string entries of metadata.labels or .annotations,
// quoting values only where YAML needs it.
func setMetadata(template *yaml.RNode, field string, entries [][2]string) error {
	m := ensureMap(ensureMap(template.YNode(), "metadata"), field)
	if m == nil {
		return fmt.Errorf("metadata.%s is not a mapping", field)
	}
	for _, e := range entries {
		if v := child(m, e[0]); v != nil {
			*v = *str(e[1])
			continue
		}
		add(m, e[0], str(e[1]))
	}
	return nil
}

// ensureMap returns the mapping at key in m, adding an empty one when the
// key is missing or null; nil when m or the value is not a mapping.
func ensureMap(m *yaml.Node, key string) *yaml.Node {
	if m == nil || m.Kind != yaml.MappingNode {
		return nil
	}
	v := child(m, key)
	if v == nil {
		v = mapping()
		add(m, key, v)
		return v
	}
	if v.Kind == yaml.ScalarNode && v.Tag == yaml.NodeTagNull {
		*v = *mapping()
	}
	if v.Kind != yaml.MappingNode {
		return nil
	}
	return v
}
