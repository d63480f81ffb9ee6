package main

import (
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/airlock-mcp/airlock/broker"
)

// Every duration key takes Airlock's one duration syntax, days included,
// and a bare number is told what it lacks instead of a decoder error.
func TestConfigDurations(t *testing.T) {
	cfg, err := loadConfig(writeConfig(t, `
hold_wait: 45s
hold_wait_progress: 4m
cancel_grace: 90s
approved_retry_window: 1h
approval_timeout: 1d
session_idle: 1d12h
init_timeout: "90s"
policy: {timeout: 2s}
ui: {session_ttl: 7d}
`))
	if err != nil {
		t.Fatal(err)
	}
	const day = 24 * time.Hour
	for key, kv := range map[string][2]time.Duration{
		"hold_wait":             {cfg.HoldWait, 45 * time.Second},
		"hold_wait_progress":    {cfg.HoldWaitProgress, 4 * time.Minute},
		"cancel_grace":          {cfg.CancelGrace, 90 * time.Second},
		"approved_retry_window": {cfg.ApprovedRetryWindow, time.Hour},
		"approval_timeout":      {cfg.ApprovalTimeout, day},
		"session_idle":          {cfg.SessionIdle, day + 12*time.Hour},
		"init_timeout":          {cfg.InitTimeout, 90 * time.Second},
		"policy.timeout":        {cfg.Policy.Timeout, 2 * time.Second},
		"ui.session_ttl":        {cfg.UI.SessionTTL, 7 * day},
	} {
		if kv[0] != kv[1] {
			t.Errorf("%s = %v, want %v", key, kv[0], kv[1])
		}
	}

	for body, want := range map[string]string{
		"hold_wait: 50\n":                   `line 1: hold_wait: "50" is not a duration; write a duration such as 50s`,
		"heartbeat: 1.5\n":                  `heartbeat: "1.5" is not a duration; write a duration such as 1.5s`,
		"\nui:\n  session_ttl: soon\n":      `line 3: ui.session_ttl: "soon" is not a duration; write a duration such as 50s, 10m, 24h or 7d`,
		"policy: {timeout: 3}\n":            `policy.timeout: "3" is not a duration; write a duration such as 3s`,
		"body_timeout: 1h2d\n":              `body_timeout: "1h2d" is not a duration`,
		"hold_wait: 50\nlisen: x\n":         `hold_wait: "50" is not a duration; write a duration such as 50s (units: ms, s, m, h, d); line 2: unknown key "lisen"`,
		"d: &d {hold_wait: 5}\n":            `unknown key "d"`,
		"ui: {session_ttl: 1h, x: 1}\n":     `line 1: unknown key "x"`,
		"servers:\n  a: {command: x, y: 1}": `line 2: unknown key "y"`,
	} {
		_, err := loadConfig(writeConfig(t, body))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: err = %v, want it to contain %q", body, err, want)
		}
	}
}

// A merge key brings its keys, durations and unknown keys alike, into the
// mapping it is merged into.
func TestConfigMergeKeys(t *testing.T) {
	cfg, err := loadConfig(writeConfig(t, `
servers:
  a: &base {command: x, trust_annotations: false}
  b:
    <<: *base
    cwd: /tmp
`))
	if err != nil {
		t.Fatal(err)
	}
	if b := cfg.Servers["b"]; b == nil || b.Command != "x" || b.Cwd != "/tmp" {
		t.Errorf("servers.b = %+v", b)
	}
	_, err = loadConfig(writeConfig(t, "x: &t {comand: y}\nservers:\n  a:\n    <<: *t\n"))
	if err == nil || !strings.Contains(err.Error(), `unknown key "comand"`) {
		t.Errorf("merged unknown key: err = %v", err)
	}
}

// Duration flags take days too: airlock approve --ttl 90d.
func TestDurationFlag(t *testing.T) {
	var d time.Duration
	cmd := &cobra.Command{Use: "x"}
	durationVar(cmd, &d, "ttl", time.Hour, "")
	if d != time.Hour {
		t.Fatalf("default = %v", d)
	}
	if err := cmd.Flags().Parse([]string{"--ttl", "90d"}); err != nil || d != 90*24*time.Hour {
		t.Fatalf("--ttl 90d = %v, %v", d, err)
	}
	err := cmd.Flags().Parse([]string{"--ttl", "5"})
	if err == nil || !strings.Contains(err.Error(), `not a duration such as "50s"`) {
		t.Fatalf("--ttl 5: err = %v", err)
	}
	approve := newVoteCmd(broker.Approve)
	if err := approve.Flags().Parse([]string{"--ttl", "90d"}); err != nil {
		t.Fatalf("approve --ttl 90d: %v", err)
	}
	if got := approve.Flags().Lookup("ttl").Value.String(); got != "2160h" {
		t.Errorf("approve --ttl 90d reads %s", got)
	}
}
