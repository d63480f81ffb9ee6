// Package ui is Airlock's web page for people: what waits for approval,
// everything about one held call, who decided what, and which policy is in
// force.
//
// Not every team has Slack, and even those that do need one place to read a
// call's full arguments and look back at decisions. The pages are templ
// components rendered on the server (templ escapes every value, and tool
// calls are written by a model that may have been prompt-injected); a small
// embedded script keeps the pending list live over server-sent events. The
// page runs under a strict Content-Security-Policy: no inline script or
// style, nothing from another origin.
//
// People sign in with a one-time link the broker prints (or `airlock login`
// asks for), or through an OpenID Connect provider. Either way a session
// cookie names the approver, and every vote cast here records that name
// through broker.Vote, the one call every channel votes through; the pages
// ask Approval.CheckVote which actions to offer.
package ui

// The generated files carry no templ version: a comment above their package
// clause would be taken for this package's documentation.
//go:generate go tool templ generate -include-version=false -path .
