package kube

import (
	"errors"
	"fmt"
	"net"
	"net/url"

	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/conduitmesh/conduit/pkg/contract"
)

// RoleHint tells a user who lacks a permission how to get it.
const RoleHint = "bind the read-only " + contract.MeshstatRoleName + " ClusterRole to your user or ServiceAccount (see " +
	contract.BaseDir + "/" + contract.MeshstatBindingFile + ")"

// Explain turns an API error into one that says what failed and how to fix
// it. verb and resource name the request ("list", "pods"); namespace is ""
// for a request across all namespaces; host is the API server's address.
func Explain(err error, host, verb, resource, namespace string) error {
	if err == nil {
		return nil
	}
	where := "in namespace " + namespace
	if namespace == "" {
		where = "in all namespaces"
	}
	switch {
	case apierrors.IsForbidden(err):
		return fmt.Errorf("forbidden: you may not %s %s %s: %s", verb, resource, where, RoleHint)
	case apierrors.IsUnauthorized(err):
		return fmt.Errorf("the API server at %s rejected your credentials (%s %s): check the user of your kubeconfig context", host, verb, resource)
	case IsUnreachable(err):
		return fmt.Errorf("cannot reach the Kubernetes API server at %s: %v: check KUBECONFIG, --kubeconfig and --context, and that the cluster is running", host, rootCause(err))
	}
	return fmt.Errorf("%s %s %s: %w", verb, resource, where, err)
}

// IsUnreachable reports whether err is a failure to connect, as opposed to
// an answer from the server.
func IsUnreachable(err error) bool {
	var ue *url.Error
	var oe *net.OpError
	var de *net.DNSError
	return errors.As(err, &oe) || errors.As(err, &de) || (errors.As(err, &ue) && !apierrors.IsTimeout(err) && ue.Op != "")
}

func rootCause(err error) error {
	var oe *net.OpError
	if errors.As(err, &oe) {
		return oe
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}
