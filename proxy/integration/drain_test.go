package integration

import (
	"context"
	"syscall"
	"testing"
	"time"
)

// TestDrainOnSIGTERM stops the server proxy while a request is in flight:
// the request completes and the proxy exits cleanly within its drain
// timeout (2s, set by the harness).
func TestDrainOnSIGTERM(t *testing.T) {
	m := newTestMesh(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	curl := m.Client.Command(ctx, "curl", "-sS", "--http1.1", "-o", "/dev/null", "-w", "%{http_code}", url(httpPort, "/slow?ms=1000"))
	type result struct {
		out []byte
		err error
	}
	done := make(chan result, 1)
	go func() {
		out, err := curl.Output()
		done <- result{out, err}
	}()
	select {
	case <-m.app.SlowStarted():
	case <-time.After(10 * time.Second):
		t.Fatal("the slow request never reached the server")
	}
	if err := m.ServerProxy.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	r := <-done
	if r.err != nil || string(r.out) != "200" {
		t.Errorf("in-flight request during drain: status %q, error %v; want 200", r.out, r.err)
	}
	exited, err := m.ServerProxy.Wait(10 * time.Second)
	if !exited {
		t.Fatal("proxy still running 10s after SIGTERM with a 2s drain timeout")
	}
	if err != nil {
		t.Errorf("proxy exit after SIGTERM: %v, want a clean exit", err)
	}
}
