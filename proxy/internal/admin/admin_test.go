package admin

import (
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
)

func get(h http.Handler, path string) int {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
	return rec.Code
}

func TestEndpoints(t *testing.T) {
	var ready atomic.Bool
	metrics := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(299) })
	h := Handler(metrics, ready.Load, false)
	if c := get(h, "/live"); c != 200 {
		t.Errorf("/live = %d", c)
	}
	if c := get(h, "/ready"); c != 503 {
		t.Errorf("/ready before listeners are bound = %d, want 503", c)
	}
	ready.Store(true)
	if c := get(h, "/ready"); c != 200 {
		t.Errorf("/ready = %d, want 200", c)
	}
	if c := get(h, "/metrics"); c != 299 {
		t.Errorf("/metrics not served by the metrics handler: %d", c)
	}
	if c := get(h, "/debug/pprof/"); c != 404 {
		t.Errorf("pprof served without being enabled: %d", c)
	}
	if c := get(Handler(metrics, ready.Load, true), "/debug/pprof/"); c != 200 {
		t.Errorf("pprof enabled: %d", c)
	}
}
