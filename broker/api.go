package broker

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/airlock-mcp/airlock/policy"
)

// AdminIdentity is who decides through the JSON API unless
// Options.AdminIdentity names someone else: whoever holds the admin token.
const AdminIdentity = "admin"

// APIHandler serves the JSON API under /api/v1/, for the CLI and for
// scripts. Every request needs "Authorization: Bearer <token>": the admin
// token, for everything, or a person's approver token (airlock tokens
// create NAME --approver), to list, read and decide approvals as that
// person. docs/api.md describes it.
func (b *Broker) APIHandler(token string) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v1/approvals", b.apiApprovals)
	mux.HandleFunc("GET /api/v1/approvals/{id}", b.apiApproval)
	mux.HandleFunc("POST /api/v1/approvals/{id}/decision", b.apiVote)
	mux.HandleFunc("GET /api/v1/events", b.apiEvents)
	mux.HandleFunc("GET /api/v1/audit", b.apiAudit)
	mux.HandleFunc("GET /api/v1/audit/verify", b.apiVerify)
	mux.HandleFunc("GET /api/v1/grants", b.apiGrants)
	mux.HandleFunc("POST /api/v1/grants", b.apiCreateGrant)
	mux.HandleFunc("GET /api/v1/grants/{id}", b.apiGrant)
	mux.HandleFunc("DELETE /api/v1/grants/{id}", b.apiRevokeGrant)
	mux.HandleFunc("GET /api/v1/tokens", b.apiTokens)
	mux.HandleFunc("POST /api/v1/tokens", b.apiCreateToken)
	mux.HandleFunc("DELETE /api/v1/tokens/{name}", b.apiRevokeToken)
	mux.HandleFunc("/api/v1/", func(w http.ResponseWriter, r *http.Request) {
		apiError(w, http.StatusNotFound, "no such API endpoint: %s %s", r.Method, r.URL.Path)
	})
	// A person's token decides as that person and does nothing else: no
	// audit log, no grant or token administration, which stay the admin
	// token's. Reading one grant is there for the grant an approval made.
	person := http.NewServeMux()
	person.HandleFunc("GET /api/v1/approvals", b.apiApprovals)
	person.HandleFunc("GET /api/v1/approvals/{id}", b.apiApproval)
	person.HandleFunc("POST /api/v1/approvals/{id}/decision", b.apiVote)
	person.HandleFunc("GET /api/v1/events", b.apiEvents)
	person.HandleFunc("GET /api/v1/grants/{id}", b.apiGrant)
	person.HandleFunc("/api/v1/", func(w http.ResponseWriter, r *http.Request) {
		apiError(w, http.StatusForbidden, "an approver token may list, read and decide approvals only; %s %s needs the admin token", r.Method, r.URL.Path)
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		if AdminAuthorized(r, token) {
			mux.ServeHTTP(w, r)
			return
		}
		if tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok && (strings.HasPrefix(tok, AgentTokenPrefix) || strings.HasPrefix(tok, ApproverTokenPrefix)) {
			who, err := b.TokenApprover(r.Context(), tok)
			switch {
			case err == nil:
				ctx := context.WithValue(context.WithValue(r.Context(), apiPersonKey{}, who), apiTokenKey{}, tok)
				person.ServeHTTP(w, r.WithContext(ctx))
			case errors.Is(err, ErrTokenScope):
				apiError(w, http.StatusForbidden, "an agent token is for the MCP endpoints, not the API; a person decides with an approver token (airlock tokens create NAME --approver)")
			case errors.Is(err, ErrBadToken):
				w.Header().Set("WWW-Authenticate", `Bearer realm="airlock", error="invalid_token"`)
				apiError(w, http.StatusUnauthorized, "the approver token is unknown, expired or revoked")
			default:
				ref := NewRef()
				b.log.Error("checking an approver token failed", "ref", ref, "err", err)
				apiError(w, http.StatusServiceUnavailable, "the token cannot be checked now (ref %s)", ref)
			}
			return
		}
		w.Header().Set("WWW-Authenticate", `Bearer realm="airlock"`)
		apiError(w, http.StatusUnauthorized, "missing or wrong admin token (it is in the state directory's admin-token file)")
	})
}

// apiPersonKey keys the person an approver token names in a request's
// context; a request with the admin token has none.
type apiPersonKey struct{}

// apiTokenKey keys the approver token itself, for a stream that must end
// once the token is revoked.
type apiTokenKey struct{}

// AdminAuthorized reports whether r carries "Authorization: Bearer
// <token>". An empty token authorizes nothing.
func AdminAuthorized(r *http.Request, token string) bool {
	return token != "" && subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), []byte("Bearer "+token)) == 1
}

func (b *Broker) apiApprovals(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	aq := ApprovalQuery{Server: q.Get("server"), Tool: q.Get("tool"), Before: q.Get("before")}
	for _, s := range q["status"] {
		for part := range strings.SplitSeq(s, ",") {
			// A misspelt status would list nothing, which reads as "none".
			if !slices.Contains(Statuses, Status(part)) {
				apiError(w, http.StatusBadRequest, "status: %q is not a status (%s)", part, statusList())
				return
			}
			aq.Status = append(aq.Status, Status(part))
		}
	}
	var err error
	if aq.Limit, err = intParam(q.Get("limit")); err != nil {
		apiError(w, http.StatusBadRequest, "limit: %v", err)
		return
	}
	list, err := b.store.Approvals(r.Context(), aq)
	if err != nil {
		b.apiInternal(w, "listing approvals", err)
		return
	}
	if list == nil {
		list = []*Approval{}
	}
	writeAPI(w, http.StatusOK, map[string]any{"approvals": list})
}

func statusList() string {
	names := make([]string, len(Statuses))
	for i, s := range Statuses {
		names[i] = string(s)
	}
	return strings.Join(names, ", ")
}

func (b *Broker) apiApproval(w http.ResponseWriter, r *http.Request) {
	a, err := b.store.Approval(r.Context(), r.PathValue("id"))
	if errors.Is(err, ErrNotFound) {
		apiError(w, http.StatusNotFound, "no approval %s", r.PathValue("id"))
		return
	}
	if err != nil {
		b.apiInternal(w, "reading an approval", err)
		return
	}
	writeAPI(w, http.StatusOK, a)
}

// VoteRequest is the body of POST /api/v1/approvals/{id}/decision: a
// person's vote (the path keeps its first name).
type VoteRequest struct {
	Verdict Verdict `json:"verdict"`
	Reason  string  `json:"reason,omitempty"`
	// Approver is a name to record with the decision (Vote.As). It is not
	// who decides: a decision made with the admin token is always the
	// admin identity's, so that one token cannot invent a quorum.
	Approver string `json:"approver,omitempty"`
	// Channel says where the decision came from: "cli" or "api" (the
	// default).
	Channel string `json:"channel,omitempty"`
	// Grant makes an "always allow" along with an approval.
	Grant *GrantRequest `json:"grant,omitempty"`
}

func (b *Broker) apiVote(w http.ResponseWriter, r *http.Request) {
	// A struct is safe here: the admin API is the operator's, behind the
	// admin token; no agent or server writes its bodies.
	var req VoteRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		apiError(w, http.StatusBadRequest, "decision body: %v", err)
		return
	}
	approver, as := b.admin, strings.TrimSpace(req.Approver)
	if p, ok := r.Context().Value(apiPersonKey{}).(string); ok {
		// An approver token is its person's: it records no other name.
		if as != "" && as != p {
			apiError(w, http.StatusBadRequest, "this approver token decides as %s; approver (--as) is for the admin token", p)
			return
		}
		approver, as = p, ""
	}
	if as == b.admin {
		as = ""
	}
	switch req.Channel {
	case "":
		req.Channel = "api"
	case "api", "cli":
	default:
		apiError(w, http.StatusBadRequest, `channel must be "api" or "cli"`)
		return
	}
	a, err := b.Vote(r.Context(), r.PathValue("id"), Vote{Approver: approver, As: as, Channel: req.Channel, Verdict: req.Verdict, Reason: req.Reason, Grant: req.Grant})
	if err == nil {
		writeAPI(w, http.StatusOK, a)
		return
	}
	ve, ok := errors.AsType[*VoteError](err)
	if !ok {
		b.apiInternal(w, "recording a decision", err)
		return
	}
	body := VoteErrorBody{Error: ve.Msg, Code: ve.Code}
	switch ve.Code {
	case VoteAlreadyDecided:
		body.Status, body.DecidedBy, body.DecidedAt = ve.Status, ve.By, ve.At
	case VoteExpired:
		body.ExpiresAt = ve.At
	case VoteGrantNotStored:
		body.Approval = a
	}
	writeAPI(w, voteStatus(ve.Code), body)
}

// VoteErrorBody is the API's answer to a vote that did not (entirely)
// count; docs/api.md lists the codes.
type VoteErrorBody struct {
	Error string   `json:"error"`
	Code  VoteCode `json:"code"`
	// Status, DecidedBy and DecidedAt say how the approval ended, for
	// already_decided.
	Status    Status    `json:"status,omitempty"`
	DecidedBy string    `json:"decided_by,omitempty"`
	DecidedAt time.Time `json:"decided_at,omitzero"`
	// ExpiresAt is when an expired approval's time ran out.
	ExpiresAt time.Time `json:"expires_at,omitzero"`
	// Approval is the approved approval whose grant was not stored, for
	// grant_not_stored.
	Approval *Approval `json:"approval,omitempty"`
}

// voteStatus is the HTTP status of each VoteCode.
func voteStatus(c VoteCode) int {
	switch c {
	case VoteNotFound:
		return http.StatusNotFound
	case VoteAlreadyDecided, VoteExpired:
		return http.StatusConflict
	case VoteNotApprover, VoteSelfApproval, VoteAlreadyVoted, VoteNotGrantable:
		return http.StatusForbidden
	case VoteBad:
		return http.StatusBadRequest
	}
	return http.StatusInternalServerError // VoteGrantNotStored, and any code added without a status
}

// keepAliveInterval spaces SSE comments on a quiet event stream, so that
// proxies do not close it.
const keepAliveInterval = 25 * time.Second

// apiEvents streams approval events as server-sent events: "held",
// "updated" and "decided", each carrying the approval.
func (b *Broker) apiEvents(w http.ResponseWriter, r *http.Request) {
	events, stop := b.Subscribe()
	defer stop()
	var alive func() bool
	if tok, ok := r.Context().Value(apiTokenKey{}).(string); ok {
		// A stream outlives requests: a revoked or expired approver token
		// loses it at the next keep-alive.
		alive = func() bool {
			_, err := b.TokenApprover(r.Context(), tok)
			return err == nil
		}
	}
	StreamEvents(w, r, events, b.done, keepAliveInterval, func(a *Approval) any { return a }, alive)
}

// StreamEvents writes events to w as server-sent events, each named by its
// type and carrying data(approval) as JSON, with a keep-alive comment
// every keepAlive. It returns when the client goes, stop closes, events
// closes (the reader fell behind: its client should reconnect and list
// again), a write fails, or alive (if set, asked at each keep-alive) says
// the reader may no longer listen.
func StreamEvents(w http.ResponseWriter, r *http.Request, events <-chan ApprovalEvent, stop <-chan struct{}, keepAlive time.Duration, data func(*Approval) any, alive func() bool) {
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	rc.Flush()
	tick := time.NewTicker(keepAlive)
	defer tick.Stop()
	for {
		select {
		case ev, ok := <-events:
			if !ok {
				return
			}
			payload, err := json.Marshal(data(ev.Approval))
			if err != nil {
				return
			}
			if _, err := fmt.Fprintf(w, "event: %s\ndata: %s\n\n", ev.Type, payload); err != nil {
				return
			}
			rc.Flush()
		case <-tick.C:
			if alive != nil && !alive() {
				return
			}
			if _, err := w.Write([]byte(": keep-alive\n\n")); err != nil {
				return
			}
			rc.Flush()
		case <-r.Context().Done():
			return
		case <-stop:
			return
		}
	}
}

func (b *Broker) apiAudit(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	aq := AuditQuery{Server: q.Get("server"), Tool: q.Get("tool"), Event: q.Get("event"), Actor: q.Get("actor"), ApprovalID: q.Get("approval")}
	var err error
	for name, dst := range map[string]*uint64{"before": &aq.Before, "after": &aq.After} {
		if v := q.Get(name); v != "" {
			if *dst, err = strconv.ParseUint(v, 10, 64); err != nil {
				apiError(w, http.StatusBadRequest, "%s: %v", name, err)
				return
			}
		}
	}
	if aq.Limit, err = intParam(q.Get("limit")); err != nil {
		apiError(w, http.StatusBadRequest, "limit: %v", err)
		return
	}
	recs, err := b.store.Audit(r.Context(), aq)
	if err != nil {
		b.apiInternal(w, "reading the audit log", err)
		return
	}
	if recs == nil {
		recs = []*AuditRecord{}
	}
	writeAPI(w, http.StatusOK, map[string]any{"records": recs})
}

func (b *Broker) apiVerify(w http.ResponseWriter, r *http.Request) {
	v, err := b.store.VerifyAudit(r.Context())
	if err != nil {
		b.apiInternal(w, "verifying the audit log", err)
		return
	}
	writeAPI(w, http.StatusOK, v)
}

func (b *Broker) apiGrants(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	gq := GrantQuery{Server: q.Get("server"), Tool: q.Get("tool"), Before: q.Get("before")}
	for _, s := range q["status"] {
		for part := range strings.SplitSeq(s, ",") {
			gq.Status = append(gq.Status, GrantStatus(part))
		}
	}
	var err error
	if gq.Limit, err = intParam(q.Get("limit")); err != nil {
		apiError(w, http.StatusBadRequest, "limit: %v", err)
		return
	}
	list, err := b.store.Grants(r.Context(), gq)
	if err != nil {
		b.apiInternal(w, "listing grants", err)
		return
	}
	if list == nil {
		list = []*Grant{}
	}
	writeAPI(w, http.StatusOK, map[string]any{"grants": list})
}

func (b *Broker) apiGrant(w http.ResponseWriter, r *http.Request) {
	g, err := b.store.Grant(r.Context(), r.PathValue("id"))
	if errors.Is(err, ErrNotFound) {
		apiError(w, http.StatusNotFound, "no grant %s", r.PathValue("id"))
		return
	}
	if err != nil {
		b.apiInternal(w, "reading a grant", err)
		return
	}
	writeAPI(w, http.StatusOK, g)
}

func (b *Broker) apiCreateGrant(w http.ResponseWriter, r *http.Request) {
	// The operator's, behind the admin token, as in apiVote.
	var spec GrantSpec
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&spec); err != nil {
		apiError(w, http.StatusBadRequest, "grant body: %v", err)
		return
	}
	g, err := b.CreateGrant(r.Context(), spec)
	if err != nil {
		apiError(w, http.StatusBadRequest, "%s", err.Error())
		return
	}
	writeAPI(w, http.StatusCreated, g)
}

func (b *Broker) apiRevokeGrant(w http.ResponseWriter, r *http.Request) {
	by := r.URL.Query().Get("by")
	if by == "" {
		by = AdminIdentity
	}
	g, err := b.RevokeGrant(r.Context(), r.PathValue("id"), by)
	switch {
	case err == nil:
		writeAPI(w, http.StatusOK, g)
	case errors.Is(err, ErrNotFound):
		apiError(w, http.StatusNotFound, "no grant %s", r.PathValue("id"))
	case errors.Is(err, ErrGrantNotActive):
		apiError(w, http.StatusConflict, "%s", err.Error())
	default:
		b.apiInternal(w, "revoking a grant", err)
	}
}

// TokenRequest is the body of POST /api/v1/tokens.
type TokenRequest struct {
	Name    string   `json:"name"`
	Servers []string `json:"servers,omitempty"`
	Groups  []string `json:"groups,omitempty"`
	// TTL is how long the token lasts: absent means DefaultTokenTTL,
	// "0s" never expires.
	TTL      *policy.Duration `json:"ttl,omitempty"`
	Approver bool             `json:"approver,omitempty"`
}

// DefaultTokenTTL is how long a token lasts when its request names no ttl.
const DefaultTokenTTL = 30 * 24 * time.Hour

// TokenView is a token as the API shows it: never its secret nor its
// hash. Secret, the token itself, is set only in the answer to its
// creation.
type TokenView struct {
	Secret string `json:"token,omitempty"`
	*Token
	Kind   string `json:"kind"`
	Status string `json:"status"` // active, expired or revoked
}

func (b *Broker) tokenView(t *Token) TokenView {
	v := TokenView{Token: t, Kind: t.Kind(), Status: "active"}
	t.Hash = ""
	switch {
	case t.Revoked():
		v.Status = "revoked"
	case t.Expired(b.now()):
		v.Status = "expired"
	}
	return v
}

func (b *Broker) apiTokens(w http.ResponseWriter, r *http.Request) {
	ts, err := b.Tokens(r.Context())
	if err != nil {
		b.apiInternal(w, "listing tokens", err)
		return
	}
	views := make([]TokenView, len(ts))
	for i, t := range ts {
		views[i] = b.tokenView(t)
	}
	writeAPI(w, http.StatusOK, map[string]any{"tokens": views})
}

func (b *Broker) apiCreateToken(w http.ResponseWriter, r *http.Request) {
	// The operator's, behind the admin token, as in apiVote.
	var req TokenRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		apiError(w, http.StatusBadRequest, "token body: %v", err)
		return
	}
	ttl := DefaultTokenTTL
	if req.TTL != nil {
		ttl = time.Duration(*req.TTL)
	}
	secret, t, err := b.CreateToken(r.Context(), TokenSpec{Name: req.Name, Servers: req.Servers, Groups: req.Groups, TTL: ttl, Approver: req.Approver, By: b.admin})
	switch {
	case err == nil:
	case errors.Is(err, ErrTokenExists):
		apiError(w, http.StatusConflict, "%s", err.Error())
		return
	case IsTokenSpecError(err):
		apiError(w, http.StatusBadRequest, "%s", err.Error())
		return
	default:
		b.apiInternal(w, "creating a token", err)
		return
	}
	v := b.tokenView(t)
	v.Secret = secret
	writeAPI(w, http.StatusCreated, v)
}

func (b *Broker) apiRevokeToken(w http.ResponseWriter, r *http.Request) {
	t, err := b.RevokeToken(r.Context(), r.PathValue("name"), b.admin)
	switch {
	case err == nil:
		writeAPI(w, http.StatusOK, b.tokenView(t))
	case errors.Is(err, ErrNotFound):
		apiError(w, http.StatusNotFound, "%s", err.Error())
	default:
		b.apiInternal(w, "revoking a token", err)
	}
}

func (b *Broker) apiInternal(w http.ResponseWriter, what string, err error) {
	ref := NewRef()
	b.log.Error("API request failed", "ref", ref, "what", what, "err", err)
	apiError(w, http.StatusInternalServerError, "%s failed (ref %s)", what, ref)
}

func intParam(s string) (int, error) {
	if s == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 || n > 10000 {
		return 0, fmt.Errorf("%q is not a number from 0 to 10000", s)
	}
	return n, nil
}

func writeAPI(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

func apiError(w http.ResponseWriter, status int, format string, args ...any) {
	writeAPI(w, status, map[string]string{"error": fmt.Sprintf(format, args...)})
}
