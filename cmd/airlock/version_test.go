package main

import (
	goruntime "runtime"
	"runtime/debug"
	"strings"
	"testing"
)

func TestVersionText(t *testing.T) {
	settings := func(kv ...string) []debug.BuildSetting {
		var s []debug.BuildSetting
		for i := 0; i < len(kv); i += 2 {
			s = append(s, debug.BuildSetting{Key: kv[i], Value: kv[i+1]})
		}
		return s
	}
	for name, tc := range map[string]struct {
		info *debug.BuildInfo
		want string
	}{
		"go install @version": {
			info: &debug.BuildInfo{GoVersion: "go1.26.0", Main: debug.Module{Version: "v1.2.3"},
				Settings: settings("GOOS", "linux", "GOARCH", "arm64")},
			want: "airlock v1.2.3\nbuilt with go1.26.0 for linux/arm64\n",
		},
		"checkout with vcs": {
			info: &debug.BuildInfo{GoVersion: "go1.26.0", Main: debug.Module{Version: "v0.0.0-20261207124100-fa3b1397cf23+dirty"},
				Settings: settings("GOOS", "darwin", "GOARCH", "amd64", "vcs", "git", "vcs.revision", "fa3b1397cf23a8b7a20a30ee3f7eb3f93e04cb10",
					"vcs.time", "2026-12-07T12:41:00Z", "vcs.modified", "true")},
			want: "airlock v0.0.0-20261207124100-fa3b1397cf23+dirty\nbuilt with go1.26.0 for darwin/amd64\n" +
				"from git revision fa3b1397cf23a8b7a20a30ee3f7eb3f93e04cb10 of 2026-12-07T12:41:00Z, with uncommitted changes\n",
		},
		"devel with a revision": {
			info: &debug.BuildInfo{GoVersion: "go1.26.0", Main: debug.Module{Version: "(devel)"},
				Settings: settings("GOOS", "linux", "GOARCH", "amd64", "vcs", "git", "vcs.revision", "fa3b1397cf23a8b7a20a30ee3f7eb3f93e04cb10", "vcs.modified", "false")},
			want: "airlock devel-fa3b1397cf23\nbuilt with go1.26.0 for linux/amd64\nfrom git revision fa3b1397cf23a8b7a20a30ee3f7eb3f93e04cb10\n",
		},
		"-buildvcs=false": {
			info: &debug.BuildInfo{GoVersion: "go1.26.0", Main: debug.Module{Version: "(devel)"},
				Settings: settings("GOOS", "linux", "GOARCH", "amd64")},
			want: "airlock (devel)\nbuilt with go1.26.0 for linux/amd64\n" +
				"from a source tree without VCS information (built with -buildvcs=false, or outside a checkout)\n",
		},
		"no build info": {
			want: "airlock (unknown): the binary carries no build information\nbuilt with " + goruntime.Version() + " for " + goruntime.GOOS + "/" + goruntime.GOARCH + "\n",
		},
	} {
		if got := versionText(tc.info); got != tc.want {
			t.Errorf("%s:\n got %q\nwant %q", name, got, tc.want)
		}
	}
}

// The command itself prints the version and the Go version it was built
// with, whatever the build stamped.
func TestVersionCommand(t *testing.T) {
	stdout, _, err := run(t, "", "version")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	if len(lines) < 2 || !strings.HasPrefix(lines[0], "airlock ") ||
		lines[1] != "built with "+goruntime.Version()+" for "+goruntime.GOOS+"/"+goruntime.GOARCH {
		t.Errorf("airlock version printed %q", stdout)
	}
}
