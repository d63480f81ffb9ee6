package main

import (
	"io"
	"net/http"
	"net/http/cookiejar"
	"regexp"
	"strings"
	"testing"
	"time"
)

var loginURL = regexp.MustCompile(`http://\S+/login\?token=[A-Z0-9]+`)

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
	base, stderr := startServe(t, "ui: {approver: carol}\n")
	var printed string
	deadline := time.Now().Add(10 * time.Second)
	for printed == "" && time.Now().Before(deadline) {
		printed = loginURL.FindString(stderr.String())
		time.Sleep(20 * time.Millisecond)
	}
	if !strings.HasPrefix(printed, base+"/login?token=") {
		t.Fatalf("no login link on stderr:\n%s", stderr)
	}
	if who := signedInAs(t, printed); who != "carol" {
		t.Errorf("the printed link signs in as %q, want carol (ui.approver)", who)
	}
	if who := signedInAs(t, printed); who != "" {
		t.Errorf("the printed link worked twice (as %q)", who)
	}

	out, err := cli(t, "login", "--as", "dave")
	if err != nil {
		t.Fatal(err)
	}
	link := loginURL.FindString(out)
	if !strings.HasPrefix(link, base+"/login?token=") || !strings.Contains(out, "signs in as dave") {
		t.Fatalf("airlock login printed:\n%s", out)
	}
	if who := signedInAs(t, link); who != "dave" {
		t.Errorf("airlock login's link signs in as %q", who)
	}
}
