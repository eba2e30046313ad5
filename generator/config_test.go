package generator

import (
	"errors"
	"strings"
	"testing"
)

func TestParseOverDefaultsAndRejectsUnknownFields(t *testing.T) {
	c, err := Parse("conduit.yaml", []byte("namespace: mesh\nprometheus:\n  scrapeInterval: 30s\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Namespace != "mesh" || c.Prometheus.ScrapeInterval != "30s" || c.Prometheus.RetentionTime != Defaults().Prometheus.RetentionTime {
		t.Errorf("config %+v", c)
	}
	_, err = Parse("conduit.yaml", []byte("prometheus:\n  scrapeIntervall: 30s\n"))
	if err == nil || !strings.Contains(err.Error(), "conduit.yaml") || !strings.Contains(err.Error(), "scrapeIntervall") {
		t.Errorf("misspelt field: %v", err)
	}
	if c, err := Parse("empty.yaml", nil); err != nil || c.Namespace != Defaults().Namespace {
		t.Errorf("empty file: %+v %v", c, err)
	}
}

func TestValidateNamesEveryBadFieldAndValue(t *testing.T) {
	c := validConfig()
	if err := c.Validate(); err != nil {
		t.Fatalf("valid config: %v", err)
	}
	c.Namespace = "Conduit_NS"
	c.Proxy.Image = "ghcr.io/conduitmesh/conduit-proxy:v0.1.0"
	c.Proxy.LogLevel = "loud"
	c.Proxy.OpaquePorts = "25,70000"
	c.Proxy.Resources.CPULimit = "one"
	c.Prometheus.ScrapeInterval = "ten"
	c.Prometheus.RetentionTime = ""
	c.Prometheus.RetentionSize = "1 gig"
	c.Prometheus.StorageLimit = "lots"
	c.Meshstat.ViewersGroup = ""
	err := c.Validate()
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{
		`field namespace: value "Conduit_NS": not a valid namespace name`,
		`field proxy.image: value "ghcr.io/conduitmesh/conduit-proxy:v0.1.0": not pinned by digest`,
		`field proxy.logLevel: value "loud": must be one of debug, info, warn, error`,
		`field proxy.opaquePorts: value "25,70000": not a port list`,
		`field proxy.resources.cpuLimit: value "one": not a Kubernetes quantity`,
		`field prometheus.scrapeInterval: value "ten": not a Prometheus duration`,
		`field prometheus.retentionTime: value "": not a Prometheus duration`,
		`field prometheus.retentionSize: value "1 gig": not a Prometheus size`,
		`field prometheus.storageLimit: value "lots"`,
		`field meshstat.viewersGroup: value ""`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in:\n%v", want, err)
		}
	}
	var fe *FieldError
	if !errors.As(err, &fe) {
		t.Errorf("not a FieldError: %T", err)
	}
	if _, err := Render(c); err == nil {
		t.Error("Render accepted an invalid config")
	}
}

func TestMarshalRoundTrips(t *testing.T) {
	c := validConfig()
	c.Proxy.SkipOutboundPorts = "443"
	data, err := c.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	back, err := Parse("marshal", data)
	if err != nil {
		t.Fatal(err)
	}
	if back != c {
		t.Errorf("round trip\n got %+v\nwant %+v", back, c)
	}
}

func TestRepoAndTag(t *testing.T) {
	for _, tc := range []struct{ ref, repo, tag string }{
		{"ghcr.io/a/b:v1@sha256:x", "ghcr.io/a/b", "v1"},
		{"127.0.0.1:5000/a/b", "127.0.0.1:5000/a/b", ""},
		{"127.0.0.1:5000/a/b:dev", "127.0.0.1:5000/a/b", "dev"},
	} {
		if r := repoOf(tc.ref); r != tc.repo {
			t.Errorf("repoOf(%s) = %s", tc.ref, r)
		}
		if g := tagOf(tc.ref); g != tc.tag {
			t.Errorf("tagOf(%s) = %s", tc.ref, g)
		}
	}
}
