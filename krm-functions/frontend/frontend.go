// Package frontend runs the injector the three ways platform teams call
// it: as a KRM function (kpt, kustomize's exec plugins: a ResourceList in, a
// ResourceList out) and as a plain filter in CI pipelines (multi-document
// YAML or a List in, the same shape out). Every way reads its input into
// kyaml nodes, runs the one inject library, and writes the nodes back, so
// the injected resources are the same bytes whichever way was used.
package frontend

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"sigs.k8s.io/kustomize/kyaml/fn/framework"
	"sigs.k8s.io/kustomize/kyaml/kio"
	"sigs.k8s.io/kustomize/kyaml/yaml"

	"github.com/conduitmesh/conduit/krm-functions/inject"
)

// Options say what to read and how to configure the injector.
type Options struct {
	// Inputs are files, directories (their .yaml, .yml and .json files,
	// recursively, in lexical order) or "-" for standard input. None means
	// standard input.
	Inputs []string
	// ConfigFile is a ProxyInjector or ConfigMap file.
	ConfigFile string
	// Settings override the functionConfig and ConfigFile, in order.
	Settings []inject.Setting
}

func (o Options) validate() error {
	stdin := 0
	for _, in := range o.Inputs {
		if in == "-" {
			stdin++
		}
	}
	if stdin > 1 {
		return errors.New("standard input (-) can be read only once")
	}
	return nil
}

// ErrInvalid is returned, wrapped, when the input or configuration is bad.
// The details have been written to stderr.
var ErrInvalid = errors.New("injection failed")

// Run reads the inputs, injects them and writes the result to stdout. A
// ResourceList input is answered with a ResourceList carrying the results;
// any other input with plain YAML, skips and warnings going to stderr.
// On error nothing is written to stdout, except a KRM function's
// ResourceList holding the unchanged items and the error results.
func Run(o Options, stdin io.Reader, stdout, stderr io.Writer) error {
	if err := o.validate(); err != nil {
		return err
	}
	docs, err := readInputs(o.Inputs, stdin)
	if err != nil {
		return err
	}
	if len(docs) == 1 && isResourceList(docs[0].data) {
		return runFunction(o, docs[0].data, stdout, stderr)
	}
	return runFilter(o, docs, stdout, stderr)
}

type input struct {
	name string
	data []byte
}

func readInputs(paths []string, stdin io.Reader) ([]input, error) {
	if len(paths) == 0 {
		paths = []string{"-"}
	}
	var docs []input
	for _, p := range paths {
		if p == "-" {
			b, err := io.ReadAll(stdin)
			if err != nil {
				return nil, fmt.Errorf("reading standard input: %w", err)
			}
			docs = append(docs, input{"standard input", b})
			continue
		}
		files, err := expand(p)
		if err != nil {
			return nil, err
		}
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				return nil, err
			}
			docs = append(docs, input{f, b})
		}
	}
	return docs, nil
}

// expand lists a directory's manifest files, or returns a file as it is.
func expand(path string) ([]string, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !st.IsDir() {
		return []string{path}, nil
	}
	var files []string
	err = filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		switch strings.ToLower(filepath.Ext(p)) {
		case ".yaml", ".yml", ".json":
			if !d.IsDir() {
				files = append(files, p)
			}
		}
		return nil
	})
	slices.Sort(files)
	return files, err
}

func isResourceList(data []byte) bool {
	n, err := yaml.Parse(string(data))
	if err != nil {
		return false
	}
	m, err := n.GetMeta()
	return err == nil && m.Kind == kio.ResourceListKind
}

// config builds the injector's configuration: defaults, then the
// functionConfig, then the config file, then the settings.
func config(o Options, functionConfig *yaml.RNode) (inject.Config, error) {
	cfg, err := inject.FromFunctionConfig(inject.Defaults(), functionConfig)
	if err != nil {
		return cfg, err
	}
	if o.ConfigFile != "" {
		b, err := os.ReadFile(o.ConfigFile)
		if err != nil {
			return cfg, err
		}
		fc, err := yaml.Parse(string(b))
		if err != nil {
			return cfg, fmt.Errorf("%s: %w", o.ConfigFile, err)
		}
		if cfg, err = inject.FromFunctionConfig(cfg, fc); err != nil {
			return cfg, fmt.Errorf("%s: %w", o.ConfigFile, err)
		}
	}
	return inject.ApplySettings(cfg, "command line", o.Settings)
}

func runFunction(o Options, data []byte, stdout, stderr io.Writer) error {
	rw := &kio.ByteReadWriter{Reader: bytes.NewReader(data), KeepReaderAnnotations: true}
	items, err := rw.Read()
	if err != nil {
		return fmt.Errorf("%w: reading the ResourceList: %v", ErrInvalid, err)
	}
	var out []*yaml.RNode
	var results framework.Results
	cfg, err := config(o, rw.FunctionConfig)
	if err == nil {
		var inj *inject.Injector
		if inj, err = inject.New(cfg); err == nil {
			out, results = inj.Inject(items)
		}
	}
	if err != nil {
		out = items
		results = append(results, &framework.Result{Severity: framework.Error, Message: err.Error()})
	}
	var resultsYAML *yaml.RNode
	if len(results) > 0 {
		if resultsYAML, err = resultsNode(results); err != nil {
			return err
		}
	}
	var buf bytes.Buffer
	if err := writeResourceList(&buf, out, rw.FunctionConfig, resultsYAML); err != nil {
		return err
	}
	if inject.HasErrors(results) {
		// kustomize shows a function's stderr; kpt shows its results.
		report(stderr, results, framework.Error)
		_, _ = stdout.Write(buf.Bytes())
		return fmt.Errorf("%w: %d error(s)", ErrInvalid, countErrors(results))
	}
	_, err = stdout.Write(buf.Bytes())
	return err
}

// writeResourceList prints a ResourceList as kio.ByteWriter does, but
// encodes each item on its own: the YAML encoder slows down more than
// linearly on one document with thousands of resources.
func writeResourceList(w io.Writer, items []*yaml.RNode, functionConfig, results *yaml.RNode) error {
	fmt.Fprintf(w, "apiVersion: %s\nkind: %s\n", kio.ResourceListAPIVersion, kio.ResourceListKind)
	if len(items) == 0 {
		fmt.Fprint(w, "items: []\n")
	} else {
		fmt.Fprint(w, "items:\n")
	}
	for _, item := range items {
		list := &yaml.Node{Kind: yaml.SequenceNode, Content: []*yaml.Node{item.YNode()}}
		if err := encode(w, list); err != nil {
			return err
		}
	}
	rest := &yaml.Node{Kind: yaml.MappingNode}
	for _, f := range []struct {
		key  string
		node *yaml.RNode
	}{{"functionConfig", functionConfig}, {"results", results}} {
		if f.node != nil {
			rest.Content = append(rest.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: f.key}, f.node.YNode())
		}
	}
	if len(rest.Content) == 0 {
		return nil
	}
	return encode(w, rest)
}

func encode(w io.Writer, n *yaml.Node) error {
	enc := yaml.NewEncoder(w)
	if err := enc.Encode(&yaml.Node{Kind: yaml.DocumentNode, Content: []*yaml.Node{n}}); err != nil {
		return err
	}
	return enc.Close()
}

func resultsNode(rs framework.Results) (*yaml.RNode, error) {
	b, err := yaml.Marshal(rs)
	if err != nil {
		return nil, err
	}
	return yaml.Parse(string(b))
}

func runFilter(o Options, docs []input, stdout, stderr io.Writer) error {
	cfg, err := config(o, nil)
	if err != nil {
		return err
	}
	inj, err := inject.New(cfg)
	if err != nil {
		return err
	}
	var nodes []*yaml.RNode
	var wrapKind, wrapAPIVersion string
	for _, d := range docs {
		r := &kio.ByteReader{Reader: bytes.NewReader(d.data), PreserveSeqIndent: true}
		ns, err := r.Read()
		if err != nil {
			return fmt.Errorf("%w: %s: %v", ErrInvalid, d.name, err)
		}
		if len(docs) == 1 {
			wrapKind, wrapAPIVersion = r.WrappingKind, r.WrappingAPIVersion
		}
		nodes = append(nodes, ns...)
	}
	out, results := inj.Inject(nodes)
	if inject.HasErrors(results) {
		report(stderr, results, framework.Error)
		return fmt.Errorf("%w: %d error(s)", ErrInvalid, countErrors(results))
	}
	report(stderr, results, framework.Info, framework.Warning)
	var buf bytes.Buffer
	w := kio.ByteWriter{Writer: &buf, WrappingKind: wrapKind, WrappingAPIVersion: wrapAPIVersion}
	if err := w.Write(out); err != nil {
		return err
	}
	_, err = stdout.Write(buf.Bytes())
	return err
}

// report writes the results of the given severities, one a line.
func report(w io.Writer, rs framework.Results, severities ...framework.Severity) {
	for _, r := range rs {
		if slices.Contains(severities, r.Severity) {
			fmt.Fprintf(w, "conduit-inject: %s: %s\n", r.Severity, r.Message)
		}
	}
}

func countErrors(rs framework.Results) int {
	n := 0
	for _, r := range rs {
		if r.Severity == framework.Error {
			n++
		}
	}
	return n
}
