package discovery

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
)

// Lister lists pods.
type Lister interface {
	ListPods(ctx context.Context) ([]Pod, error)
}

// APIClient lists running pods from a Kubernetes API server with a bearer
// token. It needs only list on pods.
type APIClient struct {
	server    string
	tokenFile string
	http      *http.Client
}

// In-cluster defaults.
const (
	ServiceAccountDir = "/var/run/secrets/kubernetes.io/serviceaccount"
	pageSize          = 500
)

// NewAPIClient talks to server (https://host:port), trusting the CA in
// caFile and sending the token read from tokenFile on every request (it is
// re-read, so rotated tokens are picked up).
func NewAPIClient(server, caFile, tokenFile string) (*APIClient, error) {
	u, err := url.Parse(server)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("api server %q: want https://host:port", server)
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("api server CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("api server CA %s: no PEM certificates", caFile)
	}
	if _, err := os.ReadFile(tokenFile); err != nil {
		return nil, fmt.Errorf("service-account token: %w", err)
	}
	return &APIClient{
		server:    strings.TrimSuffix(server, "/"),
		tokenFile: tokenFile,
		http: &http.Client{
			Timeout: 30 * time.Second,
			Transport: &http.Transport{
				TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
			},
		},
	}, nil
}

// InClusterServer is the API server address Kubernetes gives every pod.
func InClusterServer() (string, error) {
	host, port := os.Getenv("KUBERNETES_SERVICE_HOST"), os.Getenv("KUBERNETES_SERVICE_PORT")
	if host == "" || port == "" {
		return "", errors.New("KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are unset: not in a pod; pass --api-server")
	}
	return "https://" + net.JoinHostPort(host, port), nil
}

// ListPods lists the running pods of all namespaces, page by page.
func (c *APIClient) ListPods(ctx context.Context) ([]Pod, error) {
	token, err := os.ReadFile(c.tokenFile)
	if err != nil {
		return nil, fmt.Errorf("service-account token: %w", err)
	}
	var pods []Pod
	cont := ""
	for {
		q := url.Values{"fieldSelector": {"status.phase=Running"}, "limit": {fmt.Sprint(pageSize)}}
		if cont != "" {
			q.Set("continue", cont)
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.server+"/api/v1/pods?"+q.Encode(), nil)
		if err != nil {
			return nil, err
		}
		req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(token)))
		req.Header.Set("Accept", "application/json")
		resp, err := c.http.Do(req)
		if err != nil {
			return nil, fmt.Errorf("list pods: %w", err)
		}
		body, err := io.ReadAll(io.LimitReader(resp.Body, 256<<20))
		resp.Body.Close()
		if err != nil {
			return nil, fmt.Errorf("list pods: %w", err)
		}
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("list pods: %s: %s", resp.Status, strings.TrimSpace(string(body)))
		}
		var list struct {
			Metadata struct {
				Continue string `json:"continue"`
			} `json:"metadata"`
			Items []Pod `json:"items"`
		}
		if err := json.Unmarshal(body, &list); err != nil {
			return nil, fmt.Errorf("list pods: %w", err)
		}
		pods = append(pods, list.Items...)
		if list.Metadata.Continue == "" {
			return pods, nil
		}
		cont = list.Metadata.Continue
	}
}
