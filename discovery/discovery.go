// Package discovery finds the meshed pods' proxy admin ports and serves them
// in Prometheus's HTTP service-discovery format. It reads pods from the
// Kubernetes API with the pod's own service-account token, so it works with
// any Prometheus build, including Debian's, which has no Kubernetes
// discovery.
package discovery

import (
	"net"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/conduitmesh/conduit/pkg/contract"
)

// Pod is the part of a Kubernetes Pod that discovery reads.
type Pod struct {
	Metadata struct {
		Name      string            `json:"name"`
		Namespace string            `json:"namespace"`
		Labels    map[string]string `json:"labels"`
	} `json:"metadata"`
	Spec struct {
		Containers     []Container `json:"containers"`
		InitContainers []Container `json:"initContainers"`
	} `json:"spec"`
	Status struct {
		Phase string `json:"phase"`
		PodIP string `json:"podIP"`
	} `json:"status"`
}

// Container is the part of a container that discovery reads.
type Container struct {
	Name  string `json:"name"`
	Ports []struct {
		Name          string `json:"name"`
		ContainerPort int    `json:"containerPort"`
	} `json:"ports"`
}

// TargetGroup is one entry of Prometheus's HTTP SD response.
type TargetGroup struct {
	Targets []string          `json:"targets"`
	Labels  map[string]string `json:"labels"`
}

// Targets returns one group per running pod that has the proxy container
// (as a container or a native-sidecar init container) with its admin port,
// sorted by namespace and name. Each is labelled with the namespace, the pod
// and the pod's workload (deployment="web", from the injector's
// conduit.io/proxy-<kind> label).
func Targets(pods []Pod) []TargetGroup {
	groups := []TargetGroup{}
	for _, p := range pods {
		if p.Status.Phase != "Running" || p.Status.PodIP == "" {
			continue
		}
		port := adminPort(p)
		if port == 0 {
			continue
		}
		labels := map[string]string{
			contract.LabelNamespace: p.Metadata.Namespace,
			contract.LabelPod:       p.Metadata.Name,
		}
		for k, v := range p.Metadata.Labels {
			kind, ok := strings.CutPrefix(k, contract.LabelWorkloadPrefix)
			if ok && slices.Contains(contract.WorkloadKinds, kind) {
				labels[kind] = v
			}
		}
		groups = append(groups, TargetGroup{
			Targets: []string{net.JoinHostPort(p.Status.PodIP, strconv.Itoa(port))},
			Labels:  labels,
		})
	}
	sort.Slice(groups, func(i, j int) bool {
		a, b := groups[i].Labels, groups[j].Labels
		if a[contract.LabelNamespace] != b[contract.LabelNamespace] {
			return a[contract.LabelNamespace] < b[contract.LabelNamespace]
		}
		return a[contract.LabelPod] < b[contract.LabelPod]
	})
	return groups
}

func adminPort(p Pod) int {
	for _, c := range append(slices.Clone(p.Spec.InitContainers), p.Spec.Containers...) {
		if c.Name != contract.ProxyContainerName {
			continue
		}
		for _, port := range c.Ports {
			if port.Name == contract.ProxyAdminPortName {
				return port.ContainerPort
			}
		}
	}
	return 0
}
