package main

import (
	"cmp"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"

	"github.com/airlock-mcp/airlock/broker"
	"github.com/airlock-mcp/airlock/notifiers/slack"
	"github.com/airlock-mcp/airlock/policy"
	"github.com/airlock-mcp/airlock/relay"
	"github.com/airlock-mcp/airlock/ui"
)

// DefaultListen is where serve and wrap listen when the config says nothing.
const DefaultListen = "127.0.0.1:7420"

// Defaults for the listener's body_timeout and max_connections.
const (
	DefaultBodyTimeout    = time.Minute
	DefaultMaxConnections = 1024
)

// Config is airlock.yaml. Every field has a usable zero value, so an empty
// file (or none) runs on the embedded defaults.
type Config struct {
	// Listen is the address of the HTTP listener (MCP endpoints, UI, API).
	Listen string `yaml:"listen"`
	// LogLevel is debug, info, warn or error.
	LogLevel string `yaml:"log_level"`
	// InitTimeout bounds an upstream's answer to initialize (default 30s).
	InitTimeout time.Duration `yaml:"init_timeout"`
	// SessionIdle closes HTTP sessions without requests for this long,
	// stopping their child process (default 1h).
	SessionIdle time.Duration `yaml:"session_idle"`
	// AllowedOrigins lists browser origins, besides the listener's own
	// host, that may call the MCP endpoints.
	AllowedOrigins []string `yaml:"allowed_origins"`
	// AllowedHosts lists further names the listener answers to (in the
	// Host header), besides the listen address's own, loopback names on
	// loopback, and the hosts of ui.url and slack.ui_url.
	AllowedHosts []string `yaml:"allowed_hosts"`
	// BodyTimeout bounds how long a request may take to send its body
	// (default 1m).
	BodyTimeout time.Duration `yaml:"body_timeout"`
	// MaxConnections bounds the listener's open connections (default
	// 1024); held calls and event streams each keep one.
	MaxConnections int `yaml:"max_connections"`
	// StateDir holds the database, the admin token and the running
	// broker's address (default: under the user's state home).
	StateDir string `yaml:"state_dir"`
	// State says where the broker's state is kept: a bbolt file in
	// StateDir (the default), or a PostgreSQL database replicas share.
	State StateConfig `yaml:"state"`
	// AdminTokenFile holds the admin token in place of StateDir's
	// admin-token, so that replicas can share one (created when absent).
	AdminTokenFile string `yaml:"admin_token_file"`
	// HoldWait is how long a caller without a progress token is kept
	// waiting for a decision before it is told to call again (default 50s).
	HoldWait time.Duration `yaml:"hold_wait"`
	// HoldWaitProgress is how long a caller with a progress token gets
	// heartbeats before it is told to call again (default 4m30s, under the
	// 5 minutes after which Cursor and VS Code give up).
	HoldWaitProgress time.Duration `yaml:"hold_wait_progress"`
	// CancelGrace is how long the approval of a call whose client
	// cancelled it because its request timed out stays open for the
	// retry before it is withdrawn (default 2m).
	CancelGrace time.Duration `yaml:"cancel_grace"`
	// ApprovedRetryWindow is how long after its expiry an approved call
	// whose client was no longer waiting still runs on the agent's
	// identical retry, before it lapses (default 10m).
	ApprovedRetryWindow time.Duration `yaml:"approved_retry_window"`
	// JoinAcrossSessions lets an identical retry from another session of
	// the same identified principal join a pending approval (default
	// false: only a retry in the same session joins).
	JoinAcrossSessions bool `yaml:"join_across_sessions"`
	// OfferTasks declares task support (MCP's tasks utility) to clients
	// for tools whose upstream declares none (default false: capabilities
	// and tool lists pass untouched). A held call that asks for a task is
	// answered with one of Airlock's either way.
	OfferTasks bool `yaml:"offer_tasks"`
	// ApprovalTimeout applies when the policy names no timeout (default
	// 10m).
	ApprovalTimeout time.Duration `yaml:"approval_timeout"`
	// Heartbeat spaces the progress notifications a held call gets when
	// its client gave a progress token (default 10s); clients that reset
	// their request timeout on progress then wait as long as it takes.
	Heartbeat time.Duration `yaml:"heartbeat"`
	// AuditAllowedCalls records every call the policy allows in the audit
	// log (default true). Off, allowed calls skip a durable write; denied,
	// held and decided calls are always recorded.
	AuditAllowedCalls *bool `yaml:"audit_allowed_calls"`
	// Policy says where the Rego policy comes from.
	Policy PolicyConfig `yaml:"policy"`
	// Pprof serves Go's profiler at /debug/pprof/ on the listener, behind
	// the admin token (default off).
	Pprof bool `yaml:"pprof"`
	// UI configures the approvals web page served at / (docs/ui.md).
	UI UIConfig `yaml:"ui"`
	// Identities ties each person's identities in every channel to one
	// name, by person (docs/auth.md, "People across channels").
	Identities map[string]IdentityConfig `yaml:"identities"`
	// Servers are the upstream MCP servers, by name.
	Servers map[string]*ServerConfig `yaml:"servers"`
	// MCPServers accepts the "mcpServers" block of claude_desktop_config.json
	// (and .mcp.json) as it is.
	MCPServers map[string]*ServerConfig `yaml:"mcpServers"`
	// Slack asks approvers in Slack; nil means no Slack. See docs/slack.md.
	Slack *SlackConfig `yaml:"slack"`
	// Auth says who may call serve's MCP endpoints; see docs/auth.md.
	Auth *AuthConfig `yaml:"auth"`

	path string // the file this came from; "" for the defaults
	dir  string // the absolute directory of path, which relative paths are read against
	// Limits bound what callers can make Airlock keep (docs/config.md).
	Limits LimitsConfig `yaml:"limits"`
}

// LimitsConfig is the limits section. Each key's zero value means its
// default (relay.DefaultMax… and broker.DefaultMax…); there is no "unlimited", so that a config
// cannot turn off what keeps the machine safe, only raise it.
type LimitsConfig struct {
	Sessions              int   `yaml:"sessions"`
	SessionsPerPrincipal  int   `yaml:"sessions_per_principal"`
	ChildrenPerServer     int   `yaml:"children_per_server"`
	HeldCalls             int   `yaml:"held_calls"`
	HeldCallsPerPrincipal int   `yaml:"held_calls_per_principal"`
	HeldBytes             int64 `yaml:"held_bytes"`
}

func (l *LimitsConfig) validate() error {
	for _, kv := range []struct {
		key string
		v   int64
	}{
		{"sessions", int64(l.Sessions)},
		{"sessions_per_principal", int64(l.SessionsPerPrincipal)},
		{"children_per_server", int64(l.ChildrenPerServer)},
		{"held_calls", int64(l.HeldCalls)},
		{"held_calls_per_principal", int64(l.HeldCallsPerPrincipal)},
		{"held_bytes", l.HeldBytes},
	} {
		if kv.v < 0 {
			return fmt.Errorf("config: limits.%s: must not be negative (0 or absent means the default)", kv.key)
		}
	}
	return nil
}

// broker is the held-call part of the limits, which the broker enforces.
func (l *LimitsConfig) broker() broker.Limits {
	return broker.Limits{Held: l.HeldCalls, HeldPerPrincipal: l.HeldCallsPerPrincipal, HeldBytes: l.HeldBytes}
}

// relay is the session and child-process part, which the relay enforces.
func (l *LimitsConfig) relay() relay.Limits {
	return relay.Limits{Sessions: l.Sessions, SessionsPerPrincipal: l.SessionsPerPrincipal, ChildrenPerServer: l.ChildrenPerServer}
}

// SlackConfig is the slack section. The secrets are in files, so that the
// config itself can be shared, reviewed and logged.
type SlackConfig struct {
	// BotTokenFile holds the bot token (xoxb-…). Required.
	BotTokenFile string `yaml:"bot_token_file"`
	// AppTokenFile holds the app-level token (xapp-…) for Socket Mode.
	AppTokenFile string `yaml:"app_token_file"`
	// SigningSecretFile holds the signing secret that checks requests to
	// /slack/interactivity. At least one of the two must be set.
	SigningSecretFile string `yaml:"signing_secret_file"`
	// Channel is the channel ID for approval requests. Required.
	Channel string `yaml:"channel"`
	// APIURL is Slack's Web API (default https://slack.com/api/).
	APIURL string `yaml:"api_url"`
	// UIURL is the web UI's base URL for links (default: ui.url, else
	// the listener's address; see slackUIURL).
	UIURL string `yaml:"ui_url"`
	// Approvers may decide when a policy names none.
	Approvers SlackApprovers `yaml:"approvers"`
	// Identities maps Airlock names to Slack user IDs, one each: the
	// short form of the top-level identities.NAME.slack, which it must
	// not contradict.
	Identities map[string]string `yaml:"identities"`
}

// IdentityConfig is one person under identities: the identities, by the
// way each is established, that are this person. Values are compared
// exactly, as the token, the provider or Slack gives them.
type IdentityConfig struct {
	// OAuth are principals of OAuth access tokens (the values of
	// auth.oauth.principal_claim) of agents that act for the person.
	OAuth []string `yaml:"oauth"`
	// Web are ui.oidc sign-ins (the values of ui.oidc.claim) and the names
	// login links sign in (ui.approver).
	Web []string `yaml:"web"`
	// Slack are the person's Slack user IDs.
	Slack []string `yaml:"slack"`
	// Tokens are names of the person's agent and approver tokens.
	Tokens []string `yaml:"tokens"`
	// OS are operating system users, the principals of airlock wrap.
	OS []string `yaml:"os"`
}

// sources pairs each list with the broker.Principal source (or channel)
// its identities are established by, and its key.
func (p IdentityConfig) sources() []identitySource {
	return []identitySource{{"oauth", "oauth", p.OAuth}, {"web", "web", p.Web}, {"slack", "slack", p.Slack},
		{"tokens", "token", p.Tokens}, {"os", "os", p.OS}}
}

type identitySource struct {
	key, source string
	ids         []string
}

// validateIdentities checks the identities section: each identity is one
// person's, a Slack ID is a Slack user ID, and slack.identities agrees.
// An identity claimed by two people would make "the requester may not
// approve their own call" pick one of them at random.
func (c *Config) validateIdentities() error {
	type claim struct{ person, at string } // who claims an identity, and where
	owner := map[string]claim{}            // by broker.PersonKey
	for _, person := range sortedKeys(c.Identities) {
		key := "identities." + person
		if err := checkPersonName(person); err != nil {
			return fmt.Errorf("config: %s: %w", key, err)
		}
		n := 0
		for _, src := range c.Identities[person].sources() {
			for i, id := range src.ids {
				at := fmt.Sprintf("%s.%s[%d]", key, src.key, i)
				if strings.TrimSpace(id) == "" || strings.TrimSpace(id) != id {
					return fmt.Errorf("config: %s: %q must be an identity without surrounding spaces", at, id)
				}
				if src.source == "slack" && !slack.IsUserID(id) {
					return fmt.Errorf("config: %s: %q is not a Slack user ID such as U024BE7LH", at, id)
				}
				if _, ok := c.Identities[id]; ok && id != person {
					return fmt.Errorf("config: %s: %s is the name of another person, identities.%s; one name is one person", at, id, id)
				}
				k := broker.PersonKey(src.source, id)
				if prev, dup := owner[k]; dup && prev.person != person {
					return fmt.Errorf("config: %s: %s is also %s; one identity is one person", at, id, prev.at)
				}
				owner[k] = claim{person, at}
				n++
			}
		}
		if n == 0 {
			return fmt.Errorf("config: %s: lists no identity; give it oauth, web, slack, tokens or os", key)
		}
	}
	if c.Slack == nil {
		return nil
	}
	for _, name := range sortedKeys(c.Slack.Identities) {
		id := c.Slack.Identities[name]
		at := "slack.identities." + name
		if prev, ok := owner[broker.PersonKey("slack", id)]; ok && prev.person != name {
			return fmt.Errorf("config: %s: %s is also %s; one Slack account is one person", at, id, prev.at)
		}
		// A name that identities makes someone's identity would vote from
		// Slack under another name than the same person elsewhere.
		for _, person := range sortedKeys(c.Identities) {
			for _, src := range c.Identities[person].sources() {
				if person != name && slices.Contains(src.ids, name) {
					return fmt.Errorf("config: %s: %s is identities.%s's; list %s under identities.%s.slack instead", at, name, person, id, person)
				}
			}
		}
	}
	return nil
}

// checkPersonName refuses names that could be mistaken for another
// identity: an unmapped Slack user votes as "slack:<user ID>".
func checkPersonName(name string) error {
	switch {
	case strings.TrimSpace(name) == "" || strings.TrimSpace(name) != name:
		return errors.New("a person's name must not be empty or have surrounding spaces")
	case strings.ContainsFunc(name, unicode.IsControl):
		return errors.New("a person's name must not hold control characters")
	case strings.HasPrefix(name, "slack:"):
		return errors.New(`a person's name must not start with "slack:", which names Slack users Airlock does not map`)
	}
	return nil
}

// people is the identities section (and slack.identities) as the broker
// takes it; nil when both are empty.
func (c *Config) people() broker.People {
	p := broker.People{}
	for person, ids := range c.Identities {
		for _, src := range ids.sources() {
			for _, id := range src.ids {
				p[broker.PersonKey(src.source, id)] = person
			}
		}
	}
	if c.Slack != nil {
		for name, id := range c.Slack.Identities {
			p[broker.PersonKey("slack", id)] = name
		}
	}
	if len(p) == 0 {
		return nil
	}
	return p
}

// slackIdentities is each person's Slack user IDs, from identities and
// slack.identities, for the Slack notifier.
func (c *Config) slackIdentities() map[string][]string {
	out := map[string][]string{}
	for _, person := range sortedKeys(c.Identities) {
		out[person] = append(out[person], c.Identities[person].Slack...)
	}
	if c.Slack != nil {
		for _, name := range sortedKeys(c.Slack.Identities) {
			if id := c.Slack.Identities[name]; !slices.Contains(out[name], id) {
				out[name] = append(out[name], id)
			}
		}
	}
	maps.DeleteFunc(out, func(_ string, ids []string) bool { return len(ids) == 0 })
	return out
}

// adminIdentity is who holds the admin token and who a login link signs
// in: ui.approver, or the person identities.X.web maps it to, so that the
// two remain one person.
func (c *Config) adminIdentity() string {
	approver := cmp.Or(strings.TrimSpace(c.UI.Approver), broker.AdminIdentity)
	return cmp.Or(c.people().Person("web", approver), strings.TrimSpace(c.UI.Approver))
}

func sortedKeys[V any](m map[string]V) []string {
	keys := slices.Collect(maps.Keys(m))
	sort.Strings(keys)
	return keys
}

// SlackApprovers are Slack user IDs and user group IDs.
type SlackApprovers struct {
	Users  []string `yaml:"users"`
	Groups []string `yaml:"groups"`
}

// PolicyConfig is the policy section.
type PolicyConfig struct {
	// Dir is a directory of .rego and data files; empty means the library
	// built into Airlock. It is watched and reloaded on change.
	Dir string `yaml:"dir"`
	// Timeout bounds one evaluation; past it the call is denied (default
	// 1s).
	Timeout time.Duration `yaml:"timeout"`
}

// UIConfig is the ui section: who signs in with a login link, and how else
// people may sign in.
type UIConfig struct {
	// Approver is who a login link signs in (default "admin", the
	// identity the CLI decides as).
	Approver string `yaml:"approver"`
	// URL is where browsers reach Airlock when that is not the listen
	// address, as behind a reverse proxy. An https URL makes the session
	// cookie Secure.
	URL string `yaml:"url"`
	// SessionTTL is how long a browser stays signed in (default 12h).
	SessionTTL time.Duration `yaml:"session_ttl"`
	// LoginLink is where serve and wrap put the login link they make at
	// start: "auto" (the default: serve writes it on the terminal, and
	// into the state directory's login-link file when it has none; wrap
	// always into the file), "file", or "stderr". Not stderr by default:
	// an MCP client keeps the stderr of the servers it starts in its logs.
	LoginLink string `yaml:"login_link"`
	// OIDC turns on sign-in with an OpenID Connect provider.
	OIDC *OIDCConfig `yaml:"oidc"`
}

// OIDCConfig is ui.oidc.
type OIDCConfig struct {
	Issuer           string `yaml:"issuer"`
	ClientID         string `yaml:"client_id"`
	ClientSecretFile string `yaml:"client_secret_file"`
	// Claim is the ID token claim that names the approver (default
	// "email").
	Claim string `yaml:"claim"`
	// AllowedUsers and AllowedDomains (of email addresses) limit who may
	// sign in; both empty lets in anyone the provider signs in.
	AllowedUsers   []string `yaml:"allowed_users"`
	AllowedDomains []string `yaml:"allowed_domains"`

	clientSecret string // read from ClientSecretFile
}

// ServerConfig is one upstream: a command for stdio, or a URL for
// streamable HTTP.
type ServerConfig struct {
	Type    string            `yaml:"type"` // optional: stdio, http (or streamable-http)
	Command string            `yaml:"command"`
	Args    []string          `yaml:"args"`
	Env     map[string]string `yaml:"env"`
	Cwd     string            `yaml:"cwd"`
	URL     string            `yaml:"url"`
	Headers map[string]string `yaml:"headers"`
	// TrustAnnotations lets the policy believe the server's tool
	// annotations (readOnlyHint…). Default true.
	TrustAnnotations *bool `yaml:"trust_annotations"`
}

var serverName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`)

// loadConfig reads the config file; an empty path gives the defaults.
func loadConfig(path string) (*Config, error) {
	cfg := &Config{path: path}
	if path != "" {
		abs, err := filepath.Abs(path)
		if err != nil {
			return nil, fmt.Errorf("config: %w", err)
		}
		cfg.dir = filepath.Dir(abs)
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("config: %w", err)
		}
		if err := decodeConfig(data, cfg); err != nil {
			return nil, fmt.Errorf("config: %s: %w", path, err)
		}
	}
	if err := cfg.resolve(); err != nil {
		return nil, err
	}
	return cfg, nil
}

func decodeConfig(data []byte, cfg *Config) error {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return err
	}
	if root.Kind == 0 || len(root.Content) == 0 { // an empty file is fine
		return nil
	}
	// The walk does what the decoder's KnownFields would, and reads
	// durations with policy.ParseDuration (days, and a clear word for a
	// bare number) instead of the decoder's time.ParseDuration.
	var errs []string
	checkNode(&root, reflect.TypeFor[Config](), "", &errs)
	if len(errs) > 0 {
		return errors.New(strings.Join(errs, "; "))
	}
	if err := root.Decode(cfg); err != nil {
		return friendlyYAMLError(err, &root)
	}
	return nil
}

var durationType = reflect.TypeFor[time.Duration]()

// checkNode walks n as the value of a t, naming unknown keys and rewriting
// each duration to the Go form the decoder reads. What is of the wrong
// shape is left to the decoder, which names it.
func checkNode(n *yaml.Node, t reflect.Type, path string, errs *[]string) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	if n.Kind == yaml.DocumentNode {
		for _, c := range n.Content {
			checkNode(c, t, path, errs)
		}
		return
	}
	if t == durationType {
		if n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
			return
		}
		d, err := policy.ParseDuration(n.Value)
		if err != nil {
			*errs = append(*errs, durationError(n, path))
			return
		}
		n.Value, n.Tag, n.Style = d.String(), "!!str", 0
		return
	}
	switch t.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			return
		}
		fields := yamlFields(t)
		for i := 0; i+1 < len(n.Content); i += 2 {
			key, val := n.Content[i], n.Content[i+1]
			if key.Tag == "!!merge" {
				checkNode(val, t, path, errs)
				continue
			}
			f, ok := fields[key.Value]
			if !ok {
				*errs = append(*errs, fmt.Sprintf("line %d: unknown key %q", key.Line, key.Value))
				continue
			}
			checkNode(val, f.Type, joinKey(path, key.Value), errs)
		}
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			checkNode(n.Content[i+1], t.Elem(), joinKey(path, n.Content[i].Value), errs)
		}
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			return
		}
		for i, c := range n.Content {
			checkNode(c, t.Elem(), fmt.Sprintf("%s[%d]", path, i), errs)
		}
	}
}

// durationError says what a duration key wants, using the number the user
// wrote when it lacks only a unit ("hold_wait: 50").
func durationError(n *yaml.Node, key string) string {
	example := "50s, 10m, 24h or 7d"
	if _, err := strconv.ParseFloat(n.Value, 64); err == nil && n.Tag != "!!str" {
		example = n.Value + "s"
	}
	return fmt.Sprintf("line %d: %s: %q is not a duration; write a duration such as %s (units: ms, s, m, h, d)", n.Line, key, n.Value, example)
}

// yamlFields maps the keys of struct t to its fields, as the decoder
// names them.
func yamlFields(t reflect.Type) map[string]reflect.StructField {
	out := map[string]reflect.StructField{}
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		switch name {
		case "-":
			continue
		case "":
			name = strings.ToLower(f.Name)
		}
		out[name] = f
	}
	return out
}

func joinKey(prefix, key string) string {
	if prefix == "" {
		return key
	}
	return prefix + "." + key
}

var lineError = regexp.MustCompile(`^line (\d+): (.*)$`)

// friendlyYAMLError rewrites the decoder's Go-flavoured messages so that
// they name the key the user wrote.
func friendlyYAMLError(err error, root *yaml.Node) error {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return err
	}
	msgs := make([]string, 0, len(te.Errors))
	for _, e := range te.Errors {
		if m := lineError.FindStringSubmatch(e); m != nil {
			line, _ := strconv.Atoi(m[1])
			msgs = append(msgs, fmt.Sprintf("line %d: %s: %s", line, keyAtLine(root, line, ""), m[2]))
		} else {
			msgs = append(msgs, e)
		}
	}
	return errors.New(strings.Join(msgs, "; "))
}

// keyAtLine returns the dotted path of the key whose value is on line.
func keyAtLine(n *yaml.Node, line int, prefix string) string {
	switch n.Kind {
	case yaml.DocumentNode, yaml.SequenceNode:
		for _, c := range n.Content {
			if k := keyAtLine(c, line, prefix); k != "" {
				return k
			}
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			key, val := n.Content[i], n.Content[i+1]
			path := key.Value
			if prefix != "" {
				path = prefix + "." + key.Value
			}
			if val.Line == line && val.Kind == yaml.ScalarNode {
				return path
			}
			if k := keyAtLine(val, line, path); k != "" {
				return k
			}
		}
	}
	return ""
}

// resolve merges mcpServers into servers, applies defaults, expands ${VAR}
// references and checks every key, naming the first bad one.
func (c *Config) resolve() error {
	if c.Listen == "" {
		c.Listen = DefaultListen
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		return fmt.Errorf("config: listen: %q is not host:port", c.Listen)
	}
	for i, h := range c.AllowedHosts {
		if err := checkHostName(h); err != nil {
			return fmt.Errorf("config: allowed_hosts[%d]: %q %v", i, h, err)
		}
	}
	if c.BodyTimeout < 0 {
		return fmt.Errorf("config: body_timeout: must not be negative")
	}
	if c.BodyTimeout == 0 {
		c.BodyTimeout = DefaultBodyTimeout
	}
	if c.MaxConnections < 0 {
		return fmt.Errorf("config: max_connections: must not be negative")
	}
	if c.MaxConnections == 0 {
		c.MaxConnections = DefaultMaxConnections
	}
	switch c.LogLevel {
	case "", "debug", "info", "warn", "error":
	default:
		return fmt.Errorf("config: log_level: %q is not one of debug, info, warn, error", c.LogLevel)
	}
	if c.InitTimeout < 0 {
		return fmt.Errorf("config: init_timeout: must not be negative")
	}
	if c.SessionIdle < 0 {
		return fmt.Errorf("config: session_idle: must not be negative")
	}
	if c.HoldWait < 0 {
		return fmt.Errorf("config: hold_wait: must not be negative")
	}
	if c.HoldWaitProgress < 0 {
		return fmt.Errorf("config: hold_wait_progress: must not be negative (a value above every approval timeout keeps a caller with a progress token waiting for the decision)")
	}
	if c.CancelGrace < 0 {
		return fmt.Errorf("config: cancel_grace: must not be negative")
	}
	if c.ApprovedRetryWindow < 0 {
		return fmt.Errorf("config: approved_retry_window: must not be negative")
	}
	if c.Heartbeat < 0 {
		return fmt.Errorf("config: heartbeat: must not be negative")
	}
	if c.ApprovalTimeout < 0 {
		return fmt.Errorf("config: approval_timeout: must not be negative")
	}
	if c.Policy.Timeout < 0 {
		return fmt.Errorf("config: policy.timeout: must not be negative")
	}
	if err := c.Limits.validate(); err != nil {
		return err
	}
	policyDir := c.Policy.Dir
	c.resolvePaths()
	if err := c.State.resolve(stateEnv()); err != nil {
		return err
	}
	if c.Policy.Dir != "" {
		if st, err := os.Stat(c.Policy.Dir); err != nil || !st.IsDir() {
			why := "is not a directory"
			if err != nil {
				why = "is not there"
				var pe *fs.PathError
				if !errors.Is(err, fs.ErrNotExist) && errors.As(err, &pe) {
					why = "cannot be read: " + pe.Err.Error()
				}
			}
			return fmt.Errorf("config: policy.dir: %s %s%s", c.Policy.Dir, why, c.relNote(policyDir))
		}
	}
	if err := c.UI.resolve(); err != nil {
		return err
	}
	if err := c.Auth.resolve(); err != nil {
		return err
	}
	if c.Servers == nil {
		c.Servers = map[string]*ServerConfig{}
	}
	for name, s := range c.MCPServers {
		if _, dup := c.Servers[name]; dup {
			return fmt.Errorf("config: mcpServers.%s: also defined under servers", name)
		}
		c.Servers[name] = s
	}
	c.MCPServers = nil
	for _, name := range c.serverNames() {
		if err := c.Servers[name].resolve(name); err != nil {
			return err
		}
	}
	if c.Slack != nil {
		if err := c.Slack.validate(); err != nil {
			return err
		}
	}
	return c.validateIdentities()
}

// resolvePaths makes every relative path in the config relative to the
// config file's directory rather than the working directory, which for
// wrap is wherever the MCP client happened to start it. Only paths are
// resolved: a command without a slash is looked up in PATH, and args are
// the server's own business.
func (c *Config) resolvePaths() {
	c.StateDir = c.atConfig(c.StateDir)
	c.State.PasswordFile = c.atConfig(c.State.PasswordFile)
	c.AdminTokenFile = c.atConfig(c.AdminTokenFile)
	c.Policy.Dir = c.atConfig(c.Policy.Dir)
	if s := c.Slack; s != nil {
		s.BotTokenFile = c.atConfig(s.BotTokenFile)
		s.AppTokenFile = c.atConfig(s.AppTokenFile)
		s.SigningSecretFile = c.atConfig(s.SigningSecretFile)
	}
	if o := c.UI.OIDC; o != nil {
		o.ClientSecretFile = c.atConfig(o.ClientSecretFile)
	}
	if a := c.Auth; a != nil && a.OAuth != nil {
		a.OAuth.ClientSecretFile = c.atConfig(a.OAuth.ClientSecretFile)
	}
	for _, servers := range []map[string]*ServerConfig{c.Servers, c.MCPServers} {
		for _, s := range servers {
			if s == nil {
				continue
			}
			s.Cwd = c.atConfig(s.Cwd)
			if strings.ContainsRune(s.Command, '/') {
				s.Command = c.atConfig(s.Command)
			}
		}
	}
}

// atConfig resolves p against the config file's directory.
func (c *Config) atConfig(p string) string {
	if p == "" || filepath.IsAbs(p) || c.dir == "" {
		return p
	}
	return filepath.Join(c.dir, p)
}

// relNote says, in an error about a path written as written, that a
// relative path was read against the config file's directory, so that the
// user sees why the path checked is not the one they typed.
func (c *Config) relNote(written string) string {
	if c.dir == "" || filepath.IsAbs(written) {
		return ""
	}
	return " (relative paths in the config are read from the config file's directory, " + c.dir + ")"
}

// validate checks the slack section, naming the first bad key. The secret
// files are read, and checked, when the notifier is built (newSlack).
func (s *SlackConfig) validate() error {
	switch {
	case s.BotTokenFile == "":
		return errors.New("config: slack.bot_token_file is required: the file holding the bot token (xoxb-…)")
	case s.AppTokenFile == "" && s.SigningSecretFile == "":
		return errors.New("config: slack: set app_token_file (Socket Mode) or signing_secret_file (HTTP interactivity), or Slack's buttons cannot reach Airlock")
	case !slack.IsChannelID(s.Channel):
		return fmt.Errorf("config: slack.channel: %q is not a channel ID such as C0123ABCD (channel details, at the bottom)", s.Channel)
	}
	for _, kv := range [][2]string{{"api_url", s.APIURL}, {"ui_url", s.UIURL}} {
		if kv[1] == "" {
			continue
		}
		if p, err := url.Parse(kv[1]); err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
			return fmt.Errorf("config: slack.%s: %q is not an http(s) URL", kv[0], kv[1])
		}
	}
	for i, u := range s.Approvers.Users {
		if !slack.IsUserID(u) {
			return fmt.Errorf("config: slack.approvers.users[%d]: %q is not a Slack user ID such as U024BE7LH", i, u)
		}
	}
	for i, g := range s.Approvers.Groups {
		if !slack.IsGroupID(g) {
			return fmt.Errorf("config: slack.approvers.groups[%d]: %q is not a Slack user group ID such as S0614TZR7", i, g)
		}
	}
	seen := map[string]string{}
	names := make([]string, 0, len(s.Identities))
	for name := range s.Identities {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		id := s.Identities[name]
		if !slack.IsUserID(id) {
			return fmt.Errorf("config: slack.identities.%s: %q is not a Slack user ID such as U024BE7LH", name, id)
		}
		if other, dup := seen[id]; dup {
			return fmt.Errorf("config: slack.identities.%s: %s is also slack.identities.%s; one Slack account is one person", name, id, other)
		}
		seen[id] = name
	}
	return nil
}

func (u *UIConfig) resolve() error {
	u.Approver = strings.TrimSpace(u.Approver)
	if u.URL != "" {
		p, err := url.Parse(u.URL)
		if err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" || strings.Trim(p.Path, "/") != "" {
			return fmt.Errorf("config: ui.url: %q must be http(s)://host[:port], without a path (the UI is served at /)", u.URL)
		}
	}
	if u.SessionTTL < 0 {
		return fmt.Errorf("config: ui.session_ttl: must not be negative")
	}
	switch u.LoginLink {
	case "", "auto", "file", "stderr":
	default:
		return fmt.Errorf("config: ui.login_link: %q must be auto, file or stderr", u.LoginLink)
	}
	o := u.OIDC
	if o == nil {
		return nil
	}
	if o.Issuer == "" {
		return fmt.Errorf("config: ui.oidc.issuer is required")
	}
	if err := checkSecureURL(o.Issuer); err != nil {
		return fmt.Errorf("config: ui.oidc.issuer: %w", err)
	}
	if o.ClientID == "" {
		return fmt.Errorf("config: ui.oidc.client_id is required")
	}
	if o.ClientSecretFile != "" {
		var err error
		if o.clientSecret, err = readSecretFile(o.ClientSecretFile); err != nil {
			return fmt.Errorf("config: ui.oidc.client_secret_file: %w", err)
		}
	}
	if o.Claim == "" {
		o.Claim = "email"
	}
	for _, d := range o.AllowedDomains {
		if d == "" || strings.Contains(d, "@") {
			return fmt.Errorf("config: ui.oidc.allowed_domains: %q must be a domain such as example.com", d)
		}
	}
	return nil
}

// oidc is ui.oidc as the UI takes it; nil when it is off.
func (u *UIConfig) oidc() *ui.OIDC {
	if u.OIDC == nil {
		return nil
	}
	o := u.OIDC
	return &ui.OIDC{Issuer: o.Issuer, ClientID: o.ClientID, ClientSecret: o.clientSecret, Claim: o.Claim,
		AllowedUsers: o.AllowedUsers, AllowedDomains: o.AllowedDomains}
}

func (c *Config) serverNames() []string {
	names := make([]string, 0, len(c.Servers))
	for name := range c.Servers {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}

func (s *ServerConfig) resolve(name string) error {
	key := "servers." + name
	if !serverName.MatchString(name) {
		return fmt.Errorf("config: %s: a server name may only use letters, digits, '.', '_' and '-'", key)
	}
	if s == nil {
		return fmt.Errorf("config: %s: needs command (stdio) or url (streamable HTTP)", key)
	}
	switch s.Type {
	case "", "stdio", "http", "streamable-http", "streamableHttp":
	case "sse":
		return fmt.Errorf("config: %s.type: the legacy SSE transport is not supported; use the server's streamable HTTP endpoint", key)
	default:
		return fmt.Errorf("config: %s.type: %q is not stdio or http", key, s.Type)
	}
	switch {
	case s.Command != "" && s.URL != "":
		return fmt.Errorf("config: %s: set command or url, not both", key)
	case s.Command == "" && s.URL == "":
		return fmt.Errorf("config: %s: needs command (stdio) or url (streamable HTTP)", key)
	case s.Command != "" && s.Type != "" && s.Type != "stdio":
		return fmt.Errorf("config: %s.type: %q does not go with command", key, s.Type)
	case s.URL != "" && s.Type == "stdio":
		return fmt.Errorf("config: %s.type: stdio does not go with url", key)
	}
	if s.URL != "" {
		u, err := url.Parse(s.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("config: %s.url: %q is not an http(s) URL", key, s.URL)
		}
		if len(s.Args) > 0 || len(s.Env) > 0 || s.Cwd != "" {
			return fmt.Errorf("config: %s: args, env and cwd only apply to a command", key)
		}
	}
	if s.Command != "" && len(s.Headers) > 0 {
		return fmt.Errorf("config: %s.headers: only apply to a url", key)
	}
	for k, v := range s.Env {
		x, err := expandVars(v)
		if err != nil {
			return fmt.Errorf("config: %s.env.%s: %w", key, k, err)
		}
		s.Env[k] = x
	}
	for k, v := range s.Headers {
		x, err := expandVars(v)
		if err != nil {
			return fmt.Errorf("config: %s.headers.%s: %w", key, k, err)
		}
		s.Headers[k] = x
	}
	return nil
}

// trustAnnotations defaults to true: the operator chose the server.
func (s *ServerConfig) trustAnnotations() bool {
	return s.TrustAnnotations == nil || *s.TrustAnnotations
}

var varRef = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}`)

// expandVars replaces ${VAR} with the environment variable's value. An
// unset variable is an error rather than an empty string: a header like
// "Bearer ${TOKEN}" must not quietly become "Bearer ".
func expandVars(s string) (string, error) {
	var missing []string
	out := varRef.ReplaceAllStringFunc(s, func(ref string) string {
		name := ref[2 : len(ref)-1]
		v, ok := os.LookupEnv(name)
		if !ok {
			missing = append(missing, name)
		}
		return v
	})
	if len(missing) > 0 {
		return "", fmt.Errorf("environment variable %s is not set", strings.Join(missing, ", "))
	}
	return out, nil
}

// checkHostName accepts a host name or IP literal, as allowed_hosts lists
// them: no scheme, port, path or wildcard.
func checkHostName(h string) error {
	if h == "" {
		return errors.New("is empty")
	}
	if strings.ContainsAny(h, "/:*@ ") && net.ParseIP(strings.Trim(h, "[]")) == nil {
		return errors.New("must be a host name or IP address, without scheme, port, path or wildcard")
	}
	return nil
}

// loopbackListen reports whether addr listens on loopback only.
func loopbackListen(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	return err == nil && loopbackHost(host)
}

// loopbackHost reports whether host (no port) names this machine only.
func loopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(strings.Trim(host, "[]"))
	return ip != nil && ip.IsLoopback()
}

// durationValue is a duration flag read by policy.ParseDuration, so that
// flags take what config keys and policies take ("90d").
type durationValue time.Duration

// durationVar defines a duration flag, as pflag's DurationVar but with
// Airlock's one duration syntax.
func durationVar(cmd *cobra.Command, p *time.Duration, name string, value time.Duration, usage string) {
	*p = value
	cmd.Flags().Var((*durationValue)(p), name, usage)
}

func (d *durationValue) Set(s string) error {
	v, err := policy.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = durationValue(v)
	return nil
}

func (d *durationValue) Type() string { return "duration" }

func (d *durationValue) String() string { return policy.Duration(*d).String() }
