package main

import (
	"os"
	"runtime/debug"
)

// tuneRuntime keeps the heap small: the proxy's live heap is a few hundred
// kilobytes, so the collector runs against a modest target instead of
// letting garbage grow to the default 4 MB minimum. GOGC and GOMEMLIMIT in
// the environment still win.
func tuneRuntime() {
	if _, ok := os.LookupEnv("GOMEMLIMIT"); !ok {
		debug.SetMemoryLimit(12 << 20)
	}
}
