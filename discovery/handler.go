package discovery

import (
	"encoding/json"
	"net/http"
	"sync"
	"time"
)

// Handler serves Targets of the pods lister returns as JSON. A result is
// reused for minInterval, which bounds the load on the API server however
// often Prometheus asks. A failed list answers 503 with the error, and
// Prometheus keeps the targets it had.
func Handler(lister Lister, minInterval time.Duration) http.Handler {
	h := &handler{lister: lister, minInterval: minInterval, now: time.Now}
	return h
}

type handler struct {
	lister      Lister
	minInterval time.Duration
	now         func() time.Time

	mu      sync.Mutex
	body    []byte
	fetched time.Time
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.body == nil || h.now().Sub(h.fetched) >= h.minInterval {
		pods, err := h.lister.ListPods(r.Context())
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		body, err := json.Marshal(Targets(pods))
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		h.body, h.fetched = body, h.now()
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(h.body)
}
