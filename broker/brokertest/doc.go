// Package brokertest holds shared test parts for the approval core and its
// plugins: a core harness with a fake Caller (no MCP), a recording
// notifier, an in-memory store and one that fails on demand, the store
// conformance suite, policies written in Go, waiting and logging helpers,
// and helpers for tests that need real tools.
package brokertest
