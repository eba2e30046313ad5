// Package k8sbin is a separate module that builds the Kubernetes node and
// control-plane binaries the local cluster runs. It is kept out of the main
// module so Conduit itself never depends on k8s.io/kubernetes.
package k8sbin
