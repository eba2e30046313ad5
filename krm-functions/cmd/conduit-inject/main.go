// Command conduit-inject adds the Conduit proxy to Kubernetes workloads. It
// is a KRM function (kpt, kustomize exec plugins) and a plain CI filter:
//
//	conduit-inject [flags] [FILE|DIR|-]...
package main

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/pflag"

	"github.com/conduitmesh/conduit/krm-functions/frontend"
	"github.com/conduitmesh/conduit/krm-functions/inject"
	"github.com/conduitmesh/conduit/pkg/version"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// settingFlags map each configuration flag to its ProxyInjector spec field.
var settingFlags = []struct{ flag, key, usage string }{
	{"image", inject.KeyImage, "proxy image (it also holds conduit-init)"},
	{"control-plane-namespace", inject.KeyControlPlaneNamespace, "namespace of the control plane"},
	{"skip-inbound-ports", inject.KeySkipInboundPorts, "inbound ports that bypass the proxy, e.g. 80,4000-4010"},
	{"skip-outbound-ports", inject.KeySkipOutboundPorts, "outbound ports that bypass the proxy"},
	{"opaque-ports", inject.KeyOpaquePorts, "ports proxied as TCP without protocol detection"},
	{"proxy-log-level", inject.KeyLogLevel, "proxy log level: debug, info, warn or error"},
	{"proxy-cpu-request", inject.KeyCPURequest, "proxy CPU request"},
	{"proxy-cpu-limit", inject.KeyCPULimit, "proxy CPU limit"},
	{"proxy-memory-request", inject.KeyMemoryRequest, "proxy memory request"},
	{"proxy-memory-limit", inject.KeyMemoryLimit, "proxy memory limit"},
	{"native-sidecar", inject.KeyNativeSidecar, "run the proxy as a native sidecar (true) or as the first container (false)"},
	{"default-inject", inject.KeyDefaultInject, "enabled or disabled, for workloads and namespaces that do not say"},
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := pflag.NewFlagSet("conduit-inject", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: conduit-inject [flags] [FILE|DIR|-]...\n\n"+
			"Adds the Conduit proxy to the workloads in the input. A ResourceList on standard\n"+
			"input (kustomize, kpt) is answered with a ResourceList; any other YAML with YAML.\n\n")
		fs.PrintDefaults()
	}
	opts := frontend.Options{}
	fs.StringVar(&opts.ConfigFile, "config", "", "a ProxyInjector (or ConfigMap) file to configure the injector")
	values := make([]string, len(settingFlags))
	defaults := inject.Defaults()
	for i, f := range settingFlags {
		fs.StringVar(&values[i], f.flag, defaultText(defaults, f.key), f.usage)
	}
	fs.Lookup("native-sidecar").NoOptDefVal = "true"
	showVersion := fs.Bool("version", false, "print the version and exit")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return 0
		}
		return 2
	}
	if *showVersion {
		fmt.Fprintln(stdout, "conduit-inject", version.Version)
		return 0
	}
	for i, f := range settingFlags {
		if fs.Changed(f.flag) {
			opts.Settings = append(opts.Settings, inject.Setting{Key: f.key, Field: "--" + f.flag, Value: values[i]})
		}
	}
	opts.Inputs = fs.Args()
	if err := frontend.Run(opts, stdin, stdout, stderr); err != nil {
		fmt.Fprintln(stderr, "conduit-inject:", err)
		return 1
	}
	return 0
}

func defaultText(c inject.Config, key string) string {
	switch key {
	case inject.KeyImage:
		return c.Image
	case inject.KeyControlPlaneNamespace:
		return c.ControlPlaneNamespace
	case inject.KeyOpaquePorts:
		return c.OpaquePorts.String()
	case inject.KeyLogLevel:
		return c.LogLevel
	case inject.KeyNativeSidecar:
		return fmt.Sprint(c.NativeSidecar)
	case inject.KeyDefaultInject:
		return c.DefaultInject
	}
	return ""
}
