package main

import (
	"cmp"
	"fmt"
	goruntime "runtime"
	"runtime/debug"
	"strings"

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
		newGrantsCmd(), newTokensCmd(), newAuditCmd(), newStateCmd(), newLoginCmd(), newDemoCmd(), newPolicyCmd(), newSlackCmd(), newBenchCmd(), newVersionCmd())
	return root
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print Airlock's version, the Go version it was built with, and its VCS revision",
		Long: `Print Airlock's module version (v1.2.3 for "go install …@v1.2.3"), the Go
version and platform it was built for, and the VCS revision, time and state
of the checkout it was built from when the Go toolchain stamped them. A build
from a source tree without VCS information (-buildvcs=false, or no .git)
has no version: it says "(devel)".`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			info, _ := debug.ReadBuildInfo()
			_, err := fmt.Fprint(cmd.OutOrStdout(), versionText(info))
			return err
		},
	}
}

// version reports the module version stamped by the Go toolchain, or the VCS
// revision for a build from a checkout.
func version() string {
	info, _ := debug.ReadBuildInfo()
	return moduleVersion(info)
}

func moduleVersion(info *debug.BuildInfo) string {
	if info == nil {
		return "(unknown)"
	}
	v := info.Main.Version
	if rev := buildSetting(info, "vcs.revision"); len(rev) >= 12 && (v == "" || v == "(devel)") {
		v = "devel-" + rev[:12]
	}
	if v == "" {
		v = "(devel)"
	}
	return v
}

// versionText is what airlock version prints: the module version, then the
// Go version and platform, then the VCS revision when the build has one.
func versionText(info *debug.BuildInfo) string {
	if info == nil {
		return fmt.Sprintf("airlock (unknown): the binary carries no build information\nbuilt with %s for %s/%s\n", goruntime.Version(), goruntime.GOOS, goruntime.GOARCH)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "airlock %s\n", moduleVersion(info))
	goos, goarch := buildSetting(info, "GOOS"), buildSetting(info, "GOARCH")
	if goos == "" || goarch == "" {
		goos, goarch = goruntime.GOOS, goruntime.GOARCH
	}
	gover := info.GoVersion
	if gover == "" {
		gover = goruntime.Version()
	}
	fmt.Fprintf(&b, "built with %s for %s/%s\n", gover, goos, goarch)
	if rev := buildSetting(info, "vcs.revision"); rev != "" {
		fmt.Fprintf(&b, "from %s revision %s", cmp.Or(buildSetting(info, "vcs"), "vcs"), rev)
		if t := buildSetting(info, "vcs.time"); t != "" {
			fmt.Fprintf(&b, " of %s", t)
		}
		if buildSetting(info, "vcs.modified") == "true" {
			b.WriteString(", with uncommitted changes")
		}
		b.WriteString("\n")
	} else if v := info.Main.Version; v == "" || v == "(devel)" {
		b.WriteString("from a source tree without VCS information (built with -buildvcs=false, or outside a checkout)\n")
	}
	return b.String()
}

func buildSetting(info *debug.BuildInfo, key string) string {
	for _, s := range info.Settings {
		if s.Key == key {
			return s.Value
		}
	}
	return ""
}
