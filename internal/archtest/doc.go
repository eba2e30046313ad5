// Package archtest holds the test that keeps ARCHITECTURE.md's dependency
// rule true: a component imports the contract and the shared packages
// (pkg/, internal/), never another component's packages.
package archtest
