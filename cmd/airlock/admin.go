package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/airlock-mcp/airlock/broker"
	"github.com/airlock-mcp/airlock/policy"
)

// adminFlags are the flags every admin command takes.
type adminFlags struct {
	stateDir string
	jsonOut  bool
}

func (f *adminFlags) register(cmd *cobra.Command, withJSON bool) {
	cmd.Flags().StringVar(&f.stateDir, "state-dir", "", "state directory of the broker (env AIRLOCK_STATE_DIR; default: every broker under ~/.local/state/airlock)")
	if withJSON {
		cmd.Flags().BoolVar(&f.jsonOut, "json", false, "print JSON")
	}
}

// brokers finds the running brokers the command talks to: the one in
// --state-dir (or AIRLOCK_STATE_DIR), or every one under the state home.
func (f *adminFlags) brokers() ([]*apiClient, error) {
	dir, explicit, err := f.dir()
	if err != nil {
		return nil, err
	}
	refs, err := findBrokers(dir, !explicit)
	if err != nil {
		return nil, err
	}
	clients := make([]*apiClient, len(refs))
	for i, r := range refs {
		clients[i] = &apiClient{ref: r, http: &http.Client{Timeout: 30 * time.Second}}
	}
	return clients, nil
}

// dir is the state directory the command names (--state-dir, then
// AIRLOCK_STATE_DIR), or the state home when it names none.
func (f *adminFlags) dir() (dir string, explicit bool, err error) {
	for _, d := range []string{f.stateDir, os.Getenv("AIRLOCK_STATE_DIR")} {
		if d != "" {
			return d, true, nil
		}
	}
	home, err := stateHome()
	return home, false, err
}

// one returns the single broker a command about one audit log needs.
func (f *adminFlags) one() (*apiClient, error) {
	cs, err := f.brokers()
	if err != nil {
		return nil, err
	}
	if len(cs) > 1 {
		var dirs []string
		for _, c := range cs {
			dirs = append(dirs, c.ref.Dir)
		}
		return nil, fmt.Errorf("%d brokers are running; pick one with --state-dir: %s", len(cs), strings.Join(dirs, ", "))
	}
	return cs[0], nil
}

// apiClient calls one broker's JSON API.
type apiClient struct {
	ref  brokerRef
	http *http.Client
}

// apiError is an error the API answered with.
type apiError struct {
	Status  int
	Message string
	// Code is a refused vote's code (broker.VoteCode), if it was one.
	Code broker.VoteCode
	// Approval is the approved approval whose grant was not stored
	// (grant_not_stored).
	Approval *broker.Approval
}

func (e *apiError) Error() string { return e.Message }

func (c *apiClient) do(ctx context.Context, method, path string, body, out any) error {
	var r io.Reader
	if body != nil {
		data, err := json.Marshal(body)
		if err != nil {
			return err
		}
		r = strings.NewReader(string(data))
	}
	req, err := http.NewRequestWithContext(ctx, method, c.ref.Info.URL+path, r)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.ref.Token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("broker at %s: %w", c.ref.Info.URL, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode >= 300 {
		// Airlock's own API answering the CLI.
		var e struct {
			Error    string
			Code     broker.VoteCode
			Approval *broker.Approval
		}
		json.Unmarshal(data, &e)
		if e.Error == "" {
			e.Error = fmt.Sprintf("HTTP %d", resp.StatusCode)
		}
		return &apiError{Status: resp.StatusCode, Message: e.Error, Code: e.Code, Approval: e.Approval}
	}
	if out != nil {
		return json.Unmarshal(data, out)
	}
	return nil
}

func newPendingCmd() *cobra.Command {
	var f adminFlags
	cmd := &cobra.Command{
		Use:   "pending [--json]",
		Short: "List calls waiting for approval",
		Long: `pending lists the calls waiting for approval at every running broker (or
the one of --state-dir), with the broker each waits at when there are
several. A call waits only while its broker runs: with none running,
pending says so and lists nothing.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			srcs, err := f.sources(cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			defer closeSources(srcs)
			type pendingAt struct {
				a      *broker.Approval
				broker string
			}
			var all []pendingAt
			running := false
			for _, s := range srcs {
				as, err := s.pending(cmd.Context())
				if err != nil {
					return err
				}
				running = running || s.api != nil
				for _, a := range as {
					all = append(all, pendingAt{a, s.label})
				}
			}
			slices.SortFunc(all, func(a, b pendingAt) int { return strings.Compare(a.a.ID, b.a.ID) })
			if f.jsonOut {
				views := make([]pendingView, len(all))
				for i, p := range all {
					views[i] = newPendingView(p.a)
					views[i].Broker = p.broker
				}
				return printJSON(cmd.OutOrStdout(), views)
			}
			if len(all) == 0 {
				if !running {
					fmt.Fprintln(cmd.OutOrStdout(), "No calls are waiting for approval: no broker is running, and a call waits only while its broker runs.")
					return nil
				}
				fmt.Fprintln(cmd.OutOrStdout(), "No calls are waiting for approval.")
				return nil
			}
			now := time.Now()
			multi := len(srcs) > 1
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 0, 2, ' ', 0)
			head := []any{"ID", "SERVER", "TOOL", "ARGUMENTS", "REQUESTER", "RISK", "WAITING", "EXPIRES IN", "REASON"}
			if multi {
				head = append([]any{"BROKER"}, head...)
			}
			row(tw, head...)
			for _, p := range all {
				a := p.a
				cells := []any{a.ID, a.Server, a.Tool, argumentsSummary(a, summaryWidth), a.Principal.Describe(), a.Decision.Risk,
					now.Sub(a.RequestedAt).Round(time.Second), a.ExpiresAt.Sub(now).Round(time.Second), a.Decision.Reason}
				if multi {
					cells = append([]any{p.broker}, cells...)
				}
				row(tw, cells...)
			}
			return tw.Flush()
		},
	}
	f.register(cmd, true)
	return cmd
}

// pendingView is one entry of `airlock pending --json`: the fields a
// script needs, flat.
type pendingView struct {
	ID        string          `json:"id"`
	Server    string          `json:"server"`
	Tool      string          `json:"tool"`
	Arguments json.RawMessage `json:"arguments"`
	Status    broker.Status   `json:"status"`
	Reason    string          `json:"reason"`
	Risk      string          `json:"risk,omitempty"`
	Requester string          `json:"requester"`
	// RequesterSource is how the requester was identified; RequestedBy
	// says both as every channel does (broker.Principal.Describe).
	RequesterSource string    `json:"requester_source"`
	RequestedBy     string    `json:"requested_by"`
	Quorum          int       `json:"quorum"`
	Approvals       int       `json:"approvals"`
	RequestedAt     time.Time `json:"requested_at"`
	ExpiresAt       time.Time `json:"expires_at"`
	// Broker is the state directory's label (see brokerLabel).
	Broker string `json:"broker"`
}

// summaryWidth bounds the ARGUMENTS column of pending, in characters.
const summaryWidth = 60

// argumentsSummary is a call's arguments on one line for a table: as
// approvers may see them (what the policy redacts is hidden, as in Slack
// and the web UI), compact, and cut at width characters with "…". The
// whole arguments are in pending --json.
func argumentsSummary(a *broker.Approval, width int) string {
	shown, _ := a.ShowArguments()
	var b bytes.Buffer
	if json.Compact(&b, shown) != nil || b.Len() == 0 {
		return "{}"
	}
	r := []rune(b.String())
	if len(r) <= width {
		return string(r)
	}
	return string(r[:width-1]) + "…"
}

func newPendingView(a *broker.Approval) pendingView {
	args := a.Arguments
	if len(args) == 0 {
		args = json.RawMessage("{}")
	}
	return pendingView{ID: a.ID, Server: a.Server, Tool: a.Tool, Arguments: args, Status: a.Status, Reason: a.Decision.Reason,
		Risk: a.Decision.Risk, Requester: a.Principal.ID, RequesterSource: a.Principal.Source, RequestedBy: a.Principal.Describe(),
		Quorum: a.Quorum(), Approvals: a.Approvals(),
		RequestedAt: a.RequestedAt, ExpiresAt: a.ExpiresAt}
}

func newVoteCmd(verdict broker.Verdict) *cobra.Command {
	var f adminFlags
	var reason, as, tokenFile, brokerURL string
	var grant broker.GrantRequest
	var ttl time.Duration
	use, short := "approve ID [--reason TEXT]", "Approve a held call, which is then released"
	reasonHelp, example := "why, for the audit log", "  airlock approve 06FHQ2B0Y5CJ3ZKM"
	if verdict == broker.Deny {
		use, short = "deny ID --reason TEXT", "Deny a held call, saying why; the agent reads the reason"
		reasonHelp = "why the call is denied (required: the agent reads it)"
		example = `  airlock deny 06FHQ2B0Y5CJ3ZKM --reason "not on production"`
	}
	cmd := &cobra.Command{
		Use:     use,
		Short:   short,
		Example: example,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			// The broker refuses a denial without a reason too (bad_vote);
			// saying so here spares the round trip.
			if verdict == broker.Deny && strings.TrimSpace(reason) == "" {
				return errors.New(`deny needs --reason "TEXT": the agent is told why its call was denied`)
			}
			clients, err := deciders(&f, tokenFile, brokerURL)
			if err != nil {
				return err
			}
			id := args[0]
			body := broker.VoteRequest{Verdict: verdict, Reason: reason, Approver: as, Channel: "cli"}
			if grant.Scope != "" {
				grant.TTL = policy.Duration(ttl)
				body.Grant = &grant
			}
			for _, c := range clients {
				var a broker.Approval
				err := c.do(cmd.Context(), http.MethodPost, "/api/v1/approvals/"+url.PathEscape(id)+"/decision", body, &a)
				var ae *apiError
				if errors.As(err, &ae) && ae.Status == http.StatusNotFound && len(clients) > 1 {
					continue // another broker's approval
				}
				if errors.As(err, &ae) && ae.Code == broker.VoteGrantNotStored && ae.Approval != nil {
					// The vote counted: say so, then that the grant failed.
					a = *ae.Approval
				} else if err != nil {
					return voteFailed(verdict, id, err)
				}
				if f.jsonOut {
					if err := printJSON(cmd.OutOrStdout(), &a); err != nil {
						return err
					}
					return voteFailed(verdict, id, err)
				}
				id, tool, server := termSafe(id), termSafe(a.Tool), termSafe(a.Server)
				switch a.Status {
				case broker.StatusPending:
					fmt.Fprintf(cmd.OutOrStdout(), "Approved %s (%d of %d approvals needed).\n", id, a.Approvals(), a.Quorum())
				case broker.StatusApproved:
					if a.Awaited() {
						fmt.Fprintf(cmd.OutOrStdout(), "Approved %s: the call to %s on %s is released.\n", id, tool, server)
					} else {
						// Its client was told to call again, or the broker
						// holding it is another: it has not run yet.
						fmt.Fprintf(cmd.OutOrStdout(), "Approved %s: the call to %s on %s runs when the agent calls again (until %s); otherwise it lapses.\n",
							id, tool, server, a.RetryUntil.Local().Format(time.DateTime))
					}
					if g := termSafe(a.GrantID); g != "" && err == nil {
						// The vote's answer is the approval; the grant says
						// how long it lasts and whether it was capped.
						var gr broker.Grant
						if gerr := c.do(cmd.Context(), http.MethodGet, "/api/v1/grants/"+url.PathEscape(a.GrantID), nil, &gr); gerr != nil {
							fmt.Fprintf(cmd.OutOrStdout(), "Grant %s allows such calls until it expires or is revoked (airlock grants revoke %s); reading how long it lasts failed: %s.\n", g, g, termSafe(gerr.Error()))
						} else {
							fmt.Fprintf(cmd.OutOrStdout(), "Grant %s allows such calls %s (airlock grants revoke %s).\n", g, grantLasts(&gr), g)
						}
					}
				default:
					fmt.Fprintf(cmd.OutOrStdout(), "Denied %s: the call to %s on %s will not run.\n", id, tool, server)
				}
				return voteFailed(verdict, id, err)
			}
			return fmt.Errorf("no running broker knows approval %s", id)
		},
	}
	f.register(cmd, true)
	cmd.Flags().StringVar(&reason, "reason", "", reasonHelp)
	cmd.Flags().StringVar(&as, "as", "", "a name to record with the decision; it decides as ui.approver (default \""+broker.AdminIdentity+"\"), the admin token's one identity, whatever it says")
	cmd.Flags().StringVar(&tokenFile, "token-file", "", "decide as yourself with your approver token from this file (mode 0600), not the admin token (env AIRLOCK_TOKEN)")
	cmd.Flags().StringVar(&brokerURL, "url", os.Getenv("AIRLOCK_URL"), "the broker to decide at, such as https://airlock.example.com, from another machine; needs your approver token (env AIRLOCK_URL)")
	if verdict == broker.Approve {
		cmd.Flags().StringVar(&grant.Scope, "grant", "", "also allow such calls from now on: exact (same arguments), arguments (same key arguments), or tool (any arguments)")
		durationVar(cmd, &ttl, "ttl", time.Hour, "how long the grant lasts (capped by the policy's max_ttl)")
		cmd.Flags().BoolVar(&grant.Anyone, "anyone", false, "the grant covers every caller, not only this call's requester")
		cmd.Flags().IntVar(&grant.MaxUses, "max-uses", 0, "the grant allows at most this many calls (0: no limit)")
	}
	return cmd
}

// voteMeaning says what each refusal code of a vote means, for the CLI's
// error.
var voteMeaning = map[broker.VoteCode]string{
	broker.VoteNotFound:       "no such approval",
	broker.VoteAlreadyDecided: "already decided",
	broker.VoteExpired:        "too late, its time ran out",
	broker.VoteNotApprover:    "not an approver for this call",
	broker.VoteSelfApproval:   "the requester cannot approve their own call",
	broker.VoteAlreadyVoted:   "already voted; a quorum needs different people",
	broker.VoteNotGrantable:   "the policy does not allow that grant",
	broker.VoteBad:            "not a valid vote",
	broker.VoteGrantNotStored: "approved, but the grant was not stored",
}

// voteFailed is the error of a vote the broker did not (entirely) take:
// its code's meaning, then the broker's words; nil for nil.
func voteFailed(verdict broker.Verdict, id string, err error) error {
	if err == nil {
		return nil
	}
	var ae *apiError
	if errors.As(err, &ae) && ae.Code != "" {
		meaning := voteMeaning[ae.Code]
		if meaning == "" {
			meaning = string(ae.Code)
		}
		return fmt.Errorf("%s %s: %s (%s): %s", verdict, termSafe(id), meaning, ae.Code, termSafe(ae.Message))
	}
	return fmt.Errorf("%s %s: %w", verdict, termSafe(id), err)
}

func newGrantsCmd() *cobra.Command {
	var f adminFlags
	var all bool
	cmd := &cobra.Command{
		Use:   "grants [list] [--json] [--all]",
		Short: `List "always allow" grants; add or revoke them`,
		Long: `A grant lets later calls like an approved one through without asking:
the same arguments (exact), the same key arguments (arguments), or any
arguments (tool), for a limited time. The policy still has the last word.
See docs/grants.md.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return listGrants(cmd, &f, all) },
	}
	list := &cobra.Command{
		Use:   "list [--json] [--all]",
		Short: "List active grants (--all: every grant)",
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return listGrants(cmd, &f, all) },
	}
	for _, c := range []*cobra.Command{cmd, list} {
		f.register(c, true)
		c.Flags().BoolVar(&all, "all", false, "include revoked, expired and used-up grants")
	}
	cmd.AddCommand(list, newGrantRevokeCmd(), newGrantAddCmd())
	return cmd
}

func listGrants(cmd *cobra.Command, f *adminFlags, all bool) error {
	srcs, err := f.sources(cmd.ErrOrStderr())
	if err != nil {
		return err
	}
	defer closeSources(srcs)
	var grants []*broker.Grant
	at := map[*broker.Grant]string{}
	for _, s := range srcs {
		gs, err := s.grants(cmd.Context(), all)
		if err != nil {
			return err
		}
		for _, g := range gs {
			at[g] = s.label
		}
		grants = append(grants, gs...)
	}
	slices.SortFunc(grants, func(a, b *broker.Grant) int { return strings.Compare(b.ID, a.ID) })
	if f.jsonOut {
		if grants == nil {
			grants = []*broker.Grant{}
		}
		return printJSON(cmd.OutOrStdout(), grants)
	}
	if len(grants) == 0 {
		fmt.Fprintln(cmd.OutOrStdout(), "No grants.")
		return nil
	}
	now := time.Now()
	tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 0, 2, ' ', 0)
	multi := len(srcs) > 1
	head := []any{"ID", "STATUS", "SERVER", "TOOL", "SCOPE", "COVERS", "FOR", "BY", "EXPIRES IN", "USES"}
	if multi {
		head = append([]any{"BROKER"}, head...)
	}
	row(tw, head...)
	for _, g := range grants {
		covers := "any arguments"
		switch g.Scope {
		case broker.ScopeExact:
			covers = "the same arguments"
		case broker.ScopeArguments:
			var parts []string
			for _, k := range slices.Sorted(maps.Keys(g.KeyArguments)) {
				parts = append(parts, k+"="+string(g.KeyArguments[k]))
			}
			covers = strings.Join(parts, " ")
		}
		who := g.CoversWhom()
		uses := fmt.Sprint(g.Uses)
		if g.MaxUses > 0 {
			uses += fmt.Sprintf(" of %d", g.MaxUses)
		}
		left := "-"
		if g.Status == broker.GrantActive {
			left = g.ExpiresAt.Sub(now).Round(time.Second).String()
			if !g.ExpiresAt.After(now) {
				left = "expired" // read from a stopped broker, which has not ended it yet
			}
		}
		cells := []any{g.ID, g.Status, g.Server, g.Tool, g.Scope, covers, who, g.CreatedBy, left, uses}
		if multi {
			cells = append([]any{at[g]}, cells...)
		}
		row(tw, cells...)
	}
	return tw.Flush()
}

func newGrantRevokeCmd() *cobra.Command {
	var f adminFlags
	var as string
	cmd := &cobra.Command{
		Use:   "revoke ID",
		Short: "Revoke a grant; the next call it covered is decided without it",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			clients, err := f.brokers()
			if err != nil {
				return err
			}
			for _, c := range clients {
				var g broker.Grant
				err := c.do(cmd.Context(), http.MethodDelete, "/api/v1/grants/"+url.PathEscape(args[0])+"?by="+url.QueryEscape(as), nil, &g)
				var ae *apiError
				if errors.As(err, &ae) && ae.Status == http.StatusNotFound && len(clients) > 1 {
					continue
				}
				if err != nil {
					return fmt.Errorf("revoke %s: %w", args[0], err)
				}
				fmt.Fprintf(cmd.OutOrStdout(), "Revoked grant %s (%s on %s, %s scope).\n", termSafe(g.ID), termSafe(g.Tool), termSafe(g.Server), termSafe(string(g.Scope)))
				return nil
			}
			return fmt.Errorf("no running broker knows grant %s", args[0])
		},
	}
	f.register(cmd, false)
	cmd.Flags().StringVar(&as, "as", broker.AdminIdentity, "who revokes, for the audit log")
	return cmd
}

func newGrantAddCmd() *cobra.Command {
	var f adminFlags
	var spec broker.GrantSpec
	var ttl time.Duration
	var args, keyArgs []string
	cmd := &cobra.Command{
		Use:   "add --server S --tool T --scope exact|arguments|tool --ttl 1h [--arg KEY=JSON]...",
		Short: "Make a grant without an approval",
		Long: `add makes a grant directly. It is bound to the tool's definition as Airlock
last saw it listed, so a client must have listed the server's tools since
the broker started. For an exact grant give the full arguments with --args;
for an arguments grant give each key argument with --arg KEY=VALUE (VALUE is
JSON; a bare word is taken as a string).`,
		Example: `  airlock grants add --server github --tool create_pull_request --scope arguments --arg repo=acme/api --ttl 8h
  airlock grants add --server fs --tool write_file --scope exact --args '{"path":"/srv/x","content":"y"}' --ttl 1h`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := f.one()
			if err != nil {
				return err
			}
			spec.TTL = policy.Duration(ttl)
			if len(args) > 0 {
				spec.Arguments = json.RawMessage(args[0])
			}
			if len(keyArgs) > 0 {
				spec.KeyArguments = map[string]json.RawMessage{}
				for _, kv := range keyArgs {
					k, v, ok := strings.Cut(kv, "=")
					if !ok || k == "" {
						return fmt.Errorf("--arg %q: want KEY=VALUE", kv)
					}
					if !json.Valid([]byte(v)) {
						v = strconv.Quote(v)
					}
					spec.KeyArguments[k] = json.RawMessage(v)
				}
			}
			var g broker.Grant
			if err := c.do(cmd.Context(), http.MethodPost, "/api/v1/grants", spec, &g); err != nil {
				return err
			}
			if f.jsonOut {
				return printJSON(cmd.OutOrStdout(), &g)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Grant %s allows %s on %s (%s scope) %s.\n", termSafe(g.ID), termSafe(g.Tool), termSafe(g.Server), termSafe(string(g.Scope)), grantLasts(&g))
			return nil
		},
	}
	f.register(cmd, true)
	cmd.Flags().StringVar(&spec.Server, "server", "", "the server's name")
	cmd.Flags().StringVar(&spec.Tool, "tool", "", "the tool's name")
	cmd.Flags().StringVar(&spec.Scope, "scope", "", "exact, arguments or tool")
	durationVar(cmd, &ttl, "ttl", time.Hour, "how long it lasts (at most 30 days)")
	cmd.Flags().StringArrayVar(&args, "args", nil, "the full arguments, as JSON, for an exact grant")
	cmd.Flags().StringArrayVar(&keyArgs, "arg", nil, "KEY=VALUE for an arguments grant; repeat for more keys")
	cmd.Flags().StringVar(&spec.Principal, "principal", "", "whom it covers, with --principal-source (default: anyone)")
	cmd.Flags().StringVar(&spec.PrincipalSource, "principal-source", "", "how that principal is identified: token, oauth, os, or anonymous (then without --principal)")
	cmd.Flags().IntVar(&spec.MaxUses, "max-uses", 0, "at most this many calls (0: no limit)")
	cmd.Flags().StringVar(&spec.Reason, "reason", "", "why, for the audit log")
	cmd.Flags().StringVar(&spec.CreatedBy, "as", broker.AdminIdentity, "who makes it, for the audit log")
	for _, name := range []string{"server", "tool", "scope"} {
		cmd.MarkFlagRequired(name)
	}
	return cmd
}

func newAuditCmd() *cobra.Command {
	var f adminFlags
	var follow bool
	var q broker.AuditQuery
	cmd := &cobra.Command{
		Use:   "audit [--follow] [--json]",
		Short: "Show the audit log, newest last",
		Long: `audit prints the broker's audit log: every tools/call (allowed, denied,
held) and what became of each held call, with who decided. --follow keeps
printing new records as they are written. "audit verify" checks the log's
hash chain.

With several brokers running (serve and wraps) and no --state-dir, it
shows all of their logs merged by time, each line labelled with its
broker. With none running, it reads the state directories directly,
read-only, and says so.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			srcs, err := f.sources(cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			defer closeSources(srcs)
			return followAudit(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), srcs, q, follow, f.jsonOut)
		},
	}
	f.register(cmd, true)
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing new records")
	cmd.Flags().IntVarP(&q.Limit, "limit", "n", 50, "how many of the newest records to show first")
	cmd.Flags().StringVar(&q.Server, "server", "", "only this server")
	cmd.Flags().StringVar(&q.Tool, "tool", "", "only this tool")
	cmd.Flags().StringVar(&q.Event, "event", "", `only this event, or a prefix such as "approval."`)
	cmd.Flags().StringVar(&q.Actor, "actor", "", "only records of this approver")
	cmd.AddCommand(newAuditVerifyCmd())
	return cmd
}

// auditPrinter returns a function that prints one record per line, as
// text or as JSON lines (which --follow can stream).
// With labels, each line starts with its broker's label (in JSON, a
// "broker" field).
func auditPrinter(w io.Writer, jsonOut, labels bool) func(label string, r *broker.AuditRecord) {
	if jsonOut {
		return func(label string, r *broker.AuditRecord) {
			if !labels {
				writeJSON(w, r, "")
				return
			}
			writeJSON(w, struct {
				Broker string `json:"broker"`
				*broker.AuditRecord
			}{label, r}, "")
		}
	}
	return func(label string, r *broker.AuditRecord) {
		who := r.Principal
		if r.PrincipalSource != "" {
			who = broker.Principal{ID: r.Principal, Source: r.PrincipalSource, ClientID: r.ClientID, Person: r.Person}.Describe()
		}
		if r.Actor != "" && r.Actor != "policy" {
			who = r.Actor
		}
		if r.ActorAs != "" {
			who += " (as " + r.ActorAs + ")"
		}
		line := ""
		if labels {
			line = fmt.Sprintf("%-16s  ", label)
		}
		line += fmt.Sprintf("%6d  %s  %-18s  %-12s  %-16s  %-10s", r.Seq, r.Time.Local().Format("2006-01-02 15:04:05"), r.Event, r.Server, r.Tool, who)
		if r.Reason != "" {
			line += "  " + r.Reason
		}
		if r.Ref != "" {
			line += "  (ref " + r.Ref + ")"
		}
		if r.Late {
			line += "  (recorded late: audit writes were failing)"
		}
		fmt.Fprintln(w, termSafe(strings.TrimRight(line, " ")))
	}
}

func newAuditVerifyCmd() *cobra.Command {
	var f adminFlags
	cmd := &cobra.Command{
		Use:   "verify",
		Short: "Check the audit log's hash chain and name the first broken record",
		Args:  cobra.NoArgs,
		Long: `verify checks the audit log of the running broker (or of --state-dir's),
or, with several running, of each. With none running it reads the state
directory directly, read-only, and says so.`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			srcs, err := f.sources(cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			defer closeSources(srcs)
			multi := len(srcs) > 1
			var broken []string
			for _, s := range srcs {
				v, err := s.verify(cmd.Context())
				if err != nil {
					return err
				}
				prefix := ""
				if multi {
					prefix = termSafe(s.label) + ": "
				}
				if f.jsonOut && multi {
					printJSON(cmd.OutOrStdout(), struct {
						Broker string `json:"broker"`
						broker.AuditVerification
					}{s.label, v})
				} else if f.jsonOut {
					printJSON(cmd.OutOrStdout(), v)
				} else if v.OK {
					fmt.Fprintf(cmd.OutOrStdout(), "%sThe audit log verifies: %d records, each chained to the one before.\n", prefix, v.Records)
				}
				if !v.OK {
					broken = append(broken, fmt.Sprintf("%sthe audit log is broken at record %d: %s (%d records before it verify)", prefix, v.BrokenSeq, termSafe(v.Problem), v.Records))
				}
			}
			if len(broken) > 0 {
				return &exitError{code: 1, msg: strings.Join(broken, "\n")}
			}
			return nil
		},
	}
	f.register(cmd, true)
	return cmd
}

func printJSON(w io.Writer, v any) error { return writeJSON(w, v, "  ") }

// row writes one row of a table, each cell made safe to print: a tab or a
// newline in a tool's name would otherwise forge columns and rows.
func row(tw io.Writer, cells ...any) {
	for i, c := range cells {
		if i > 0 {
			io.WriteString(tw, "\t")
		}
		io.WriteString(tw, termSafe(fmt.Sprint(c)))
	}
	io.WriteString(tw, "\n")
}
