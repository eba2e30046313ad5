// Package admin serves the proxy's admin endpoints: metrics, liveness,
// readiness and, when enabled, pprof.
package admin

import (
	"net/http"
	"net/http/pprof"

	"github.com/conduitmesh/conduit/pkg/contract"
)

// Handler serves contract.AdminMetricsPath from metrics, AdminLivePath
// (always 200 while the process serves), and AdminReadyPath (200 once
// ready() is true, else 503). With withPprof, /debug/pprof/ is served too.
func Handler(metrics http.Handler, ready func() bool, withPprof bool) http.Handler {
	mux := http.NewServeMux()
	mux.Handle(contract.AdminMetricsPath, metrics)
	mux.HandleFunc(contract.AdminLivePath, func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("live\n"))
	})
	mux.HandleFunc(contract.AdminReadyPath, func(w http.ResponseWriter, r *http.Request) {
		if !ready() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ready\n"))
	})
	if withPprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	return mux
}
