package main

import (
	"strings"
	"testing"
)

func TestOptionsValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    options
		want string // "" for valid
	}{
		{"up", options{command: "up"}, ""},
		{"down", options{command: "down"}, ""},
		{"no command", options{}, "missing command"},
		{"unknown", options{command: "start"}, `unknown command "start"`},
		{"validate without files", options{command: "validate"}, "at least one -f"},
		{"files on up", options{command: "up", files: []string{"x.yaml"}}, "-f is only for validate"},
		{"missing image", options{command: "up", images: []string{"/nonexistent/proxy.tar"}}, "/nonexistent/proxy.tar"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.o.validate()
			if tc.want == "" {
				if err != nil {
					t.Fatalf("want valid, got %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("want error containing %q, got %v", tc.want, err)
			}
		})
	}
}
