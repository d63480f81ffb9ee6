package main

import (
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
	dir, explicit := f.stateDir, true
	if dir == "" {
		dir = os.Getenv("AIRLOCK_STATE_DIR")
	}
	if dir == "" {
		home, err := stateHome()
		if err != nil {
			return nil, err
		}
		dir, explicit = home, false
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
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			clients, err := f.brokers()
			if err != nil {
				return err
			}
			var all []*broker.Approval
			for _, c := range clients {
				var res struct{ Approvals []*broker.Approval }
				if err := c.do(cmd.Context(), http.MethodGet, "/api/v1/approvals?status=pending&limit=1000", nil, &res); err != nil {
					return err
				}
				all = append(all, res.Approvals...)
			}
			slices.SortFunc(all, func(a, b *broker.Approval) int { return strings.Compare(a.ID, b.ID) })
			if f.jsonOut {
				views := make([]pendingView, len(all))
				for i, a := range all {
					views[i] = newPendingView(a)
				}
				return printJSON(cmd.OutOrStdout(), views)
			}
			if len(all) == 0 {
				fmt.Fprintln(cmd.OutOrStdout(), "No calls are waiting for approval.")
				return nil
			}
			now := time.Now()
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 0, 2, ' ', 0)
			row(tw, "ID", "SERVER", "TOOL", "REQUESTER", "RISK", "WAITING", "EXPIRES IN", "REASON")
			for _, a := range all {
				row(tw, a.ID, a.Server, a.Tool, a.Principal.ID, a.Decision.Risk,
					now.Sub(a.RequestedAt).Round(time.Second), a.ExpiresAt.Sub(now).Round(time.Second), a.Decision.Reason)
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
	ID          string          `json:"id"`
	Server      string          `json:"server"`
	Tool        string          `json:"tool"`
	Arguments   json.RawMessage `json:"arguments"`
	Status      broker.Status   `json:"status"`
	Reason      string          `json:"reason"`
	Risk        string          `json:"risk,omitempty"`
	Requester   string          `json:"requester"`
	Quorum      int             `json:"quorum"`
	Approvals   int             `json:"approvals"`
	RequestedAt time.Time       `json:"requested_at"`
	ExpiresAt   time.Time       `json:"expires_at"`
}

func newPendingView(a *broker.Approval) pendingView {
	args := a.Arguments
	if len(args) == 0 {
		args = json.RawMessage("{}")
	}
	return pendingView{ID: a.ID, Server: a.Server, Tool: a.Tool, Arguments: args, Status: a.Status, Reason: a.Decision.Reason,
		Risk: a.Decision.Risk, Requester: a.Principal.ID, Quorum: a.Quorum(), Approvals: a.Approvals(),
		RequestedAt: a.RequestedAt, ExpiresAt: a.ExpiresAt}
}

func newVoteCmd(verdict broker.Verdict) *cobra.Command {
	var f adminFlags
	var reason, as string
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
			clients, err := f.brokers()
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
					fmt.Fprintf(cmd.OutOrStdout(), "Approved %s: the call to %s on %s is released.\n", id, tool, server)
					if g := termSafe(a.GrantID); g != "" && err == nil {
						fmt.Fprintf(cmd.OutOrStdout(), "Grant %s allows such calls until it expires or is revoked (airlock grants revoke %s).\n", g, g)
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
	if verdict == broker.Approve {
		cmd.Flags().StringVar(&grant.Scope, "grant", "", "also allow such calls from now on: exact (same arguments), arguments (same key arguments), or tool (any arguments)")
		cmd.Flags().DurationVar(&ttl, "ttl", time.Hour, "how long the grant lasts (capped by the policy's max_ttl)")
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
	clients, err := f.brokers()
	if err != nil {
		return err
	}
	path := "/api/v1/grants?limit=1000"
	if !all {
		path += "&status=active"
	}
	var grants []*broker.Grant
	for _, c := range clients {
		var res struct{ Grants []*broker.Grant }
		if err := c.do(cmd.Context(), http.MethodGet, path, nil, &res); err != nil {
			return err
		}
		grants = append(grants, res.Grants...)
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
	row(tw, "ID", "STATUS", "SERVER", "TOOL", "SCOPE", "COVERS", "FOR", "BY", "EXPIRES IN", "USES")
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
		who := g.Principal
		if who == "" {
			who = "anyone"
		}
		uses := fmt.Sprint(g.Uses)
		if g.MaxUses > 0 {
			uses += fmt.Sprintf(" of %d", g.MaxUses)
		}
		left := "-"
		if g.Status == broker.GrantActive {
			left = g.ExpiresAt.Sub(now).Round(time.Second).String()
		}
		row(tw, g.ID, g.Status, g.Server, g.Tool, g.Scope, covers, who, g.CreatedBy, left, uses)
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
			fmt.Fprintf(cmd.OutOrStdout(), "Grant %s allows %s on %s (%s scope) until %s.\n", termSafe(g.ID), termSafe(g.Tool), termSafe(g.Server), termSafe(string(g.Scope)), g.ExpiresAt.Local().Format(time.RFC3339))
			return nil
		},
	}
	f.register(cmd, true)
	cmd.Flags().StringVar(&spec.Server, "server", "", "the server's name")
	cmd.Flags().StringVar(&spec.Tool, "tool", "", "the tool's name")
	cmd.Flags().StringVar(&spec.Scope, "scope", "", "exact, arguments or tool")
	cmd.Flags().DurationVar(&ttl, "ttl", time.Hour, "how long it lasts (at most 30 days)")
	cmd.Flags().StringArrayVar(&args, "args", nil, "the full arguments, as JSON, for an exact grant")
	cmd.Flags().StringArrayVar(&keyArgs, "arg", nil, "KEY=VALUE for an arguments grant; repeat for more keys")
	cmd.Flags().StringVar(&spec.Principal, "principal", "", "whom it covers (default: anyone)")
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
hash chain.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := f.one()
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			params := url.Values{}
			for k, v := range map[string]string{"server": q.Server, "tool": q.Tool, "event": q.Event, "actor": q.Actor} {
				if v != "" {
					params.Set(k, v)
				}
			}
			params.Set("limit", fmt.Sprint(max(q.Limit, 1)))
			var res struct{ Records []*broker.AuditRecord }
			if err := c.do(cmd.Context(), http.MethodGet, "/api/v1/audit?"+params.Encode(), nil, &res); err != nil {
				return err
			}
			slices.Reverse(res.Records) // oldest first, like a log
			tw := auditPrinter(out, f.jsonOut)
			var last uint64
			for _, r := range res.Records {
				tw(r)
				last = r.Seq
			}
			if !follow {
				return nil
			}
			params.Set("limit", "1000")
			for {
				select {
				case <-cmd.Context().Done():
					return nil
				case <-time.After(time.Second):
				}
				params.Set("after", fmt.Sprint(last))
				res.Records = nil
				if err := c.do(cmd.Context(), http.MethodGet, "/api/v1/audit?"+params.Encode(), nil, &res); err != nil {
					if cmd.Context().Err() != nil {
						return nil
					}
					return err
				}
				for _, r := range res.Records {
					tw(r)
					last = r.Seq
				}
			}
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
func auditPrinter(w io.Writer, jsonOut bool) func(*broker.AuditRecord) {
	if jsonOut {
		return func(r *broker.AuditRecord) { writeJSON(w, r, "") }
	}
	return func(r *broker.AuditRecord) {
		who := r.Principal
		if r.Actor != "" && r.Actor != "policy" {
			who = r.Actor
		}
		if r.ActorAs != "" {
			who += " (as " + r.ActorAs + ")"
		}
		line := fmt.Sprintf("%6d  %s  %-18s  %-12s  %-16s  %-10s", r.Seq, r.Time.Local().Format("2006-01-02 15:04:05"), r.Event, r.Server, r.Tool, who)
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
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := f.one()
			if err != nil {
				return err
			}
			var v broker.AuditVerification
			if err := c.do(cmd.Context(), http.MethodGet, "/api/v1/audit/verify", nil, &v); err != nil {
				return err
			}
			if f.jsonOut {
				printJSON(cmd.OutOrStdout(), v)
			} else if v.OK {
				fmt.Fprintf(cmd.OutOrStdout(), "The audit log verifies: %d records, each chained to the one before.\n", v.Records)
			}
			if !v.OK {
				return &exitError{code: 1, msg: fmt.Sprintf("the audit log is broken at record %d: %s (%d records before it verify)", v.BrokenSeq, termSafe(v.Problem), v.Records)}
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
