// Package broker is Airlock's approval core: it decides every MCP tool
// call the relay hands it, holds the calls people must decide, takes their
// votes from every channel, and keeps approvals, grants and the audit log
// in a Store.
//
// The relay (package relay) knows MCP; the core knows nothing of JSON-RPC.
// They meet at one seam (call.go): the relay hands Check a Call and a
// Caller for what the core may ask of the client while it waits, and
// carries out the Outcome.
//
// The core never imports its plugins: stores, notifiers and the web UI plug
// in through the small interfaces declared here.
package broker
