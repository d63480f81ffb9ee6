package main

import (
	"io"
	"net/http"
	"net/http/cookiejar"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

var loginURL = regexp.MustCompile(`http://\S+/login\?token=[A-Z0-9]+`)

// loginFileLine is what serve and wrap say on stderr in place of the link.
var loginFileLine = regexp.MustCompile(`a one-time link that signs in as \S+ is in (\S+) \(`)

// linkFromFile waits for stderr to name the login-link file, checks that
// stderr holds no link itself (an MCP client logs it), and returns the
// link the file holds, which only this user may read.
func linkFromFile(t *testing.T, stderr *syncBuffer) string {
	t.Helper()
	var m []string
	for deadline := time.Now().Add(10 * time.Second); m == nil && time.Now().Before(deadline); {
		m = loginFileLine.FindStringSubmatch(stderr.String())
		time.Sleep(20 * time.Millisecond)
	}
	if m == nil {
		t.Fatalf("stderr names no login-link file:\n%s", stderr)
	}
	if loginURL.MatchString(stderr.String()) {
		t.Errorf("the login link is on stderr:\n%s", stderr)
	}
	st, err := os.Stat(m[1])
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("%s has mode %v, want 0600", m[1], st.Mode().Perm())
	}
	data, err := os.ReadFile(m[1])
	if err != nil {
		t.Fatal(err)
	}
	link := loginURL.FindString(string(data))
	if link == "" {
		t.Fatalf("%s holds no link: %q", m[1], data)
	}
	return link
}

// signedInAs opens a login link in a fresh client and returns who the
// approvals page says is signed in.
func signedInAs(t *testing.T, link string) string {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Timeout: 10 * time.Second}
	resp, err := c.Get(link)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`Signed in as <strong>([^<]*)</strong>`).FindStringSubmatch(string(body))
	if resp.Request.URL.Path != "/" || m == nil {
		return ""
	}
	return m[1]
}

// serve prints a login link on stderr; `airlock login` asks the running
// broker for another, for another browser or another name.
func TestServePrintsLoginLinkAndLoginMakesMore(t *testing.T) {
	base, stderr := startServe(t, "ui: {approver: carol, login_link: file}\n")
	printed := linkFromFile(t, stderr)
	if !strings.HasPrefix(printed, base+"/login?token=") {
		t.Fatalf("the login link %q is not for %s", printed, base)
	}
	if who := signedInAs(t, printed); who != "carol" {
		t.Errorf("the printed link signs in as %q, want carol (ui.approver)", who)
	}
	if who := signedInAs(t, printed); who != "" {
		t.Errorf("the printed link worked twice (as %q)", who)
	}

	out, err := cli(t, "login")
	if err != nil {
		t.Fatal(err)
	}
	link := loginURL.FindString(out)
	if !strings.HasPrefix(link, base+"/login?token=") || !strings.Contains(out, "signs in as carol") {
		t.Fatalf("airlock login printed:\n%s", out)
	}
	if !regexp.MustCompile(`signs in as carol; works once, until \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC\n`).MatchString(out) {
		t.Errorf("airlock login does not say until when in 24-hour UTC:\n%s", out)
	}
	if who := signedInAs(t, link); who != "carol" {
		t.Errorf("airlock login's link signs in as %q", who)
	}
	// The admin token is one person: a link in another name would count
	// them twice towards a quorum.
	if _, err := cli(t, "login", "--as", "dave"); err == nil {
		t.Error("airlock login --as dave made a link")
	}
	stateDir := filepath.Join(testStateHome(t), "airlock")
	tok, err := os.ReadFile(filepath.Join(stateDir, tokenFile))
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodPost, base+"/api/v1/login-links", strings.NewReader(`{"approver":"dave"}`))
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(tok)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(body), "a login link signs in as carol (ui.approver), not as dave") {
		t.Errorf("a login link for dave: %d %s", resp.StatusCode, body)
	}
}

// wrap prints its link on stderr too (stdout carries the protocol), for
// the UI on its own loopback port; with OIDC it prints where to sign in
// and no link.
func TestWrapPrintsLoginLink(t *testing.T) {
	waitLink := func(stderr *syncBuffer, re *regexp.Regexp) string {
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			if m := re.FindString(stderr.String()); m != "" {
				return m
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Fatalf("no %s on stderr:\n%s", re, stderr)
		return ""
	}
	// By default the link goes into a file: wrap's stderr is its MCP
	// client's log.
	cs, cmd, stderr := wrapClient(t, []string{"--name", "echo"}, testServerArgs("echo")...)
	if who := signedInAs(t, linkFromFile(t, stderr)); who != "admin" {
		t.Errorf("wrap's link signs in as %q", who)
	}
	cs.Close()
	exitCode(t, cmd) // the next wrap of echo needs its state directory

	// Asked for, it goes on stderr.
	cfg := writeConfig(t, "ui: {login_link: stderr}\n")
	cs, cmd, stderr = wrapClient(t, []string{"--name", "echo", "-c", cfg}, testServerArgs("echo")...)
	if who := signedInAs(t, waitLink(stderr, loginURL)); who != "admin" {
		t.Errorf("wrap's link signs in as %q", who)
	}
	cs.Close()
	exitCode(t, cmd)

	cfg = writeConfig(t, "ui:\n  oidc: {issuer: 'https://idp.example', client_id: airlock}\n")
	cs, _, stderr = wrapClient(t, []string{"--name", "echo", "-c", cfg}, testServerArgs("echo")...)
	defer cs.Close()
	waitLink(stderr, regexp.MustCompile(`Approvals UI: http://127\.0\.0\.1:\d+ \(sign in with https://idp\.example`))
	if loginURL.MatchString(stderr.String()) {
		t.Errorf("with OIDC, a login link was printed:\n%s", stderr)
	}
}

func TestClockTime(t *testing.T) {
	evening := time.Date(2026, 12, 7, 13, 10, 0, 0, time.FixedZone("EST", -5*3600))
	if got, want := clockTime(evening), "2026-12-07 18:10:00 UTC"; got != want {
		t.Errorf("clockTime = %q, want %q", got, want)
	}
}
