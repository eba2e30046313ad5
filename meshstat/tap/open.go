package tap

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/conduitmesh/conduit/meshstat/kube"
	"github.com/conduitmesh/conduit/pkg/contract"
)

// Pod is one pod whose proxy is tapped.
type Pod struct {
	Namespace, Name string
}

func (p Pod) String() string { return p.Namespace + "/" + p.Name }

// Opener opens one pod's tap stream: newline-delimited contract.TapEvent.
type Opener interface {
	Open(ctx context.Context, p Pod, query url.Values) (io.ReadCloser, error)
}

// FatalError is a failure that retrying will not fix (forbidden, bad
// parameters); it ends the tap.
type FatalError struct{ Err error }

func (e *FatalError) Error() string { return e.Err.Error() }
func (e *FatalError) Unwrap() error { return e.Err }

// PodProxy opens tap streams through the API server's pods/proxy
// subresource: GET {Host}/api/v1/namespaces/NS/pods/NAME:4190/proxy/tap.
type PodProxy struct {
	Host   string       // the API server's URL
	Client *http.Client // carries the kubeconfig's credentials; no timeout
}

// URL is the tap URL of p through the API server.
func (pp PodProxy) URL(p Pod, query url.Values) string {
	u := fmt.Sprintf("%s/api/v1/namespaces/%s/pods/%s:%d/proxy%s",
		strings.TrimSuffix(pp.Host, "/"), url.PathEscape(p.Namespace), url.PathEscape(p.Name), contract.ProxyTapPort, contract.TapPath)
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	return u
}

// Open implements Opener.
func (pp PodProxy) Open(ctx context.Context, p Pod, query url.Values) (io.ReadCloser, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, pp.URL(p, query), nil)
	if err != nil {
		return nil, &FatalError{err}
	}
	resp, err := pp.Client.Do(req)
	if err != nil {
		if kube.IsUnreachable(err) && ctx.Err() == nil {
			return nil, fmt.Errorf("cannot reach the Kubernetes API server at %s: %w", pp.Host, errors.Unwrap(err))
		}
		return nil, err
	}
	if resp.StatusCode == http.StatusOK {
		return resp.Body, nil
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	msg := message(body)
	switch resp.StatusCode {
	case http.StatusForbidden:
		return nil, &FatalError{fmt.Errorf("forbidden: you may not get pods/proxy in namespace %s (tapping pod %s): %s", p.Namespace, p.Name, kube.RoleHint)}
	case http.StatusUnauthorized:
		return nil, &FatalError{fmt.Errorf("the API server at %s rejected your credentials (get pods/proxy): check the user of your kubeconfig context", pp.Host)}
	case http.StatusBadRequest:
		return nil, &FatalError{fmt.Errorf("the proxy of pod %s refused the tap request: %s", p, msg)}
	}
	return nil, fmt.Errorf("tap port %d: HTTP %d: %s", contract.ProxyTapPort, resp.StatusCode, msg)
}

// message is the API server's Status message, or the start of the body.
func message(body []byte) string {
	var st struct {
		Message string `json:"message"`
	}
	if json.Unmarshal(body, &st) == nil && st.Message != "" {
		return st.Message
	}
	s := strings.Join(strings.Fields(string(body)), " ")
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return s
}

// Query is the tap request's query string.
func Query(method, authority, pathPrefix string, maxRPS int) url.Values {
	q := url.Values{}
	if method != "" {
		q.Set(contract.TapParamMethod, method)
	}
	if authority != "" {
		q.Set(contract.TapParamAuthority, authority)
	}
	if pathPrefix != "" {
		q.Set(contract.TapParamPathPrefix, pathPrefix)
	}
	if maxRPS > 0 {
		q.Set(contract.TapParamMaxRPS, strconv.Itoa(maxRPS))
	}
	return q
}
