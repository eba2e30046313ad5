// Package cli is meshstat's command line: it parses the flags of a
// subcommand into its options, validates them, connects to the cluster
// and to Prometheus, and runs package stat or tap. It only reads.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/conduitmesh/conduit/meshstat/kube"
	"github.com/conduitmesh/conduit/meshstat/prom"
	"github.com/conduitmesh/conduit/meshstat/stat"
	"github.com/conduitmesh/conduit/meshstat/tap"
	"github.com/conduitmesh/conduit/pkg/contract"
	"github.com/conduitmesh/conduit/pkg/version"
	"github.com/spf13/pflag"
	"k8s.io/client-go/rest"
)

const usage = `meshstat shows the golden signals and live requests of meshed workloads.
It only reads from the cluster.

Usage:
  meshstat stat KIND [NAME] [-n NS | -A] [-t WINDOW] [--from RES | --to RES] [-l SELECTOR] [-o table|wide|json]
  meshstat tap KIND/NAME [-n NS] [--method M] [--path PREFIX] [--authority A] [--max-rps N] [--show-query] [-o json|wide]
  meshstat version

KIND is one of ` + "deploy, sts, ds, job, pod, ns" + `. Run "meshstat stat --help" or "meshstat tap --help" for the flags.
`

// errUsage marks bad command lines (exit status 2).
var errUsage = errors.New("usage")

// errUsageSilent wraps errUsage without adding to a message.
var errUsageSilent = silent{}

type silent struct{}

func (silent) Error() string        { return "" }
func (silent) Is(target error) bool { return target == errUsage }

// Main runs meshstat with args (without the program name) and returns the
// exit status: 0 success, 1 failure, 2 bad command line.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	err := run(ctx, args, stdout, stderr)
	switch {
	case err == nil, errors.Is(err, pflag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		if err != errUsage {
			fmt.Fprintln(stderr, "meshstat:", err)
		}
		return 2
	}
	fmt.Fprintln(stderr, "meshstat:", err)
	return 1
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errUsage
	}
	switch args[0] {
	case "stat":
		return runStat(ctx, args[1:], stdout, stderr)
	case "tap":
		return runTap(ctx, args[1:], stdout, stderr)
	case "version":
		fmt.Fprintln(stdout, "meshstat", version.Version)
		return nil
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprintf(stderr, "meshstat: unknown command %q\n\n%s", args[0], usage)
	return errUsage
}

// clusterFlags are the flags both commands share.
type clusterFlags struct {
	kube.ConfigFlags
	namespace string
}

func (c *clusterFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&c.Kubeconfig, "kubeconfig", "", "the kubeconfig file (default: KUBECONFIG, then ~/.kube/config)")
	fs.StringVar(&c.Context, "context", "", "the kubeconfig context (default: its current context)")
	fs.StringVarP(&c.namespace, "namespace", "n", "", "the namespace (default: the context's)")
}

// connect loads the kubeconfig and returns the client, its REST config and
// the namespace to use.
func (c clusterFlags) connect() (kube.Client, *rest.Config, string, error) {
	cfg, ns, err := c.Load()
	if err != nil {
		return kube.Client{}, nil, "", err
	}
	if c.namespace != "" {
		ns = c.namespace
	}
	kc, err := kube.NewClient(cfg)
	if err != nil {
		return kube.Client{}, nil, "", err
	}
	kc.Host = hostURL(cfg)
	return kc, cfg, ns, nil
}

// hostURL is the API server's base URL with its scheme.
func hostURL(cfg *rest.Config) string {
	h := strings.TrimSuffix(cfg.Host, "/")
	if !strings.Contains(h, "://") {
		if cfg.TLSClientConfig.Insecure || len(cfg.TLSClientConfig.CAData) > 0 || cfg.TLSClientConfig.CAFile != "" || len(cfg.TLSClientConfig.CertData) > 0 {
			return "https://" + h
		}
		return "http://" + h
	}
	return h
}

// statOptions are the flags of `meshstat stat`.
type statOptions struct {
	clusterFlags
	stat.Options
	controlPlaneNS string
	prometheusURL  string
	timeout        time.Duration
}

func (o statOptions) validate() error {
	opts := o.Options
	opts.Namespace = o.namespace
	if err := opts.Validate(); err != nil {
		return err
	}
	if o.prometheusURL != "" {
		if _, err := prom.New(o.prometheusURL); err != nil {
			return err
		}
	}
	if o.controlPlaneNS == "" {
		return fmt.Errorf("--control-plane-namespace: must not be empty")
	}
	if o.timeout <= 0 {
		return fmt.Errorf("--timeout %s: must be positive", o.timeout)
	}
	return nil
}

func runStat(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var o statOptions
	fs := pflag.NewFlagSet("meshstat stat", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: meshstat stat KIND [NAME] [flags]\n\nKIND: %s\n\nFlags:\n%s", kube.KindNames(), fs.FlagUsages())
	}
	o.register(fs)
	fs.BoolVarP(&o.AllNamespaces, "all-namespaces", "A", false, "every namespace")
	fs.StringVarP(&o.Window, "time-window", "t", stat.DefaultWindow, "the window of the rates, a Prometheus duration")
	fs.StringVar(&o.From, "from", "", "only requests sent by RES (KIND/NAME, in the namespace)")
	fs.StringVar(&o.To, "to", "", "only requests sent to RES (KIND/NAME or svc/NAME, in the namespace)")
	fs.StringVarP(&o.LabelSelector, "selector", "l", "", "only resources with these labels (e.g. app=web)")
	fs.StringVarP(&o.Output, "output", "o", stat.OutputTable, "table, wide or json")
	fs.StringVar(&o.controlPlaneNS, "control-plane-namespace", contract.DefaultControlPlaneNamespace, "the namespace of Conduit's control plane and its Prometheus")
	fs.StringVar(&o.prometheusURL, "prometheus-url", "", "query this Prometheus instead of the bundled one (reached through the API server)")
	fs.DurationVar(&o.timeout, "timeout", 30*time.Second, "give up after this long")
	if err := fs.Parse(args); err != nil {
		return usageErr(err)
	}
	switch fs.NArg() {
	case 1:
		o.Kind = fs.Arg(0)
	case 2:
		o.Kind, o.Name = fs.Arg(0), fs.Arg(1)
	default:
		fmt.Fprintln(stderr, "meshstat stat: want KIND [NAME], e.g. meshstat stat deploy web")
		fs.Usage()
		return errUsage
	}
	if err := o.validate(); err != nil {
		return err
	}
	kc, cfg, ns, err := o.connect()
	if err != nil {
		return err
	}
	if !o.AllNamespaces {
		o.Namespace = ns
	}
	q, err := o.prometheus(cfg)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	err = stat.Run(ctx, o.Options, kc, q, stdout)
	var pe *prom.Error
	if errors.As(err, &pe) && pe.Status == http.StatusForbidden && o.prometheusURL == "" {
		return fmt.Errorf("forbidden: you may not get services/proxy %s in namespace %s (the bundled Prometheus): %s",
			contract.PrometheusServiceName, o.controlPlaneNS, kube.RoleHint)
	}
	if err != nil && errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("no answer from the API server %s or Prometheus %s within %s (--timeout): %w", kc.Host, q.URL(), o.timeout, err)
	}
	return err
}

// prometheus is the client for --prometheus-url, or for the bundled
// Prometheus through the API server's services/proxy subresource.
func (o statOptions) prometheus(cfg *rest.Config) (*prom.Client, error) {
	if o.prometheusURL != "" {
		return prom.New(o.prometheusURL, prom.WithHint("check --prometheus-url"))
	}
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return nil, fmt.Errorf("HTTP client for the API server %s: %w", cfg.Host, err)
	}
	base := fmt.Sprintf("%s/api/v1/namespaces/%s/services/%s:%d/proxy",
		hostURL(cfg), o.controlPlaneNS, contract.PrometheusServiceName, contract.PrometheusPort)
	hint := fmt.Sprintf("is Conduit's control plane installed in namespace %q with its Prometheus ready (kubectl -n %s get pods)? "+
		"Use --control-plane-namespace, or --prometheus-url for another Prometheus", o.controlPlaneNS, o.controlPlaneNS)
	return prom.New(base, prom.WithHTTPClient(hc), prom.WithHint(hint))
}

// tapOptions are the flags of `meshstat tap`.
type tapOptions struct {
	clusterFlags
	tap.Options
}

func (o tapOptions) validate() error {
	opts := o.Options
	return opts.Validate()
}

func runTap(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var o tapOptions
	fs := pflag.NewFlagSet("meshstat tap", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: meshstat tap KIND/NAME [flags]\n\nKIND: %s\nStops on Ctrl-C.\n\nFlags:\n%s", kube.KindNames(), fs.FlagUsages())
	}
	o.register(fs)
	fs.StringVar(&o.Method, "method", "", "only requests with this method")
	fs.StringVar(&o.PathPrefix, "path", "", "only requests whose path starts with this")
	fs.StringVar(&o.Authority, "authority", "", "only requests with this :authority")
	fs.IntVar(&o.MaxRPS, "max-rps", 0, fmt.Sprintf("the most requests per second shown from each pod (default: the proxy's, %d)", contract.TapDefaultMaxRPS))
	fs.BoolVar(&o.ShowQuery, "show-query", false, "show the values in paths' query strings (the proxies replace them with <redacted> by default)")
	fs.StringVarP(&o.Output, "output", "o", "", "json or wide (default: one line per event)")
	if err := fs.Parse(args); err != nil {
		return usageErr(err)
	}
	if fs.NArg() != 1 {
		fmt.Fprintln(stderr, "meshstat tap: want KIND/NAME, e.g. meshstat tap deploy/web")
		fs.Usage()
		return errUsage
	}
	o.Target = fs.Arg(0)
	if err := o.validate(); err != nil {
		return err
	}
	kc, cfg, ns, err := o.connect()
	if err != nil {
		return err
	}
	o.Namespace = ns
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return fmt.Errorf("HTTP client for the API server %s: %w", cfg.Host, err)
	}
	return tap.Run(ctx, o.Options, kc, tap.PodProxy{Host: kc.Host, Client: streaming(hc)}, stdout, stderr)
}

// streaming is hc without a whole-request timeout: a tap stream lasts
// until Ctrl-C.
func streaming(hc *http.Client) *http.Client {
	c := *hc
	c.Timeout = 0
	return &c
}

func usageErr(err error) error {
	if errors.Is(err, pflag.ErrHelp) {
		return err
	}
	return fmt.Errorf("%v (see --help)%w", err, errUsageSilent)
}
