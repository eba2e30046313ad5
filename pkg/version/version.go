// Package version holds Conduit's release version, stamped into the
// binaries and into what the injector writes.
package version

// Version is the release this tree builds. Release builds may override it
// with -ldflags "-X github.com/conduitmesh/conduit/pkg/version.Version=...".
var Version = "v0.1.0"
