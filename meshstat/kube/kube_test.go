package kube

import (
	"regexp"
	"testing"

	"github.com/conduitmesh/conduit/pkg/contract"
	corev1 "k8s.io/api/core/v1"
)

func TestParseKind(t *testing.T) {
	for in, want := range map[string]Kind{
		"deploy": Deployment, "Deployments": Deployment, "sts": StatefulSet, "daemonset": DaemonSet,
		"jobs": Job, "po": Pod, "pod": Pod, "ns": Namespace, "namespace": Namespace,
	} {
		if got, err := ParseKind(in); err != nil || got != want {
			t.Errorf("ParseKind(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"svc", "rs", ""} {
		if _, err := ParseKind(bad); err == nil {
			t.Errorf("ParseKind(%q) accepted", bad)
		}
	}
	if k, n, err := ParseRef("sts/db"); err != nil || k != StatefulSet || n != "db" {
		t.Errorf("ParseRef(sts/db) = %v %q %v", k, n, err)
	}
	for _, bad := range []string{"web", "deploy/", "deploy/a/b", "x/y"} {
		if _, _, err := ParseRef(bad); err == nil {
			t.Errorf("ParseRef(%q) accepted", bad)
		}
	}
	// The workload kinds' metric labels are the kinds the proxy reports.
	for _, k := range []Kind{Deployment, StatefulSet, DaemonSet, Job} {
		found := false
		for _, w := range contract.WorkloadKinds {
			found = found || w == k.MetricLabel()
		}
		if !found {
			t.Errorf("%s: metric label %q is not in contract.WorkloadKinds", k, k.MetricLabel())
		}
	}
}

func TestIsMeshed(t *testing.T) {
	always := corev1.ContainerRestartPolicyAlways
	sidecar := corev1.Pod{Spec: corev1.PodSpec{
		InitContainers: []corev1.Container{{Name: contract.InitContainerName}, {Name: contract.ProxyContainerName, RestartPolicy: &always}},
		Containers:     []corev1.Container{{Name: "app"}},
	}}
	classic := corev1.Pod{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app"}, {Name: contract.ProxyContainerName}}}}
	plain := corev1.Pod{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app"}}}}
	if !IsMeshed(&sidecar) || !IsMeshed(&classic) || IsMeshed(&plain) {
		t.Errorf("IsMeshed: native sidecar %v, container %v, none %v", IsMeshed(&sidecar), IsMeshed(&classic), IsMeshed(&plain))
	}
}

func TestAuthorityRegexp(t *testing.T) {
	re := regexp.MustCompile("^(?:" + AuthorityRegexp("emojivoto", []string{"voting-svc", "web.svc"}) + ")$")
	for _, a := range []string{"voting-svc", "voting-svc:8080", "voting-svc.emojivoto", "voting-svc.emojivoto.svc",
		"voting-svc.emojivoto.svc.cluster.local:8080", "web.svc.emojivoto:80"} {
		if !re.MatchString(a) {
			t.Errorf("%q should match", a)
		}
	}
	for _, a := range []string{"voting-svc.other", "voting-svc2", "webxsvc", "emoji-svc.emojivoto:8080", "voting-svc.emojivoto:http"} {
		if re.MatchString(a) {
			t.Errorf("%q should not match", a)
		}
	}
}
