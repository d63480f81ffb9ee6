// Package brokertest holds shared test parts for the approval core and its
// plugins: an in-memory store, the store conformance suite, policies
// written in Go, and helpers for tests that need real tools.
package brokertest
