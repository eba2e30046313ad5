package main

import (
	"context"
	"io"
	"strings"
	"testing"
	"time"
)

func TestValidateWantsLoopback(t *testing.T) {
	for _, tc := range []struct {
		o    options
		want string
	}{
		{options{listen: "0.0.0.0:9091"}, "want a loopback address"},
		{options{listen: "nope"}, `--listen "nope"`},
		{options{listen: "127.0.0.1:9091", minInterval: -time.Second}, "--min-interval"},
	} {
		if err := Run(context.Background(), tc.o, io.Discard); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want %q", tc.o, err, tc.want)
		}
	}
}

func TestRunOutsideAPodNamesTheMissingSetting(t *testing.T) {
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	err := Run(context.Background(), options{listen: "127.0.0.1:0"}, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "--api-server") {
		t.Errorf("outside a pod: %v", err)
	}
}
