package cluster

import (
	"context"
	"errors"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// A component that dies during bring-up is named in the error, with the tail
// of its log.
func TestComponentFailureNamesComponentAndLogTail(t *testing.T) {
	c := &component{name: "kube-fake", dir: t.TempDir()}
	script := "for i in $(seq 1 40); do echo line $i; done; echo 'fatal: port 6443 in use' >&2; exit 3"
	if err := c.start([]string{"/bin/sh", "-c", script}); err != nil {
		t.Fatal(err)
	}
	err := c.waitFor(context.Background(), 10*time.Second, "ready", func(context.Context) error {
		return errors.New("not yet")
	})
	var ce *ComponentError
	if !errors.As(err, &ce) || ce.Component != "kube-fake" {
		t.Fatalf("want a ComponentError for kube-fake, got %v", err)
	}
	msg := err.Error()
	for _, want := range []string{"kube-fake failed", "exited before it was ready", "fatal: port 6443 in use", "line 40"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error lacks %q:\n%s", want, msg)
		}
	}
	if strings.Contains(msg, "line 10\n") {
		t.Errorf("error should show only the tail of the log:\n%s", msg)
	}
	if c.running() {
		t.Error("an exited component reports running")
	}
}

// stop ends a running component by pid and removes its pid file; a pid file
// naming a reused pid (other start time) is never signalled.
func TestComponentStopAndPidReuse(t *testing.T) {
	dir := t.TempDir()
	c := &component{name: "sleeper", dir: dir}
	if err := c.start([]string{"/bin/sleep", "60"}); err != nil {
		t.Fatal(err)
	}
	if !c.running() {
		t.Fatal("started component is not running")
	}
	pid := c.pid()
	c.stop(5 * time.Second)
	if c.running() {
		t.Fatal("component still running after stop")
	}
	if _, err := os.Stat(c.pidPath()); !os.IsNotExist(err) {
		t.Errorf("pid file left after stop: %v", err)
	}

	// A pid file with this test's own pid but a wrong start time.
	fake := &component{name: "stale", dir: dir}
	os.MkdirAll(dir+"/pids", 0o700)
	if err := os.WriteFile(fake.pidPath(), []byte(strings.Join([]string{strconv.Itoa(os.Getpid()), "1"}, " ")), 0o600); err != nil {
		t.Fatal(err)
	}
	if fake.running() {
		t.Errorf("pid %d with another start time taken as the component (previous pid %d)", os.Getpid(), pid)
	}
}

// lockPath serialises holders and gives up when the context ends.
func TestLockPath(t *testing.T) {
	path := t.TempDir() + "/x.lock"
	unlock, err := lockPath(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	if _, err := lockPath(ctx, path); err == nil || !strings.Contains(err.Error(), "another run holds it") {
		t.Fatalf("second holder: want a timeout naming the lock, got %v", err)
	}
	got := make(chan error, 1)
	go func() {
		u, err := lockPath(context.Background(), path)
		if err == nil {
			u()
		}
		got <- err
	}()
	time.Sleep(300 * time.Millisecond)
	select {
	case err := <-got:
		t.Fatalf("lock taken while held (err %v)", err)
	default:
	}
	unlock()
	select {
	case err := <-got:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("waiter did not get the lock after release")
	}
}
