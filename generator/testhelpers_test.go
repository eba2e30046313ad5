package generator

import (
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

var (
	testProxyImage      = "ghcr.io/conduitmesh/conduit-proxy:v0.1.0@sha256:" + strings.Repeat("a", 64)
	testPrometheusImage = "ghcr.io/conduitmesh/prometheus:2.42.0@sha256:" + strings.Repeat("b", 64)
)

// validConfig is Defaults with pinned images.
func validConfig() Config {
	c := Defaults()
	c.Proxy.Image = testProxyImage
	c.Prometheus.Image = testPrometheusImage
	return c
}

func mustRender(t *testing.T, c Config) []File {
	t.Helper()
	files, err := Render(c)
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// docs splits a YAML stream into documents.
func docs(t *testing.T, stream string) []map[string]any {
	t.Helper()
	dec := yaml.NewDecoder(strings.NewReader(stream))
	var out []map[string]any
	for {
		var m map[string]any
		if err := dec.Decode(&m); err != nil {
			if err.Error() == "EOF" {
				return out
			}
			t.Fatalf("%v in:\n%s", err, stream)
		}
		if m != nil {
			out = append(out, m)
		}
	}
}

// get walks a decoded document by keys and indexes.
func get(v any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				return nil
			}
			v = m[k]
		case int:
			s, ok := v.([]any)
			if !ok || k >= len(s) {
				return nil
			}
			v = s[k]
		}
	}
	return v
}
