// Command conduit-generate renders Conduit's control plane into a kustomize
// base (one file per object plus kustomization.yaml) from a config file and
// flags. With --check it only reports whether the base is up to date.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"

	"github.com/spf13/pflag"

	"github.com/conduitmesh/conduit/generator"
	"github.com/conduitmesh/conduit/pkg/contract"
)

type options struct {
	config           string
	out              string
	check            bool
	writeConfig      bool
	resolve          bool
	proxyLayout      string
	prometheusLayout string
	// Settings given as flags, applied over the config file when set.
	overrides map[string]*string
	setFlags  map[string]bool
}

// overrideFields maps each override flag to the config field it sets.
var overrideFields = []struct {
	flag, help string
	field      func(*generator.Config) *string
}{
	{"namespace", "control-plane namespace", func(c *generator.Config) *string { return &c.Namespace }},
	{"proxy-image", "proxy image, pinned by digest (repo:tag@sha256:...)", func(c *generator.Config) *string { return &c.Proxy.Image }},
	{"proxy-log-level", "proxy log level", func(c *generator.Config) *string { return &c.Proxy.LogLevel }},
	{"prometheus-image", "Prometheus image, pinned by digest", func(c *generator.Config) *string { return &c.Prometheus.Image }},
	{"scrape-interval", "Prometheus scrape interval", func(c *generator.Config) *string { return &c.Prometheus.ScrapeInterval }},
	{"retention-time", "Prometheus retention time", func(c *generator.Config) *string { return &c.Prometheus.RetentionTime }},
	{"retention-size", "Prometheus retention size", func(c *generator.Config) *string { return &c.Prometheus.RetentionSize }},
}

func (o options) validate() error {
	if o.out == "" {
		return errors.New("--out: an output directory is needed")
	}
	if o.writeConfig && o.config == "" {
		return errors.New("--write-config needs --config")
	}
	if o.check && o.writeConfig {
		return errors.New("--check and --write-config exclude each other")
	}
	return nil
}

// config loads the config file over the defaults, then applies flags,
// layout pins and registry resolution.
func (o options) configFor(ctx context.Context) (generator.Config, string, error) {
	c := generator.Defaults()
	source := "defaults"
	if o.config != "" {
		var err error
		if c, err = generator.Load(o.config); err != nil {
			return c, "", fmt.Errorf("config: %w", err)
		}
		source = "config " + o.config
	}
	var flagged []string
	for _, f := range overrideFields {
		if o.setFlags[f.flag] {
			*f.field(&c) = *o.overrides[f.flag]
			flagged = append(flagged, "--"+f.flag)
		}
	}
	if len(flagged) > 0 {
		source += " with " + strings.Join(flagged, " ")
	}
	for _, pin := range []struct {
		dir   string
		field *string
		flag  string
	}{
		{o.proxyLayout, &c.Proxy.Image, "--proxy-layout"},
		{o.prometheusLayout, &c.Prometheus.Image, "--prometheus-layout"},
	} {
		if pin.dir == "" {
			continue
		}
		ref, err := generator.PinFromLayout(*pin.field, pin.dir)
		if err != nil {
			return c, "", fmt.Errorf("%s: %w", pin.flag, err)
		}
		*pin.field = ref
	}
	if o.resolve {
		for _, field := range []*string{&c.Proxy.Image, &c.Prometheus.Image} {
			ref, err := generator.Resolve(ctx, *field)
			if err != nil {
				return c, "", fmt.Errorf("--resolve: %w", err)
			}
			*field = ref
		}
	}
	return c, source, nil
}

// Run renders the control plane and writes (or, with --check, compares) it.
func Run(ctx context.Context, o options, stdout, stderr io.Writer) error {
	if err := o.validate(); err != nil {
		return err
	}
	c, source, err := o.configFor(ctx)
	if err != nil {
		return err
	}
	if err := c.Validate(); err != nil {
		return fmt.Errorf("%s: invalid:\n%w", source, err)
	}
	files, err := generator.Render(c)
	if err != nil {
		return err
	}
	if o.check {
		diff, err := generator.Diff(o.out, files)
		if err != nil {
			return err
		}
		if len(diff) > 0 {
			return fmt.Errorf("%s is stale (run `make manifests`):\n  %s", o.out, strings.Join(diff, "\n  "))
		}
		fmt.Fprintf(stdout, "%s is up to date\n", o.out)
		return nil
	}
	var cfgData []byte
	if o.writeConfig {
		if cfgData, err = c.Marshal(); err != nil {
			return err
		}
	}
	if err := generator.WriteDir(o.out, files); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %d files to %s\n", len(files), o.out)
	if o.writeConfig {
		tmp := filepath.Join(filepath.Dir(o.config), "."+filepath.Base(o.config)+".tmp")
		if err := os.WriteFile(tmp, cfgData, 0o644); err != nil {
			return err
		}
		if err := os.Rename(tmp, o.config); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "wrote %s\n", o.config)
	}
	return nil
}

func main() {
	o := options{out: contract.BaseDir, overrides: map[string]*string{}, setFlags: map[string]bool{}}
	fs := pflag.NewFlagSet("conduit-generate", pflag.ContinueOnError)
	fs.StringVar(&o.config, "config", "", "config file (YAML); unset fields take defaults")
	fs.StringVar(&o.out, "out", o.out, "directory to render into; replaced as a whole")
	fs.BoolVar(&o.check, "check", false, "do not write: fail if --out differs from what the config renders")
	fs.BoolVar(&o.writeConfig, "write-config", false, "write the effective config (with pinned images) back to --config")
	fs.BoolVar(&o.resolve, "resolve", false, "pin tagged images to digests through their registry (remote.Head)")
	fs.StringVar(&o.proxyLayout, "proxy-layout", "", "pin the proxy image to the index in this OCI layout (dist/conduit-proxy)")
	fs.StringVar(&o.prometheusLayout, "prometheus-layout", "", "pin the Prometheus image to the index in this OCI layout (dist/prometheus)")
	for _, f := range overrideFields {
		o.overrides[f.flag] = fs.String(f.flag, "", f.help+" (overrides --config)")
	}
	if err := fs.Parse(os.Args[1:]); err != nil {
		if err == pflag.ErrHelp {
			return
		}
		os.Exit(2)
	}
	fs.Visit(func(f *pflag.Flag) { o.setFlags[f.Name] = true })
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := Run(ctx, o, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "conduit-generate:", err)
		os.Exit(1)
	}
}
