package promql

import "testing"

func TestSelector(t *testing.T) {
	for _, c := range []struct {
		s    Scope
		want string
	}{
		{Scope{Direction: "inbound", NameLabel: "deployment"}, `{deployment!="", direction="inbound"}`},
		{Scope{NameLabel: "statefulset", Names: []string{"db.v2", "a"}, Namespaces: []string{"x"}}, `{namespace="x", statefulset=~"a|db\\.v2"}`},
		{Scope{NameLabel: "namespace", Names: []string{"b", "a"}, Namespaces: []string{"ignored"}}, `{namespace=~"a|b"}`},
		{Scope{NameLabel: "namespace", Namespaces: []string{"x"}}, `{namespace="x"}`},
		{Scope{NameLabel: "pod", Names: []string{`we"ird`}, Authority: `web(:[0-9]+)?`}, `{authority=~"web(:[0-9]+)?", pod="we\"ird"}`},
	} {
		if got := c.s.Selector(); got != c.want {
			t.Errorf("%+v:\n got %s\nwant %s", c.s, got, c.want)
		}
	}
}

func TestQueries(t *testing.T) {
	s := Scope{Direction: "outbound", NameLabel: "daemonset", Names: []string{"agent"}, GroupBy: nil, Window: "30s"}
	for got, want := range map[string]string{
		s.Responses():           `sum by (classification)(rate(response_total{daemonset="agent", direction="outbound"}[30s]))`,
		s.LatencyQuantile(0.99): `histogram_quantile(0.99, sum by (le)(rate(response_latency_ms_bucket{daemonset="agent", direction="outbound"}[30s])))`,
		s.TCPConnections():      `sum by ()(tcp_open_connections{daemonset="agent", direction="outbound"})`,
		s.TCPReadBytes():        `sum by ()(rate(tcp_read_bytes_total{daemonset="agent", direction="outbound"}[30s]))`,
		s.TCPWriteBytes():       `sum by ()(rate(tcp_write_bytes_total{daemonset="agent", direction="outbound"}[30s]))`,
	} {
		if got != want {
			t.Errorf("\n got %s\nwant %s", got, want)
		}
	}
}
