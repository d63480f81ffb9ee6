package policy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
)

// Input is the document a policy sees as `input`. The struct is the schema:
// the json tags are the Rego field names, and the engine builds exactly this
// shape (see value) without a JSON round trip.
type Input struct {
	Server Server `json:"server"`
	Tool   Tool   `json:"tool"`
	// Arguments are the exact argument bytes forwarded upstream. Numbers reach
	// Rego with their exact text; duplicate keys make the call fail closed.
	Arguments json.RawMessage `json:"arguments"`
	// ArgumentsDigest is Digest(Arguments): "sha256:<hex>" of the canonical JSON.
	ArgumentsDigest string    `json:"arguments_digest"`
	Principal       Principal `json:"principal"`
	Session         Session   `json:"session"`
	// Grants are only the grants already matched in Go to this call (server,
	// tool, scope). Rego always sees an array, empty when there are none.
	Grants []Grant   `json:"grants"`
	Time   time.Time `json:"time"` // RFC 3339; the clock a policy reasons with

	parsed *Arguments // Arguments, already parsed; see SetArguments
}

// SetArguments sets Arguments and ArgumentsDigest from arguments the
// caller has parsed, so that the engine does not parse them again.
func (in *Input) SetArguments(a *Arguments) {
	in.Arguments, in.ArgumentsDigest, in.parsed = a.raw, a.digest, a
}

// Server is the upstream MCP server the call is for.
type Server struct {
	Name      string `json:"name"`
	Transport string `json:"transport"` // "stdio" or "http"
	// TrustAnnotations comes from config (default true). When false the
	// server's tool annotations must not make a call look safer.
	TrustAnnotations bool `json:"trust_annotations"`
}

// Tool is the tool's definition as last listed by the server.
type Tool struct {
	Name         string          `json:"name"`
	Title        string          `json:"title,omitempty"`
	Description  string          `json:"description"`
	Annotations  json.RawMessage `json:"annotations,omitempty"`
	InputSchema  json.RawMessage `json:"input_schema,omitempty"`
	OutputSchema json.RawMessage `json:"output_schema,omitempty"`
	// Fingerprint is Fingerprint(tool definition); Changed is true when it
	// differs from the fingerprint first seen for this server and tool.
	Fingerprint string    `json:"fingerprint"`
	FirstSeen   time.Time `json:"first_seen"`
	Changed     bool      `json:"changed"`
}

// Principal is who is asking: the authenticated HTTP identity, or the OS
// user for stdio.
type Principal struct {
	ID     string `json:"id"`
	Source string `json:"source"` // oauth, token, os or anonymous
	// Groups are the agent token's groups or the access token's groups
	// claim. Rego always sees an array, empty when there are none.
	Groups []string `json:"groups"`
	// ClientID is the OAuth client the access token was issued to; "" for
	// any other source.
	ClientID string `json:"client_id"`
	// Claims are the access token's claims that config selects, one JSON
	// object. They come from a verified token but are parsed as strictly
	// as arguments (duplicate keys fail the call closed). Rego always sees
	// an object: absent or null is {}, so a rule reading a claim is
	// undefined rather than an error; anything but an object fails closed.
	Claims json.RawMessage `json:"claims"`
	Client Client          `json:"client"`
}

// Client is the MCP client's self-description from initialize.
type Client struct {
	Name    string `json:"name"`
	Version string `json:"version"`
}

// Session is the downstream MCP session.
type Session struct {
	ID string `json:"id"`
}

// Grant is an "always allow" a person gave earlier.
type Grant struct {
	ID         string    `json:"id"`
	Scope      string    `json:"scope"` // exact, arguments or tool
	CreatedBy  string    `json:"created_by"`
	ExpiresAt  time.Time `json:"expires_at"`
	ApprovalID string    `json:"approval_id,omitempty"`
}

// Keys are interned once: they are shared read-only by every evaluation.
var (
	kServer, kTool, kArguments, kArgumentsDigest = key("server"), key("tool"), key("arguments"), key("arguments_digest")
	kPrincipal, kSession, kGrants, kTime         = key("principal"), key("session"), key("grants"), key("time")
	kName, kTransport, kTrustAnnotations         = key("name"), key("transport"), key("trust_annotations")
	kTitle, kDescription, kAnnotations           = key("title"), key("description"), key("annotations")
	kInputSchema, kOutputSchema, kFingerprint    = key("input_schema"), key("output_schema"), key("fingerprint")
	kFirstSeen, kChanged, kID, kSource, kClient  = key("first_seen"), key("changed"), key("id"), key("source"), key("client")
	kVersion, kScope, kCreatedBy, kExpiresAt     = key("version"), key("scope"), key("created_by"), key("expires_at")
	kApprovalID, kGroups, kClientID, kClaims     = key("approval_id"), key("groups"), key("client_id"), key("claims")
)

func key(s string) *ast.Term { return ast.InternedTerm(s) }

func str(s string) *ast.Term { return ast.StringTerm(s) }

// timeTerm formats t the way encoding/json does, so that Decide and
// DecideJSON show a policy the same strings.
func timeTerm(t time.Time) *ast.Term { return ast.StringTerm(t.Format(time.RFC3339Nano)) }

// rawTerm parses a raw JSON field; an empty one is null, like encoding/json.
func rawTerm(field string, raw json.RawMessage) (*ast.Term, error) {
	if len(raw) == 0 {
		return ast.NullTerm(), nil
	}
	v, err := parseJSON(raw)
	if err != nil {
		return nil, fmt.Errorf("policy: input %s: %w", field, err)
	}
	return ast.NewTerm(v), nil
}

// value builds the Rego input directly, which is several times cheaper than
// marshalling to JSON and decoding into interface{}, and keeps numbers exact.
// The tool's raw fields come from m when given.
func (in *Input) value(m *memo) (_ ast.Value, err error) {
	var args *ast.Term
	if p := in.parsed; p != nil && bytes.Equal(p.raw, in.Arguments) {
		args = ast.NewTerm(p.v)
	} else if len(in.Arguments) == 0 {
		args = ast.NullTerm()
	} else {
		v, err := parseArgumentsJSON(in.Arguments)
		if err != nil {
			return nil, fmt.Errorf("policy: input arguments: %w", err)
		}
		args = ast.NewTerm(v)
	}

	tool := [][2]*ast.Term{
		{kName, str(in.Tool.Name)},
		{kDescription, str(in.Tool.Description)},
		{kFingerprint, str(in.Tool.Fingerprint)},
		{kFirstSeen, timeTerm(in.Tool.FirstSeen)},
		{kChanged, ast.InternedTerm(in.Tool.Changed)},
	}
	if in.Tool.Title != "" {
		tool = append(tool, [2]*ast.Term{kTitle, str(in.Tool.Title)})
	}
	for _, f := range []struct {
		key  *ast.Term
		name string
		raw  json.RawMessage
	}{
		{kAnnotations, "tool.annotations", in.Tool.Annotations},
		{kInputSchema, "tool.input_schema", in.Tool.InputSchema},
		{kOutputSchema, "tool.output_schema", in.Tool.OutputSchema},
	} {
		if len(f.raw) == 0 {
			continue
		}
		var t *ast.Term
		var err error
		if m != nil {
			t, err = m.term(f.name, f.raw)
		} else {
			t, err = rawTerm(f.name, f.raw)
		}
		if err != nil {
			return nil, err
		}
		tool = append(tool, [2]*ast.Term{f.key, t})
	}

	grants := make([]*ast.Term, len(in.Grants))
	for i, g := range in.Grants {
		kv := [][2]*ast.Term{
			{kID, str(g.ID)},
			{kScope, str(g.Scope)},
			{kCreatedBy, str(g.CreatedBy)},
			{kExpiresAt, timeTerm(g.ExpiresAt)},
		}
		if g.ApprovalID != "" {
			kv = append(kv, [2]*ast.Term{kApprovalID, str(g.ApprovalID)})
		}
		grants[i] = ast.ObjectTerm(kv...)
	}

	principal, err := in.Principal.term(m)
	if err != nil {
		return nil, err
	}

	return ast.NewObject(
		[2]*ast.Term{kServer, ast.ObjectTerm(
			[2]*ast.Term{kName, str(in.Server.Name)},
			[2]*ast.Term{kTransport, str(in.Server.Transport)},
			[2]*ast.Term{kTrustAnnotations, ast.InternedTerm(in.Server.TrustAnnotations)},
		)},
		[2]*ast.Term{kTool, ast.ObjectTerm(tool...)},
		[2]*ast.Term{kArguments, args},
		[2]*ast.Term{kArgumentsDigest, str(in.ArgumentsDigest)},
		[2]*ast.Term{kPrincipal, principal},
		[2]*ast.Term{kSession, ast.ObjectTerm([2]*ast.Term{kID, str(in.Session.ID)})},
		[2]*ast.Term{kGrants, ast.ArrayTerm(grants...)},
		[2]*ast.Term{kTime, timeTerm(in.Time)},
	), nil
}

// term builds input.principal. Claims repeat from call to call (one
// token, one set), so m remembers their parse like a tool's schemas.
func (p *Principal) term(m *memo) (*ast.Term, error) {
	groups := make([]*ast.Term, len(p.Groups))
	for i, g := range p.Groups {
		groups[i] = str(g)
	}
	claims := emptyObject
	if raw := bytes.TrimSpace(p.Claims); len(raw) > 0 && !bytes.Equal(raw, []byte("null")) {
		var err error
		if m != nil {
			claims, err = m.term("principal.claims", raw)
		} else {
			claims, err = rawTerm("principal.claims", raw)
		}
		if err != nil {
			return nil, err
		}
		if _, ok := claims.Value.(ast.Object); !ok {
			return nil, fmt.Errorf("policy: input principal.claims: %s is not a JSON object", ast.TypeName(claims.Value))
		}
	}
	return ast.ObjectTerm(
		[2]*ast.Term{kID, str(p.ID)},
		[2]*ast.Term{kSource, str(p.Source)},
		[2]*ast.Term{kGroups, ast.ArrayTerm(groups...)},
		[2]*ast.Term{kClientID, str(p.ClientID)},
		[2]*ast.Term{kClaims, claims},
		[2]*ast.Term{kClient, ast.ObjectTerm(
			[2]*ast.Term{kName, str(p.Client.Name)},
			[2]*ast.Term{kVersion, str(p.Client.Version)},
		)},
	), nil
}

// emptyObject is the claims of a principal without any; terms are shared
// read-only by every evaluation.
var emptyObject = ast.ObjectTerm()
