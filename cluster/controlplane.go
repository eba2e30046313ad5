package cluster

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// controlPlane describes where etcd and kube-apiserver listen.
type controlPlane struct {
	stateDir      string
	binDir        string
	etcdClient    int
	etcdPeer      int
	apiPort       int
	bindAddress   string // kube-apiserver --bind-address
	advertiseAddr string
	loopbackOnly  bool // validation mode: no kubernetes Endpoints, no kubelet
}

func (cp controlPlane) pkiDir() string { return filepath.Join(cp.stateDir, "pki") }
func (cp controlPlane) pki(f string) string {
	return filepath.Join(cp.pkiDir(), f)
}

func (cp controlPlane) etcd() *component { return &component{name: "etcd", dir: cp.stateDir} }
func (cp controlPlane) apiserver() *component {
	return &component{name: "kube-apiserver", dir: cp.stateDir}
}

func (cp controlPlane) startEtcd(ctx context.Context) error {
	c := cp.etcd()
	client := fmt.Sprintf("http://127.0.0.1:%d", cp.etcdClient)
	peer := fmt.Sprintf("http://127.0.0.1:%d", cp.etcdPeer)
	argv := []string{"/usr/bin/etcd",
		"--name=conduit",
		"--data-dir=" + filepath.Join(cp.stateDir, "etcd"),
		"--listen-client-urls=" + client, "--advertise-client-urls=" + client,
		"--listen-peer-urls=" + peer, "--initial-advertise-peer-urls=" + peer,
		"--initial-cluster=conduit=" + peer,
		"--log-level=warn",
	}
	if err := c.start(argv); err != nil {
		return err
	}
	hc := &http.Client{Timeout: 2 * time.Second}
	return c.waitFor(ctx, 30*time.Second, "healthy", func(ctx context.Context) error {
		return httpOK(ctx, hc, client+"/health")
	})
}

func (cp controlPlane) startAPIServer(ctx context.Context) error {
	c := cp.apiserver()
	argv := []string{filepath.Join(cp.binDir, "kube-apiserver"),
		fmt.Sprintf("--etcd-servers=http://127.0.0.1:%d", cp.etcdClient),
		"--bind-address=" + cp.bindAddress,
		"--advertise-address=" + cp.advertiseAddr,
		"--secure-port=" + strconv.Itoa(cp.apiPort),
		"--service-cluster-ip-range=" + ServiceRange,
		"--tls-cert-file=" + cp.pki("apiserver.crt"),
		"--tls-private-key-file=" + cp.pki("apiserver.key"),
		"--client-ca-file=" + cp.pki("ca.crt"),
		"--service-account-key-file=" + cp.pki("sa.pub"),
		"--service-account-signing-key-file=" + cp.pki("sa.key"),
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--cert-dir=" + filepath.Join(cp.stateDir, "apiserver"),
		"--allow-privileged=true",
		"--profiling=false",
	}
	if cp.loopbackOnly {
		// A loopback advertise address is refused for the kubernetes
		// Endpoints, so nothing reconciles them.
		// No controller creates ServiceAccounts here, so admission must not
		// require them.
		argv = append(argv, "--endpoint-reconciler-type=none", "--authorization-mode=RBAC", "--disable-admission-plugins=ServiceAccount")
	} else {
		argv = append(argv,
			"--authorization-mode=Node,RBAC",
			"--enable-admission-plugins=NodeRestriction",
			"--kubelet-client-certificate="+cp.pki("apiserver-kubelet-client.crt"),
			"--kubelet-client-key="+cp.pki("apiserver-kubelet-client.key"),
			"--kubelet-certificate-authority="+cp.pki("ca.crt"),
			"--kubelet-preferred-address-types=InternalIP",
		)
	}
	if err := c.start(argv); err != nil {
		return err
	}
	hc, err := cp.adminHTTPClient()
	if err != nil {
		return c.fail(err)
	}
	url := fmt.Sprintf("https://127.0.0.1:%d/readyz", cp.apiPort)
	return c.waitFor(ctx, 90*time.Second, "ready", func(ctx context.Context) error {
		return httpOK(ctx, hc, url)
	})
}

// adminHTTPClient talks to kube-apiserver with the admin certificate.
func (cp controlPlane) adminHTTPClient() (*http.Client, error) {
	pair, err := tls.LoadX509KeyPair(cp.pki("admin.crt"), cp.pki("admin.key"))
	if err != nil {
		return nil, err
	}
	caPEM, err := os.ReadFile(cp.pki("ca.crt"))
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	return &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{Certificates: []tls.Certificate{pair}, RootCAs: pool},
	}}, nil
}

func httpOK(ctx context.Context, hc *http.Client, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s: %s", url, resp.Status, body)
	}
	return nil
}

// freeLoopbackPorts returns n distinct ports free on 127.0.0.1 right now.
func freeLoopbackPorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var ports []int
	for i := 0; i < n; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
