package generator

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/conduitmesh/conduit/discovery"
	"github.com/conduitmesh/conduit/internal/testutil"
	"github.com/conduitmesh/conduit/pkg/contract"
)

type podsLister []discovery.Pod

func (p podsLister) ListPods(context.Context) ([]discovery.Pod, error) { return p, nil }

// TestRealPrometheusScrapesThroughDiscovery runs Debian's Prometheus with
// the rendered prometheus.yml and container args, conduit-discovery's
// handler and a stand-in proxy admin port, all on loopback, and queries
// response_total grouped by deployment as meshstat would.
func TestRealPrometheusScrapesThroughDiscovery(t *testing.T) {
	if os.Geteuid() != 0 && os.Getenv("CI") == "" {
		t.Skip("needs Debian's prometheus package (root installs it in CI)")
	}
	promBin, err := exec.LookPath("prometheus")
	if err != nil {
		t.Fatal("prometheus (Debian package prometheus) is required: ", err)
	}

	// A stand-in proxy: one metric carrying the proxy's own labels, one
	// without, which must get the workload labels from discovery.
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != contract.AdminMetricsPath {
			http.NotFound(w, r)
			return
		}
		fmt.Fprintf(w, "# TYPE %s counter\n%s{direction=\"inbound\",deployment=\"web\",namespace=\"shop\",pod=\"web-1\",status_code=\"200\",classification=\"success\"} 7\n",
			contract.MetricResponseTotal, contract.MetricResponseTotal)
		fmt.Fprintf(w, "# TYPE %s counter\n%s{direction=\"inbound\"} 3\n", contract.MetricTCPOpenTotal, contract.MetricTCPOpenTotal)
	}))
	t.Cleanup(proxy.Close)
	_, portText, _ := net.SplitHostPort(strings.TrimPrefix(proxy.URL, "http://"))
	adminPort, _ := strconv.Atoi(portText)

	var pod discovery.Pod
	podJSON := fmt.Sprintf(`{"metadata":{"name":"web-1","namespace":"shop","labels":{%q:"web"}},
		"spec":{"initContainers":[{"name":%q,"ports":[{"name":%q,"containerPort":%d}]}],"containers":[{"name":"app"}]},
		"status":{"phase":"Running","podIP":"127.0.0.1"}}`,
		contract.WorkloadLabel("Deployment"), contract.ProxyContainerName, contract.ProxyAdminPortName, adminPort)
	if err := json.Unmarshal([]byte(podJSON), &pod); err != nil {
		t.Fatal(err)
	}
	sd := httptest.NewServer(discovery.Handler(podsLister{pod}, 0))
	t.Cleanup(sd.Close)

	c := validConfig()
	c.Prometheus.ScrapeInterval = "1s"
	files := mustRender(t, c)
	promYML := get(fileDoc(t, files, "configmap-conduit-prometheus-config.yaml"), "data", "prometheus.yml").(string)
	sdURL := "http://127.0.0.1:" + strconv.Itoa(contract.DiscoveryPort) + contract.DiscoveryPath
	if !strings.Contains(promYML, sdURL) {
		t.Fatalf("prometheus.yml does not use %s:\n%s", sdURL, promYML)
	}
	promYML = strings.ReplaceAll(promYML, sdURL, sd.URL+contract.DiscoveryPath)

	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "prometheus.yml")
	os.WriteFile(cfgPath, []byte(promYML), 0o644)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	promAddr := ln.Addr().String()
	ln.Close()

	// The Deployment's own args, with the pod's paths and port mapped here.
	d := fileDoc(t, files, "deployment-conduit-prometheus.yaml")
	var args []string
	for _, a := range asList(get(d, "spec", "template", "spec", "containers", 0, "args")) {
		a = strings.Replace(a, "--config.file=/etc/prometheus/prometheus.yml", "--config.file="+cfgPath, 1)
		a = strings.Replace(a, "--storage.tsdb.path=/prometheus", "--storage.tsdb.path="+filepath.Join(dir, "data"), 1)
		a = strings.Replace(a, "--web.listen-address=:"+strconv.Itoa(contract.PrometheusPort), "--web.listen-address="+promAddr, 1)
		args = append(args, a)
	}
	var log bytes.Buffer
	cmd := exec.Command(promBin, args...)
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})

	query := func(q string) ([]map[string]any, error) {
		resp, err := http.Get("http://" + promAddr + "/api/v1/query?query=" + url.QueryEscape(q))
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		var body struct {
			Status string `json:"status"`
			Data   struct {
				Result []map[string]any `json:"result"`
			} `json:"data"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
			return nil, err
		}
		return body.Data.Result, nil
	}
	// Until both have samples (or Prometheus has exited); the checks below
	// say what is missing.
	var byDeployment, tcp []map[string]any
	_ = testutil.Poll(60*time.Second, 250*time.Millisecond, func() error {
		byDeployment, _ = query("sum by (deployment) (" + contract.MetricResponseTotal + ")")
		tcp, _ = query(contract.MetricTCPOpenTotal)
		if (len(byDeployment) > 0 && len(tcp) > 0) || cmd.ProcessState != nil {
			return nil
		}
		return fmt.Errorf("no samples yet")
	})
	if len(byDeployment) != 1 || get(byDeployment[0], "metric", "deployment") != "web" || get(byDeployment[0], "value", 1) != "7" {
		t.Fatalf("sum by (deployment) (response_total) = %v\nprometheus log:\n%s", byDeployment, log.String())
	}
	// A metric the proxy did not label gets namespace, pod and workload from
	// discovery.
	if len(tcp) != 1 || get(tcp[0], "metric", "deployment") != "web" || get(tcp[0], "metric", "namespace") != "shop" ||
		get(tcp[0], "metric", "pod") != "web-1" || get(tcp[0], "metric", "job") != "conduit-proxy" {
		t.Errorf("tcp_open_total = %v", tcp)
	}
}
