package main

import (
	"fmt"
	"net/http"
	"time"

	"github.com/spf13/cobra"

	"github.com/airlock-mcp/airlock/ui"
)

func newLoginCmd() *cobra.Command {
	var f adminFlags
	cmd := &cobra.Command{
		Use:   "login",
		Short: "Print a one-time link that signs a browser in to the approvals page",
		Long: `login asks each running broker for a link that signs a browser in to its
approvals page, like the one a broker prints when it starts. A link works
once, within an hour; the browser then stays signed in for ui.session_ttl
(12h by default). The browser decides as ui.approver ("admin" by default), the one identity
of the admin token's holder, as the CLI does.`,
		Example: `  airlock login
  airlock login --state-dir /tmp/airlock-demo-123/state`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			clients, err := f.brokers()
			if err != nil {
				return err
			}
			var links []ui.LoginLink
			for _, c := range clients {
				var link ui.LoginLink
				if err := c.do(cmd.Context(), http.MethodPost, "/api/v1/login-links", nil, &link); err != nil {
					return fmt.Errorf("login link from the broker at %s: %w", c.ref.Info.URL, err)
				}
				links = append(links, link)
			}
			if f.jsonOut {
				return printJSON(cmd.OutOrStdout(), links)
			}
			for i, link := range links {
				if len(links) > 1 {
					name := clients[i].ref.Info.Server
					if name == "" {
						name = "serve"
					}
					fmt.Fprintf(cmd.OutOrStdout(), "%s (%s):\n", termSafe(name), termSafe(clients[i].ref.Dir))
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s\n  signs in as %s; works once, until %s\n",
					termSafe(link.URL), termSafe(link.Approver), clockTime(link.ExpiresAt))
			}
			return nil
		},
	}
	f.register(cmd, true)
	return cmd
}

// clockTime is how the CLI shows a moment to people, as the approvals page
// does: date and 24-hour time in UTC, saying so, so that it reads the same
// on every machine and beside the page.
func clockTime(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05 UTC") }
