package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/airlock-mcp/airlock/broker"
	"github.com/airlock-mcp/airlock/policy"
)

func newTokensCmd() *cobra.Command {
	var f adminFlags
	cmd := &cobra.Command{
		Use:   "tokens [list] [--json]",
		Short: "Make, list and revoke agent and approver tokens",
		Long: `An agent token makes its bearer an agent at airlock serve's MCP endpoints
(principal {id: NAME, source: token, groups: [...]}); an approver token
(--approver) lets a person decide held calls with the CLI as themself
(AIRLOCK_TOKEN or --token-file for airlock approve and deny). A token is
shown once, when it is made; the broker keeps only its hash. A revoked or
expired token is refused from its next request on. See docs/auth.md.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return listTokens(cmd, &f) },
	}
	list := &cobra.Command{
		Use:   "list [--json]",
		Short: "List tokens (never their secrets)",
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return listTokens(cmd, &f) },
	}
	f.register(cmd, true)
	f.register(list, true)
	cmd.AddCommand(list, newTokenCreateCmd(), newTokenRevokeCmd())
	return cmd
}

func newTokenCreateCmd() *cobra.Command {
	var f adminFlags
	var req broker.TokenRequest
	var ttl time.Duration
	cmd := &cobra.Command{
		Use:   "create NAME [--server S]... [--group G]... [--ttl 720h] [--approver]",
		Short: "Make a token and print it, once",
		Example: `  airlock tokens create builder --server github --group ci
  airlock tokens create alice --approver`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := f.one()
			if err != nil {
				return err
			}
			req.Name = args[0]
			d := policy.Duration(ttl)
			req.TTL = &d
			var v broker.TokenView
			if err := c.do(cmd.Context(), http.MethodPost, "/api/v1/tokens", req, &v); err != nil {
				return fmt.Errorf("create token %s: %w", termSafe(args[0]), err)
			}
			if f.jsonOut {
				return printJSON(cmd.OutOrStdout(), v)
			}
			// The token alone on stdout, so that TOKEN=$(airlock tokens
			// create …) works; what it is goes to stderr.
			fmt.Fprintf(cmd.ErrOrStderr(), "Made %s token %s (%s). It is shown now and never again: Airlock keeps only its hash.\n",
				v.Kind, termSafe(v.Name), termSafe(tokenScope(v)))
			fmt.Fprintln(cmd.OutOrStdout(), v.Secret)
			return nil
		},
	}
	f.register(cmd, true)
	cmd.Flags().StringArrayVar(&req.Servers, "server", nil, "a server the token may call (repeat it; default: every server)")
	cmd.Flags().StringArrayVar(&req.Groups, "group", nil, "a group of the agent, for the policy (repeat it)")
	durationVar(cmd, &ttl, "ttl", broker.DefaultTokenTTL, "how long the token lasts (0: it never expires)")
	cmd.Flags().BoolVar(&req.Approver, "approver", false, "a person's token for deciding with the CLI, not an agent's")
	return cmd
}

func newTokenRevokeCmd() *cobra.Command {
	var f adminFlags
	cmd := &cobra.Command{
		Use:   "revoke NAME",
		Short: "Revoke a token; it is refused from its next request on",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := f.one()
			if err != nil {
				return err
			}
			var v broker.TokenView
			if err := c.do(cmd.Context(), http.MethodDelete, "/api/v1/tokens/"+url.PathEscape(args[0]), nil, &v); err != nil {
				return fmt.Errorf("revoke token %s: %w", termSafe(args[0]), err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Revoked %s token %s: it is refused from its next request on, in open sessions too.\n", v.Kind, termSafe(v.Name))
			return nil
		},
	}
	f.register(cmd, false)
	return cmd
}

func listTokens(cmd *cobra.Command, f *adminFlags) error {
	srcs, err := f.sources(cmd.ErrOrStderr())
	if err != nil {
		return err
	}
	defer closeSources(srcs)
	if len(srcs) > 1 {
		var dirs []string
		for _, s := range srcs {
			dirs = append(dirs, s.dir)
		}
		return fmt.Errorf("%d brokers' state found; pick one with --state-dir: %s", len(srcs), strings.Join(dirs, ", "))
	}
	views, err := srcs[0].tokens(cmd.Context())
	if err != nil {
		return err
	}
	if f.jsonOut {
		if views == nil {
			views = []broker.TokenView{}
		}
		return printJSON(cmd.OutOrStdout(), views)
	}
	if len(views) == 0 {
		fmt.Fprintln(cmd.OutOrStdout(), "No tokens.")
		return nil
	}
	tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 0, 2, ' ', 0)
	row(tw, "NAME", "KIND", "STATUS", "SERVERS", "GROUPS", "CREATED BY", "CREATED", "EXPIRES", "LAST USED", "REVOKED")
	for _, v := range views {
		revoked := "-"
		if v.Revoked() {
			revoked = stamp(v.RevokedAt) + " by " + v.RevokedBy
		}
		expires := "never"
		if !v.ExpiresAt.IsZero() {
			expires = stamp(v.ExpiresAt)
		}
		row(tw, v.Name, v.Kind, v.Status, orDash(strings.Join(v.Servers, ",")), orDash(strings.Join(v.Groups, ",")),
			v.CreatedBy, stamp(v.CreatedAt), expires, stamp(v.LastUsedAt), revoked)
	}
	return tw.Flush()
}

// tokens lists a broker's tokens, from its API, or from its state read
// read-only when it is not running.
func (s *stateSource) tokens(ctx context.Context) ([]broker.TokenView, error) {
	if s.store == nil {
		var res struct{ Tokens []broker.TokenView }
		if err := s.api.do(ctx, http.MethodGet, "/api/v1/tokens", nil, &res); err != nil {
			return nil, err
		}
		return res.Tokens, nil
	}
	ts, err := s.store.Tokens(ctx)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	views := make([]broker.TokenView, len(ts))
	for i, t := range ts {
		t.Hash = ""
		views[i] = broker.TokenView{Token: t, Kind: t.Kind(), Status: "active"}
		switch {
		case t.Revoked():
			views[i].Status = "revoked"
		case t.Expired(now):
			views[i].Status = "expired"
		}
	}
	return views, nil
}

func tokenScope(v broker.TokenView) string {
	var parts []string
	if !v.Approver {
		parts = append(parts, "servers "+cmpOr(strings.Join(v.Servers, ", "), "all"))
		if len(v.Groups) > 0 {
			parts = append(parts, "groups "+strings.Join(v.Groups, ", "))
		}
	}
	if v.ExpiresAt.IsZero() {
		parts = append(parts, "never expires")
	} else {
		parts = append(parts, "expires "+v.ExpiresAt.UTC().Format(time.RFC3339))
	}
	return strings.Join(parts, "; ")
}

func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func orDash(s string) string { return cmpOr(s, "-") }

// stamp is a time in the token table: UTC to the minute, "-" for none.
func stamp(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format("2006-01-02 15:04Z")
}

// personalToken is the approver token a decision command uses instead of
// the admin token: --token-file's, else AIRLOCK_TOKEN; "" for none. A
// token file open to other users is refused, as the admin token's is.
func personalToken(file string) (string, error) {
	tok, from := "", ""
	switch {
	case file != "":
		v, err := readSecretFile(file)
		if err != nil {
			return "", fmt.Errorf("--token-file: %w", err)
		}
		tok, from = v, "--token-file "+file
	case os.Getenv("AIRLOCK_TOKEN") != "":
		tok, from = strings.TrimSpace(os.Getenv("AIRLOCK_TOKEN")), "AIRLOCK_TOKEN"
	default:
		return "", nil
	}
	switch {
	case strings.HasPrefix(tok, broker.AgentTokenPrefix):
		return "", fmt.Errorf("%s holds an agent token, which cannot decide; a person decides with an approver token (airlock tokens create NAME --approver)", from)
	case !strings.HasPrefix(tok, broker.ApproverTokenPrefix) || strings.ContainsAny(tok, " \t\r\n"):
		return "", fmt.Errorf("%s does not hold an Airlock approver token (%s…)", from, broker.ApproverTokenPrefix)
	}
	return tok, nil
}

// deciders are the brokers a decision command talks to, and with which
// token: the person's approver token, if one is given, instead of the
// admin token. With brokerURL, the one broker there: a person on another
// machine has no state directory to find it in, nor its admin token.
func deciders(f *adminFlags, tokenFile, brokerURL string) ([]*apiClient, error) {
	tok, err := personalToken(tokenFile)
	if err != nil {
		return nil, err
	}
	if brokerURL != "" {
		if tok == "" {
			return nil, errors.New("--url (AIRLOCK_URL) needs your approver token, from --token-file or AIRLOCK_TOKEN: the admin token stays on the broker's machine")
		}
		if err := checkSecureURL(brokerURL); err != nil {
			return nil, fmt.Errorf("--url: %w: the token must not cross a network in the clear", err)
		}
		u, _ := url.Parse(brokerURL)
		ref := brokerRef{Info: apiInfo{URL: strings.TrimSuffix(u.Scheme+"://"+u.Host+u.Path, "/")}, Token: tok}
		return []*apiClient{{ref: ref, http: &http.Client{Timeout: 30 * time.Second}}}, nil
	}
	clients, err := f.brokers()
	if err != nil {
		return nil, err
	}
	if tok != "" {
		for _, c := range clients {
			c.ref.Token = tok
		}
	}
	return clients, nil
}
