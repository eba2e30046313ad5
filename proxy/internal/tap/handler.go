package tap

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/conduitmesh/conduit/pkg/contract"
)

// Handler serves contract.TapPath: newline-delimited contract.TapEvent
// JSON, flushed as events arrive, until the client goes away.
func Handler(h *Hub) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+contract.TapPath, func(w http.ResponseWriter, r *http.Request) {
		f, maxRPS, err := ParseQuery(r.URL.Query())
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		sub := h.Subscribe(f, maxRPS)
		if sub == nil {
			w.Header().Set("Retry-After", "10")
			http.Error(w, fmt.Sprintf("tap: this proxy already streams to %d subscribers, its limit: retry once one has gone", h.maxSubs),
				http.StatusServiceUnavailable)
			return
		}
		defer sub.Close()
		serve(w, r, sub)
	})
	return mux
}

// ParseQuery reads the filters and rate limit of a tap request.
func ParseQuery(q url.Values) (Filter, int, error) {
	for k := range q {
		switch k {
		case contract.TapParamMethod, contract.TapParamAuthority, contract.TapParamPathPrefix, contract.TapParamMaxRPS, contract.TapParamQuery:
		default:
			return Filter{}, 0, fmt.Errorf("tap: unknown parameter %q (want %s, %s, %s, %s or %s)", k,
				contract.TapParamMethod, contract.TapParamAuthority, contract.TapParamPathPrefix, contract.TapParamMaxRPS, contract.TapParamQuery)
		}
		if len(q[k]) > 1 {
			return Filter{}, 0, fmt.Errorf("tap: parameter %q given %d times", k, len(q[k]))
		}
	}
	f := Filter{
		Method:     q.Get(contract.TapParamMethod),
		Authority:  q.Get(contract.TapParamAuthority),
		PathPrefix: q.Get(contract.TapParamPathPrefix),
	}
	for _, c := range f.Method {
		if c <= ' ' || c >= 0x7f {
			return Filter{}, 0, fmt.Errorf("tap: parameter %s %q: not an HTTP method", contract.TapParamMethod, f.Method)
		}
	}
	if v, ok := q[contract.TapParamQuery]; ok {
		switch v[0] {
		case "1", "true":
			f.ShowQuery = true
		case "0", "false":
		default:
			return Filter{}, 0, fmt.Errorf("tap: parameter %s %q: want 1 (show query values) or 0", contract.TapParamQuery, v[0])
		}
	}
	maxRPS := contract.TapDefaultMaxRPS
	if v, ok := q[contract.TapParamMaxRPS]; ok {
		n, err := strconv.Atoi(v[0])
		if err != nil || n <= 0 {
			return Filter{}, 0, fmt.Errorf("tap: parameter %s %q: want a positive integer", contract.TapParamMaxRPS, v[0])
		}
		maxRPS = n
	}
	return f, maxRPS, nil
}

// noticeEvery is how often the stream wakes without events, to send a
// pending dropped notice: a notice is due a second after the last one, so
// waking five times a second keeps them at most 1.2 s apart.
const noticeEvery = 200 * time.Millisecond

func serve(w http.ResponseWriter, r *http.Request, sub *Subscription) {
	w.Header().Set("Content-Type", contract.TapContentType)
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	if rc.Flush() != nil {
		return
	}
	enc := json.NewEncoder(w) // one line per event
	enc.SetEscapeHTML(false)  // "<redacted>", not "\u003credacted\u003e"
	tick := time.NewTicker(noticeEvery)
	defer tick.Stop()
	var buf []contract.TapEvent
	for {
		select {
		case <-r.Context().Done():
			return
		case <-sub.Ready():
		case <-tick.C:
		}
		buf = sub.Take(buf)
		if len(buf) == 0 {
			continue
		}
		// Each line is flushed as it is written (the contract's promise:
		// a reader never waits on a half-sent batch).
		for i := range buf {
			if enc.Encode(&buf[i]) != nil || rc.Flush() != nil {
				return
			}
		}
	}
}
