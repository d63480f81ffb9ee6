// Package rego is Airlock's shipped policy library, compiled into the binary
// so that Airlock is safe with no configuration at all.
//
// The files are plain Rego (OPA v1 syntax): airlock.rego is the entry point
// Airlock evaluates (data.airlock.decision), baseline.rego the default
// policy, and examples/ holds policies for common servers that a user can
// adopt. Package policy loads FS; `airlock policy init DIR` copies it out so
// it can be edited. Each rule has a test in a *_test.rego file next to it.
package rego

import "embed"

// FS holds the library: *.rego files at the root and under examples/.
//
//go:embed *.rego examples/*.rego
var FS embed.FS
