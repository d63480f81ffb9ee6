// Package broker holds MCP tool calls until policy or a person lets them
// through.
//
// A Session joins one MCP client to one session of an upstream server and
// relays JSON-RPC between them untouched, except at the gate: every
// tools/call passes through Broker.gate before it is forwarded. Clients
// reach a session over stdio (ServeConn) or streamable HTTP (HTTPHandler).
//
// The core never imports its plugins: stores, notifiers and the web UI plug
// in through the small interfaces declared here.
package broker
