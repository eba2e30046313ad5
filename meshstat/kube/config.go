package kube

import (
	"fmt"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// ConfigFlags locate the kubeconfig like kubectl: KUBECONFIG or
// ~/.kube/config unless Kubeconfig is set, its current context unless
// Context is set.
type ConfigFlags struct {
	Kubeconfig string
	Context    string
}

// Load returns the REST config and the context's namespace ("default"
// when it names none).
func (f ConfigFlags) Load() (*rest.Config, string, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = f.Kubeconfig
	cc := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{CurrentContext: f.Context})
	cfg, err := cc.ClientConfig()
	if err != nil {
		if clientcmd.IsEmptyConfig(err) {
			return nil, "", fmt.Errorf("no kubeconfig found: set KUBECONFIG or pass --kubeconfig")
		}
		return nil, "", fmt.Errorf("kubeconfig: %w", err)
	}
	ns, _, err := cc.Namespace()
	if err != nil {
		return nil, "", fmt.Errorf("kubeconfig: %w", err)
	}
	cfg.UserAgent = "meshstat"
	return cfg, ns, nil
}

// NewClient makes a Client for cfg.
func NewClient(cfg *rest.Config) (Client, error) {
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return Client{}, fmt.Errorf("kubernetes client for %s: %w", cfg.Host, err)
	}
	return Client{CS: cs, Host: cfg.Host}, nil
}
