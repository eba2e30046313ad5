package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/conduitmesh/conduit/generator"
	"github.com/conduitmesh/conduit/image"
)

func newOptions() options {
	o := options{out: "base", overrides: map[string]*string{}, setFlags: map[string]bool{}}
	for _, f := range overrideFields {
		o.overrides[f.flag] = new(string)
	}
	return o
}

func setFlag(o *options, flag, value string) {
	*o.overrides[flag] = value
	o.setFlags[flag] = true
}

const pinnedProxy = "ghcr.io/conduitmesh/conduit-proxy:v0.1.0@sha256:1111111111111111111111111111111111111111111111111111111111111111"
const pinnedProm = "ghcr.io/conduitmesh/prometheus:2@sha256:2222222222222222222222222222222222222222222222222222222222222222"

func TestRunWritesChecksAndPins(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "conduit.yaml")
	os.WriteFile(cfg, []byte("proxy:\n  image: "+pinnedProxy+"\nprometheus:\n  image: "+pinnedProm+"\n"), 0o644)
	o := newOptions()
	o.config = cfg
	o.out = filepath.Join(dir, "base")
	setFlag(&o, "scrape-interval", "15s")
	var stdout, stderr bytes.Buffer
	if err := Run(context.Background(), o, &stdout, &stderr); err != nil {
		t.Fatal(err)
	}
	cm, _ := os.ReadFile(filepath.Join(o.out, "configmap-conduit-prometheus-config.yaml"))
	if !strings.Contains(string(cm), "scrape_interval: 15s") {
		t.Errorf("flag did not override the file:\n%s", cm)
	}

	// --check passes on the fresh output and fails, naming the file, after
	// an edit.
	o.check = true
	stdout.Reset()
	if err := Run(context.Background(), o, &stdout, &stderr); err != nil || !strings.Contains(stdout.String(), "up to date") {
		t.Errorf("check on fresh output: %v %q", err, stdout.String())
	}
	os.WriteFile(filepath.Join(o.out, "namespace-conduit.yaml"), []byte("edited\n"), 0o644)
	err := Run(context.Background(), o, &stdout, &stderr)
	if err == nil || !strings.Contains(err.Error(), "changed: namespace-conduit.yaml") {
		t.Errorf("check after an edit: %v", err)
	}

	// --proxy-layout pins the proxy image; --write-config records it.
	img, _ := image.New(v1.Platform{OS: "linux", Architecture: "amd64"})
	idx, _ := image.NewIndex(img)
	layout := filepath.Join(dir, "dist", "conduit-proxy")
	if err := image.WriteLayout(layout, idx, "v0.2.0"); err != nil {
		t.Fatal(err)
	}
	o.check = false
	o.writeConfig = true
	o.proxyLayout = layout
	if err := Run(context.Background(), o, &stdout, &stderr); err != nil {
		t.Fatal(err)
	}
	c, err := generator.Load(cfg)
	if err != nil {
		t.Fatal(err)
	}
	d, _ := idx.Digest()
	if c.Proxy.Image != "ghcr.io/conduitmesh/conduit-proxy:v0.2.0@"+d.String() || c.Prometheus.ScrapeInterval != "15s" {
		t.Errorf("written config %+v", c)
	}
	inj, _ := os.ReadFile(filepath.Join(o.out, "injector", "proxy-injector.yaml"))
	if !strings.Contains(string(inj), c.Proxy.Image) {
		t.Errorf("injector config not pinned:\n%s", inj)
	}
}

func TestRunRejectsBadConfigWithoutWriting(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "conduit.yaml")
	os.WriteFile(cfg, []byte("proxy:\n  image: "+pinnedProxy+"\nprometheus:\n  image: "+pinnedProm+"\n"), 0o644)
	o := newOptions()
	o.config = cfg
	o.out = filepath.Join(dir, "base")
	setFlag(&o, "retention-size", "big")
	err := Run(context.Background(), o, &bytes.Buffer{}, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), `field prometheus.retentionSize: value "big"`) ||
		!strings.Contains(err.Error(), "config "+cfg+" with --retention-size") {
		t.Errorf("bad flag: %v", err)
	}
	if _, err := os.Stat(o.out); !os.IsNotExist(err) {
		t.Errorf("output written despite the error: %v", err)
	}

	// An unpinned image from defaults names the field and the fix.
	o = newOptions()
	o.out = filepath.Join(dir, "base")
	err = Run(context.Background(), o, &bytes.Buffer{}, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "field proxy.image") || !strings.Contains(err.Error(), "--resolve") {
		t.Errorf("unpinned defaults: %v", err)
	}

	o = newOptions()
	o.config = filepath.Join(dir, "missing.yaml")
	if err := Run(context.Background(), o, &bytes.Buffer{}, &bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), "missing.yaml") {
		t.Errorf("missing config: %v", err)
	}
	o = newOptions()
	o.check, o.writeConfig, o.config = true, true, cfg
	if err := Run(context.Background(), o, &bytes.Buffer{}, &bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), "exclude each other") {
		t.Errorf("--check --write-config: %v", err)
	}
}
