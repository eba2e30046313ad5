// Package tap streams live requests from the proxies of a resource's pods:
// it follows the pods as they come and go, opens each one's tap stream
// (through the API server's pods/proxy subresource), reconnects when a
// stream breaks, and merges the streams into one output.
package tap

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/conduitmesh/conduit/meshstat/kube"
	"github.com/conduitmesh/conduit/pkg/contract"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"
)

// Output formats.
const (
	OutputLine = "" // the seed's line format
	OutputWide = "wide"
	OutputJSON = "json"
)

// Options is one `meshstat tap` invocation.
type Options struct {
	Target     string // KIND/NAME
	Namespace  string
	Method     string
	PathPrefix string
	Authority  string
	MaxRPS     int // 0: the proxy's default
	Output     string
	// ShowQuery asks the proxies for the values in paths' query strings,
	// which they redact by default.
	ShowQuery bool
}

// Validate checks the options on their own, before any request.
func (o Options) Validate() error {
	if _, _, err := kube.ParseRef(o.Target); err != nil {
		return err
	}
	if o.MaxRPS < 0 {
		return fmt.Errorf("--max-rps %d: want a positive number of requests per second", o.MaxRPS)
	}
	if o.PathPrefix != "" && !strings.HasPrefix(o.PathPrefix, "/") {
		return fmt.Errorf("--path %q: a path prefix starts with /", o.PathPrefix)
	}
	if strings.ContainsAny(o.Method, " \t/") {
		return fmt.Errorf("--method %q: want an HTTP method such as GET or POST", o.Method)
	}
	switch o.Output {
	case OutputLine, OutputWide, OutputJSON:
	default:
		return fmt.Errorf("-o %q: want json or wide (or nothing for the default lines)", o.Output)
	}
	return nil
}

type config struct {
	retryMin, retryMax time.Duration
	resync             time.Duration
}

// Option configures Run.
type Option func(*config)

// WithRetry sets the first and the longest wait before reopening a broken
// stream.
func WithRetry(first, longest time.Duration) Option {
	return func(c *config) { c.retryMin, c.retryMax = first, longest }
}

// Run taps o.Target until ctx ends (then it returns nil) or a failure that
// retrying cannot fix. Events go to out; notices (reconnects, drops) to
// errOut.
func Run(ctx context.Context, o Options, kc kube.Client, opener Opener, out, errOut io.Writer, opts ...Option) error {
	cfg := config{retryMin: 250 * time.Millisecond, retryMax: 5 * time.Second}
	for _, opt := range opts {
		opt(&cfg)
	}
	kind, name, err := kube.ParseRef(o.Target)
	if err != nil {
		return err
	}
	ns := o.Namespace
	if kind == kube.Namespace {
		ns = name
	}
	ws, err := kc.Workloads(ctx, kind, ns, name, "")
	if err != nil {
		return err
	}
	w := ws[0]

	// One list first: it proves the permission and finds the pods, so
	// "nothing to tap" is an error rather than a silent wait.
	pods, err := kc.Pods(ctx, ns)
	if err != nil {
		return err
	}
	meshed, running := kube.Meshed(w, pods)
	if meshed == 0 {
		what := fmt.Sprintf("%s/%s in namespace %q", kind.Short, name, ns)
		if running == 0 {
			return fmt.Errorf("no meshed pods: %s has no running pods", what)
		}
		return fmt.Errorf("no meshed pods: %s has %d running pods, none with the %s container: inject it with conduit-inject and roll it out", what, running, contract.ProxyContainerName)
	}

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	query := Query(o.Method, o.Authority, o.PathPrefix, o.MaxRPS)
	if o.ShowQuery {
		query.Set(contract.TapParamQuery, "1")
	}
	m := &merger{
		ctx: ctx, fail: cancel, opener: opener, query: query,
		events: make(chan Event, 256), notices: make(chan string, 64), cfg: cfg,
		streams: map[string]*stream{},
	}

	factory := informers.NewSharedInformerFactoryWithOptions(kc.CS, cfg.resync,
		informers.WithNamespace(ns),
		informers.WithTweakListOptions(func(lo *metav1.ListOptions) { lo.LabelSelector = w.PodSelector() }))
	inf := factory.Core().V1().Pods().Informer()
	onPod := func(obj any) {
		p, ok := obj.(*corev1.Pod)
		switch {
		case !ok:
		case w.Selects(p):
			m.reconcile(p)
		default: // relabelled out of the selection
			m.stop(p.Name)
		}
	}
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    onPod,
		UpdateFunc: func(_, obj any) { onPod(obj) },
		DeleteFunc: func(obj any) {
			if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = d.Obj
			}
			if p, ok := obj.(*corev1.Pod); ok {
				m.stop(p.Name)
			}
		},
	}); err != nil {
		return err
	}
	factory.Start(ctx.Done())
	defer func() {
		cancel(nil)
		factory.Shutdown()
		m.wg.Wait()
	}()

	maxRPS := o.MaxRPS
	for {
		select {
		case <-ctx.Done():
			if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) {
				return err
			}
			return nil
		case n := <-m.notices:
			fmt.Fprintln(errOut, "meshstat tap: "+n)
		case e := <-m.events:
			var line string
			switch {
			case o.Output == OutputJSON:
				line = JSON(e)
			case e.Type == contract.TapDropped:
				fmt.Fprintln(errOut, "meshstat tap: "+DroppedNotice(e, maxRPS))
				continue
			default:
				line = Line(e, o.Output == OutputWide)
			}
			if _, err := io.WriteString(out, line+"\n"); err != nil {
				return err
			}
		}
	}
}

// merger runs one stream per tapped pod and funnels their events into one
// channel, so one goroutine writes the output.
type merger struct {
	ctx     context.Context
	fail    context.CancelCauseFunc
	opener  Opener
	query   url.Values
	events  chan Event
	notices chan string
	cfg     config
	wg      sync.WaitGroup

	mu      sync.Mutex
	streams map[string]*stream // by pod name
}

type stream struct {
	uid    types.UID
	cancel context.CancelFunc
}

// reconcile starts tapping a running meshed pod and stops tapping one
// that is no longer running; a pod re-created under the same name gets a
// new stream.
func (m *merger) reconcile(p *corev1.Pod) {
	want := kube.IsRunning(p) && kube.IsMeshed(p) && p.Status.PodIP != ""
	m.mu.Lock()
	defer m.mu.Unlock()
	s, have := m.streams[p.Name]
	if have && (!want || s.uid != p.UID) {
		m.drop(p.Name, s)
		have = false
	}
	if !want || have || m.ctx.Err() != nil {
		return
	}
	ctx, cancel := context.WithCancel(m.ctx)
	m.streams[p.Name] = &stream{uid: p.UID, cancel: cancel}
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		m.follow(ctx, Pod{Namespace: p.Namespace, Name: p.Name})
	}()
}

func (m *merger) stop(name string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if s, ok := m.streams[name]; ok {
		m.drop(name, s)
	}
}

// drop ends a pod's stream; m.mu is held. When it was the last one, the
// user hears that tap is waiting rather than silence.
func (m *merger) drop(name string, s *stream) {
	s.cancel()
	delete(m.streams, name)
	if len(m.streams) == 0 && m.ctx.Err() == nil {
		select {
		case m.notices <- fmt.Sprintf("pod %s is gone; no running meshed pod left: waiting for new ones (Ctrl-C to stop)", name):
		default:
		}
	}
}

func (m *merger) notice(ctx context.Context, format string, args ...any) {
	select {
	case m.notices <- fmt.Sprintf(format, args...):
	case <-ctx.Done():
	}
}

// follow keeps p's stream open until ctx ends, waiting longer after each
// failure in a row (up to retryMax) and starting over after a stream that
// delivered events.
func (m *merger) follow(ctx context.Context, p Pod) {
	wait := m.cfg.retryMin
	for attempt := 0; ; attempt++ {
		rc, err := m.opener.Open(ctx, p, m.query)
		if ctx.Err() != nil {
			if rc != nil {
				rc.Close()
			}
			return
		}
		var fatal *FatalError
		if errors.As(err, &fatal) {
			m.fail(fatal)
			return
		}
		if err == nil {
			if attempt > 0 {
				m.notice(ctx, "pod %s: tap stream reopened", p)
			}
			n, rerr := m.read(ctx, p, rc)
			rc.Close()
			if ctx.Err() != nil {
				return
			}
			if n > 0 {
				wait = m.cfg.retryMin
			}
			err = rerr
			if err == nil {
				err = errors.New("the proxy closed it")
			}
			err = fmt.Errorf("tap stream ended: %w", err)
		}
		m.notice(ctx, "pod %s: %v; retrying in %s", p, err, wait)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, m.cfg.retryMax)
	}
}

// read forwards the events of one stream and returns how many it read.
func (m *merger) read(ctx context.Context, p Pod, r io.Reader) (int, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	n := 0
	for sc.Scan() {
		line := sc.Bytes()
		if len(line) == 0 {
			continue
		}
		e := Event{Namespace: p.Namespace, Pod: p.Name}
		if err := json.Unmarshal(line, &e.TapEvent); err != nil {
			return n, fmt.Errorf("bad event %q: %v", truncate(line), err)
		}
		n++
		select {
		case m.events <- e:
		case <-ctx.Done():
			return n, nil
		}
	}
	return n, sc.Err()
}

func truncate(b []byte) string {
	if len(b) > 80 {
		return string(b[:80]) + "..."
	}
	return string(b)
}
