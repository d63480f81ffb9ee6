package policy

import (
	"slices"
	"strings"
	"sync"

	"github.com/open-policy-agent/opa/v1/ast"
)

// What a policy may call, and which of those calls let its decisions be
// remembered, are read from OPA's own description of its built-ins: a
// built-in marked Nondeterministic can answer the same arguments two ways,
// and one marked CanSkipBctx needs nothing from the evaluation it runs in
// (no clock, no random seed, no print hook, no tracers), so it is a
// function of its arguments. The lists below name only what that metadata
// does not say, each with the reason; TestBuiltinsAreClassified fails when
// an OPA upgrade brings a built-in they do not account for.
//
// Categories are not used: they are documentation groups ("strings",
// "tokens"), and say nothing about what a built-in reads.

// reachingOut are built-ins a policy may not call although OPA need not
// mark them nondeterministic: they reach outside the call. A policy judges
// one call from its input and its own files; nothing else may reach it and
// it may reach nothing, so a decision can be replayed from the audit record.
// A name ending in "." removes every built-in under it.
var reachingOut = []string{
	"http.send",   // network
	"net.",        // net.lookup_ip_addr does DNS; the CIDR helpers go too, so the rule is simply "no net.*"
	"opa.runtime", // environment variables and process config
	// A schema's $ref may point at http:// or file:// URLs, and
	// input.tool.input_schema comes from the (untrusted) server.
	"json.match_schema",
	"json.verify_schema",
}

// keptNondeterministic are the built-ins OPA marks Nondeterministic that a
// policy may still call. Every other nondeterministic built-in is removed
// (time.now_ns, rand.intn, uuid.rfc4122 today): decisions must depend only
// on the input, input.time is the clock, and there is no source of
// randomness. These three were always callable and policies use them for
// tokens; the memo refuses a policy that calls one.
var keptNondeterministic = map[string]bool{
	"io.jwt.decode_verify":   true, // checks exp and nbf against the clock, which Airlock sets to input.time
	"io.jwt.encode_sign":     true, // ECDSA and RSA-PSS signatures draw random numbers
	"io.jwt.encode_sign_raw": true,
}

// removedBuiltin reports whether b is taken out of policies' reach: every
// nondeterministic built-in but keptNondeterministic, and reachingOut. A
// built-in a later OPA marks nondeterministic is removed without a change
// here, which only ever narrows what a policy may call.
func removedBuiltin(b *ast.Builtin) bool {
	if b.Nondeterministic && !keptNondeterministic[b.Name] {
		return true
	}
	for _, name := range reachingOut {
		if b.Name == name || (strings.HasSuffix(name, ".") && strings.HasPrefix(b.Name, name)) {
			return true
		}
	}
	return false
}

// capabilities are OPA's for this version minus the removed built-ins.
// Every compile of a policy (the engine, check, test) uses them, so a
// policy that passes `airlock policy test` cannot fail to load for lack of
// a built-in.
func capabilities() *ast.Capabilities {
	caps := ast.CapabilitiesForThisVersion()
	caps.Builtins = slices.DeleteFunc(caps.Builtins, removedBuiltin)
	return caps
}

// callable are the built-ins a policy may call, by name.
var callable = sync.OnceValue(func() map[string]*ast.Builtin {
	m := make(map[string]*ast.Builtin)
	for _, b := range capabilities().Builtins {
		m[b.Name] = b
	}
	return m
})

// effects are built-ins whose point is what they do besides their answer,
// which a remembered decision would skip: print writes to Airlock's debug
// log (the compiler turns print into internal.print), trace and
// internal.test_case report to the evaluation's tracers.
var effects = map[string]bool{
	ast.Print.Name:            true,
	ast.InternalPrint.Name:    true,
	ast.Trace.Name:            true,
	ast.InternalTestCase.Name: true,
}

// wallClock are built-ins that OPA marks deterministic and free of the
// evaluation's context, but that read the machine's clock: crypto/x509
// checks a certificate's validity period against time.Now unless the
// options name a CurrentTime.
var wallClock = map[string]bool{
	"crypto.x509.parse_and_verify_certificates":              true,
	"crypto.x509.parse_and_verify_certificates_with_options": true,
}

// contextForSpeed are deterministic built-ins that OPA gives the
// evaluation's context (CanSkipBctx false) only to stop a long computation
// when the evaluation is cancelled, or to cache what they compiled (a
// regular expression, a glob, a GraphQL schema, a verified JWT signature)
// keyed by their arguments. A cancelled evaluation fails closed and is never
// remembered; a cache gives the answer it would have computed.
var contextForSpeed = map[string]bool{
	"concat":                           true, // cancel
	"replace":                          true, // cancel
	"strings.replace_n":                true, // cancel
	"numbers.range":                    true, // cancel
	"numbers.range_step":               true, // cancel
	"glob.match":                       true, // cache
	"re_match":                         true, // cache
	"regex.match":                      true, // cache
	"regex.find_all_string_submatch_n": true, // cache, cancel
	"regex.find_n":                     true, // cache, cancel
	"regex.replace":                    true, // cache, cancel
	"regex.split":                      true, // cache, cancel
	"graphql.is_valid":                 true, // cache
	"graphql.parse":                    true, // cache
	"graphql.parse_and_verify":         true, // cache
	"graphql.parse_schema":             true, // cache
	"graphql.schema_is_valid":          true, // cache
	"io.jwt.verify_eddsa":              true, // cache
	"io.jwt.verify_es256":              true, // cache
	"io.jwt.verify_es384":              true, // cache
	"io.jwt.verify_es512":              true, // cache
	"io.jwt.verify_hs256":              true, // cache
	"io.jwt.verify_hs384":              true, // cache
	"io.jwt.verify_hs512":              true, // cache
	"io.jwt.verify_ps256":              true, // cache
	"io.jwt.verify_ps384":              true, // cache
	"io.jwt.verify_ps512":              true, // cache
	"io.jwt.verify_rs256":              true, // cache
	"io.jwt.verify_rs384":              true, // cache
	"io.jwt.verify_rs512":              true, // cache
}

// A purity says whether a call to a built-in lets a decision be replayed.
type purity int

const (
	unclassified purity = iota // nothing says what it reads: treated as impure
	pure                       // a function of its arguments
	impure                     // may answer differently, or must run every time
)

// purityOf classifies a built-in. Whatever OPA's metadata leaves open is
// unclassified, which the memo treats as impure: it then evaluates fresh,
// which costs time, never a wrong decision.
func purityOf(b *ast.Builtin) purity {
	switch {
	case b.Nondeterministic, effects[b.Name], wallClock[b.Name]:
		return impure
	case b.CanSkipBctx, contextForSpeed[b.Name]:
		return pure
	default:
		return unclassified
	}
}

// pureCall reports whether a call to op can be replayed: a call to one of
// the policy's own functions (its rules are checked like every other rule),
// or to a built-in known to be pure. Anything else — an unknown name, a
// built-in outside the capabilities — is not.
func pureCall(op ast.Ref) bool {
	if op.HasPrefix(ast.DefaultRootRef) {
		return true
	}
	b, ok := callable()[op.String()]
	return ok && purityOf(b) == pure
}
