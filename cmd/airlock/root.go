package main

import (
	"fmt"
	"runtime/debug"

	"github.com/spf13/cobra"

	"github.com/airlock-mcp/airlock/broker"
)

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "airlock",
		Short: "Hold risky MCP tool calls until a person approves them",
		Long: `Airlock sits between an MCP client (Claude, Cursor, VS Code, any agent) and
the MCP servers that can do damage. Every tools/call is judged by a Rego
policy: allowed calls pass straight through, denied calls come back as a tool
error that says why, and risky calls wait until a person approves them.

Start here:
  airlock demo     # a sample server, a scripted agent and the approvals page
  airlock wrap -- npx -y @modelcontextprotocol/server-filesystem /srv/data
  airlock serve -c airlock.yaml`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newWrapCmd(), newServeCmd(), newPendingCmd(), newVoteCmd(broker.Approve), newVoteCmd(broker.Deny),
		newGrantsCmd(), newAuditCmd(), newLoginCmd(), newDemoCmd(), newPolicyCmd(), newSlackCmd(), newBenchCmd(), newVersionCmd())
	return root
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print Airlock's version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := fmt.Fprintln(cmd.OutOrStdout(), "airlock", version())
			return err
		},
	}
}

// version reports the module version stamped by the Go toolchain, or the VCS
// revision for a build from a checkout.
func version() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "(unknown)"
	}
	v := info.Main.Version
	for _, s := range info.Settings {
		if s.Key == "vcs.revision" && len(s.Value) >= 12 && (v == "" || v == "(devel)") {
			v = "devel-" + s.Value[:12]
		}
	}
	if v == "" {
		v = "(devel)"
	}
	return v
}
