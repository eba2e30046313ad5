package adversarial

import (
	"strconv"
	"strings"
	"testing"

	"github.com/conduitmesh/conduit/pkg/contract"
	"github.com/conduitmesh/conduit/proxy/integration/meshtest"
)

// Large cookies and JWTs pass through both proxies whole, and so does a
// large response field; a head over the limit gets 431, which is counted
// like any other answer.
func TestLimitsHeaders(t *testing.T) {
	m := smugglingNewMesh(t)
	auth := smugglingAuthority(smugglingPort)
	for _, tc := range []struct {
		name, field, value string
	}{
		{"60 KiB cookie", "Cookie", "session=" + strings.Repeat("c", 60<<10)},
		{"16 KiB JWT", "Authorization", "Bearer " + strings.Repeat("j", 16<<10)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := smugglingGet(t, m, smugglingPort, "GET /big?big=30000 HTTP/1.1\r\nHost: "+auth+"\r\n"+
				tc.field+": "+tc.value+"\r\nConnection: close\r\n\r\n")
			if resp.StatusCode != 200 || body != "/big" {
				t.Fatalf("answered %d %q (%s)", resp.StatusCode, body, resp.Header.Get(contract.ProxyErrorHeader))
			}
			if got := resp.Header.Get("X-" + tc.field + "-Len"); got != strconv.Itoa(len(tc.value)) {
				t.Fatalf("the application saw %s bytes of %s, want %d", got, tc.field, len(tc.value))
			}
			if got := len(resp.Header.Get("X-Big")); got != 30000 {
				t.Fatalf("30000-byte response field arrived with %d bytes", got)
			}
		})
	}
	t.Run("431 counted", func(t *testing.T) {
		before := smugglingScrape(t, m.ClientProxy)
		out := smugglingSend(t, m, smugglingPort, "GET /huge HTTP/1.1\r\nHost: "+auth+"\r\nCookie: "+strings.Repeat("c", 70<<10)+"\r\n\r\n")
		if !strings.HasPrefix(out, "HTTP/1.1 431 ") {
			t.Fatalf("answered %.100q, want 431", out)
		}
		sel := meshtest.Labels{contract.LabelAuthority: auth}
		smugglingExpectDelta(t, m.ClientProxy, before, contract.MetricRequestTotal, sel, 1)
		smugglingExpectDelta(t, m.ClientProxy, before, contract.MetricResponseTotal,
			meshtest.Labels{contract.LabelAuthority: auth, contract.LabelStatusCode: "431"}, 1)
		for _, r := range m.app.requests() {
			if strings.Contains(r, "/huge") {
				t.Fatalf("the application received %q", r)
			}
		}
	})
}

// A connection whose first method is not one of the common ones (WebDAV's
// PROPFIND, an extension method, a lower-case method) is HTTP too: its
// requests reach the application and are counted by both proxies.
func TestLimitsMethodsVisible(t *testing.T) {
	m := smugglingNewMesh(t)
	auth := smugglingAuthority(smugglingPort)
	for _, method := range []string{"PROPFIND", "MKCALENDAR", "get", "X-CUSTOM"} {
		t.Run(method, func(t *testing.T) {
			beforeClient := smugglingScrape(t, m.ClientProxy)
			beforeServer := smugglingScrape(t, m.ServerProxy)
			resp, body := smugglingGet(t, m, smugglingPort, method+" /m HTTP/1.1\r\nHost: "+auth+"\r\nConnection: close\r\n\r\n")
			if resp.StatusCode != 200 || body != "/m" {
				t.Fatalf("answered %d %q", resp.StatusCode, body)
			}
			sel := meshtest.Labels{contract.LabelAuthority: auth}
			smugglingExpectDelta(t, m.ClientProxy, beforeClient, contract.MetricRequestTotal, sel, 1)
			smugglingExpectDelta(t, m.ServerProxy, beforeServer, contract.MetricRequestTotal, sel, 1)
		})
	}
	want := map[string]bool{}
	for _, r := range m.app.requests() {
		want[strings.Fields(r)[0]] = true
	}
	for _, method := range []string{"PROPFIND", "MKCALENDAR", "get", "X-CUSTOM"} {
		if !want[method] {
			t.Errorf("the application never saw %s; saw %q", method, m.app.requests())
		}
	}
}
