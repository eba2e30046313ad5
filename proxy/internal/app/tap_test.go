package app

import (
	"bufio"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/netip"
	"testing"
	"time"

	"github.com/conduitmesh/conduit/pkg/contract"
)

// The tap listener streams the requests both directions serve.
func TestTapListener(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("tapped"))
	})}
	go srv.Serve(ln)
	defer srv.Close()
	var tapAddr net.Addr
	r := start(t, netip.MustParseAddrPort(ln.Addr().String()), func(o *Options) {
		o.OnTapReady = func(a net.Addr) { tapAddr = a }
	})

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+tapAddr.String()+contract.TapPath+"?method=GET", nil)
	stream, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Body.Close()
	if stream.StatusCode != 200 {
		t.Fatalf("tap: %s", stream.Status)
	}

	c := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", r.out.String())
	}}}
	resp, err := c.Get("http://web.shop:8080/items?id=7")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()

	sc := bufio.NewScanner(stream.Body)
	var got []contract.TapEvent
	for len(got) < 3 && sc.Scan() {
		var e contract.TapEvent
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatal(err)
		}
		got = append(got, e)
	}
	if len(got) != 3 {
		t.Fatalf("events %+v, %v", got, sc.Err())
	}
	q, p, e := got[0], got[1], got[2]
	if q.Type != contract.TapRequest || q.Direction != contract.DirectionOutbound || q.Authority != "web.shop:8080" ||
		q.Path != "/items?id=<redacted>" || // query values are not shown by default
		q.Destination != ln.Addr().String() {
		t.Errorf("req %+v", q)
	}
	if p.Type != contract.TapResponse || p.Status != 200 || e.Type != contract.TapEnd || e.ResponseBytes != 6 || p.ID != q.ID || e.ID != q.ID {
		t.Errorf("rsp %+v end %+v", p, e)
	}
}
