package prom

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func serve(t *testing.T, code int, body string) *Client {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet || r.URL.Path != "/prefix/api/v1/query" || r.URL.Query().Get("query") != "up" {
			t.Errorf("got %s %s", r.Method, r.URL)
		}
		w.WriteHeader(code)
		w.Write([]byte(body))
	}))
	t.Cleanup(srv.Close)
	c, err := New(srv.URL+"/prefix/", WithHint("the hint"))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestQuery(t *testing.T) {
	c := serve(t, 200, `{"status":"success","data":{"resultType":"vector","result":[{"metric":{"pod":"a"},"value":[1700000000.5,"2.5"]},{"metric":{},"value":[1,"NaN"]}]}}`)
	v, err := c.Query(context.Background(), "up")
	if err != nil {
		t.Fatal(err)
	}
	if len(v) != 2 || v[0].Metric["pod"] != "a" || v[0].Value != 2.5 {
		t.Errorf("got %v", v)
	}
}

func TestQueryErrors(t *testing.T) {
	for _, c := range []struct {
		code        int
		body        string
		want        string
		unreachable bool
	}{
		{400, `{"status":"error","errorType":"bad_data","error":"parse error"}`, "rejected query up: bad_data: parse error", false},
		{200, `{"status":"success","data":{"resultType":"matrix","result":[]}}`, "result type matrix, want vector", false},
		{403, `{"kind":"Status","status":"Failure","message":"services \"conduit-prometheus\" is forbidden"}`, `forbidden: you may not get the Prometheus API at http://`, false},
		{503, `{"kind":"Status","status":"Failure","message":"no endpoints available for service \"conduit-prometheus\""}`, `HTTP 503: no endpoints available for service "conduit-prometheus": the hint`, true},
		{502, `<html>bad gateway</html>`, "HTTP 502: <html>bad gateway</html>: the hint", true},
	} {
		_, err := serve(t, c.code, c.body).Query(context.Background(), "up")
		pe, ok := err.(*Error)
		if !ok || !strings.Contains(err.Error(), c.want) || pe.Unreachable != c.unreachable {
			t.Errorf("HTTP %d %s: got %v, want %q (unreachable %v)", c.code, c.body, err, c.want, c.unreachable)
		}
	}
	if _, err := New("127.0.0.1:9090"); err == nil {
		t.Error("a URL without scheme was accepted")
	}
}
