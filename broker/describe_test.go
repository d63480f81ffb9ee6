package broker_test

import (
	"testing"

	"github.com/airlock-mcp/airlock/broker"
)

// Every channel says who asked with Describe, so its words are fixed here.
func TestPrincipalDescribe(t *testing.T) {
	for want, p := range map[string]broker.Principal{
		"ci-bot (token)": {ID: "ci-bot", Source: "token", Groups: []string{"ci"}},
		"alice@example.com (OAuth, client claude-code)": {ID: "alice@example.com", Source: "oauth", ClientID: "claude-code"},
		"svc (OAuth)":                  {ID: "svc", Source: "oauth"},
		"tom (OS user)":                {ID: "tom", Source: "os"},
		"anonymous":                    {Source: "anonymous"},
		"anonymous ":                   {},
		"ci-bot (token), person alice": {ID: "ci-bot", Source: "token", Person: "alice"},
		"alice (OS user)":              {ID: "alice", Source: "os", Person: "alice"},
		"(no name) (token)":            {Source: "token"},
		"x (anonymous)":                {ID: "x"},
		"x (kerberos)":                 {ID: "x", Source: "kerberos"},
	} {
		if want == "anonymous " {
			want = "anonymous" // the zero principal, as a second key
		}
		if got := p.Describe(); got != want {
			t.Errorf("%+v: %q, want %q", p, got, want)
		}
	}
	g := broker.Grant{Anyone: true}
	if got := g.CoversWhom(); got != "anyone" {
		t.Errorf("anyone grant: %q", got)
	}
	g = broker.Grant{PrincipalSource: "token", Principal: "ci-bot"}
	if got := g.CoversWhom(); got != "ci-bot (token)" {
		t.Errorf("token grant: %q", got)
	}
}
