package slack

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	slackgo "github.com/slack-go/slack"

	"github.com/airlock-mcp/airlock/broker"
)

// Name is the notifier's name, and the key of its message reference in
// broker.Approval.Messages.
const Name = "slack"

// DefaultAPIURL is Slack's Web API.
const DefaultAPIURL = "https://slack.com/api/"

// slackIdentityPrefix marks the Airlock identity of a Slack user that
// Config.Identities does not name: "slack:U024BE7LH".
const slackIdentityPrefix = "slack:"

// Config configures a Notifier. BotToken and Channel are required.
type Config struct {
	// BotToken (xoxb-…) posts and updates messages and looks people up.
	BotToken string
	// AppToken (xapp-…) opens Socket Mode connections. Needed only by
	// RunSocketMode.
	AppToken string
	// SigningSecret checks that HTTP interactivity requests come from
	// Slack. Without it, InteractivityHandler refuses every request.
	SigningSecret string
	// Channel is the channel ID for approval messages when the policy's
	// decision names none.
	Channel string
	// APIURL is the Web API's base URL; empty means DefaultAPIURL. Set it
	// for an Enterprise Grid proxy or a test double.
	APIURL string
	// UIURL is the web UI's base URL; each message links to
	// UIURL/approvals/{id}. Empty means no link.
	UIURL string
	// Approvers may decide calls whose policy decision names no approvers.
	// When both are empty too, anyone in the channel may (except guests,
	// bots and the requester).
	Approvers Approvers
	// Identities maps Airlock identities (people, in config's identities)
	// to their Slack user IDs. A vote from a mapped Slack user is cast
	// under the person's name, so the broker can tell a requester from an
	// approver across channels; an unmapped Slack user votes as
	// "slack:<user id>". A person's first ID is the one messages mention.
	Identities map[string][]string
	// Logger receives the notifier's logs; nil discards them.
	Logger *slog.Logger
	// HTTPClient makes the Web API calls; nil means a client with a 15 s
	// timeout.
	HTTPClient *http.Client
}

// Approvers are Slack users and user groups, by ID.
type Approvers struct {
	Users  []string // U… or W…
	Groups []string // S…
}

// account is one mapped Slack user: the identity it votes as, and its ID.
type account struct{ who, id string }

// check names the account in SelfTest: by the identity, and by the ID too
// when the identity has more than one.
func (a account) check(all []account) string {
	if slices.ContainsFunc(all, func(o account) bool { return o.who == a.who && o.id != a.id }) {
		return "identity " + a.who + " (" + a.id + ")"
	}
	return "identity " + a.who
}

// Notifier posts approval requests to Slack, keeps them up to date, and
// takes decisions from their buttons.
type Notifier struct {
	api         *slackgo.Client
	log         *slog.Logger
	channel     string
	uiURL       string
	hasAppToken bool
	secret      string
	defaults    Approvers
	slackUser   map[string]string // Airlock identity → the Slack user ID mentioned
	principal   map[string]string // Slack user ID → Airlock identity
	accounts    []account         // every mapped Slack user, for SelfTest

	directory directory
	versions  versions
	replays   replays
	work      work

	// scopes is what Slack last said the bot token may do (the
	// X-OAuth-Scopes header), for SelfTest.
	scopesMu sync.Mutex
	scopes   *string
}

// New checks cfg and returns a Notifier. It makes no call to Slack:
// SelfTest does, and Notify reports what fails.
func New(cfg Config) (*Notifier, error) {
	if cfg.BotToken == "" {
		return nil, errors.New("slack: a bot token is required")
	}
	if !channelIDPattern.MatchString(cfg.Channel) {
		return nil, fmt.Errorf("slack: channel %q is not a channel ID such as C0123ABCD", cfg.Channel)
	}
	apiURL := cmp.Or(cfg.APIURL, DefaultAPIURL)
	if u, err := url.Parse(apiURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, fmt.Errorf("slack: API URL %q is not an http(s) URL", apiURL)
	}
	if !strings.HasSuffix(apiURL, "/") {
		apiURL += "/" // slack-go appends method names
	}
	for _, u := range cfg.Approvers.Users {
		if !userIDPattern.MatchString(u) {
			return nil, fmt.Errorf("slack: approver %q is not a Slack user ID such as U024BE7LH", u)
		}
	}
	for _, g := range cfg.Approvers.Groups {
		if !groupIDPattern.MatchString(g) {
			return nil, fmt.Errorf("slack: approver group %q is not a Slack user group ID such as S0614TZR7", g)
		}
	}
	n := &Notifier{
		log:         cmp.Or(cfg.Logger, slog.New(slog.DiscardHandler)),
		channel:     cfg.Channel,
		uiURL:       strings.TrimSuffix(cfg.UIURL, "/"),
		hasAppToken: cfg.AppToken != "",
		secret:      cfg.SigningSecret,
		defaults:    cfg.Approvers,
		slackUser:   map[string]string{},
		principal:   map[string]string{},
	}
	for _, who := range sortedKeys(cfg.Identities) {
		for _, id := range cfg.Identities[who] {
			if !userIDPattern.MatchString(id) {
				return nil, fmt.Errorf("slack: identity %q: %q is not a Slack user ID such as U024BE7LH", who, id)
			}
			if other, dup := n.principal[id]; dup {
				if other == who {
					continue
				}
				return nil, fmt.Errorf("slack: identities %q and %q are both Slack user %s", min(who, other), max(who, other), id)
			}
			if _, ok := n.slackUser[who]; !ok {
				n.slackUser[who] = id
			}
			n.principal[id] = who
			n.accounts = append(n.accounts, account{who: who, id: id})
		}
	}
	hc := cfg.HTTPClient
	if hc == nil {
		hc = &http.Client{Timeout: 15 * time.Second}
	}
	n.api = slackgo.New(cfg.BotToken,
		slackgo.OptionAPIURL(apiURL),
		slackgo.OptionHTTPClient(hc),
		slackgo.OptionAppLevelToken(cfg.AppToken),
		slackgo.OptionOnResponseHeaders(func(_ string, h http.Header) {
			if s, ok := h["X-Oauth-Scopes"]; ok {
				v := strings.Join(s, ",")
				n.scopesMu.Lock()
				n.scopes = &v
				n.scopesMu.Unlock()
			}
		}),
	)
	n.directory = directory{n: n, users: map[string]*cached[*slackgo.User]{}, groups: map[string]*cached[map[string]bool]{}}
	n.work.sem = make(chan struct{}, maxInFlight)
	return n, nil
}

// Name implements broker.Notifier.
func (n *Notifier) Name() string { return Name }

// messageRef is what the broker stores to find the message again.
type messageRef struct {
	Channel string `json:"channel"`
	TS      string `json:"ts"`
}

// Notify posts the approval request to the channel the policy chose, or
// the configured one. It implements broker.Notifier.
func (n *Notifier) Notify(ctx context.Context, a *broker.Approval) (json.RawMessage, error) {
	log := n.log.With("approval_id", a.ID)
	msg := n.render(a)
	channel := cmp.Or(a.Decision.Channel, n.channel)
	ref, err := n.post(ctx, channel, msg)
	if err != nil && channel != n.channel && channelProblem(err) {
		// A message in the default channel beats none at all.
		log.Warn("posting to the policy's channel failed; posting to the default channel", "channel", channel, "err", err)
		ref, err = n.post(ctx, n.channel, msg)
	}
	if err != nil {
		return nil, err
	}
	log.Info("approval request posted", "channel", ref.Channel, "ts", ref.TS)
	return json.Marshal(ref)
}

func (n *Notifier) post(ctx context.Context, channel string, msg message) (messageRef, error) {
	var ref messageRef
	err := n.call(ctx, "chat.postMessage", func(ctx context.Context) error {
		var err error
		ref.Channel, ref.TS, err = n.api.PostMessageContext(ctx, channel, msg.options()...)
		return err
	})
	return ref, err
}

// options never let Slack act on the message's content: no link or media
// previews of anything the call mentions.
func (m message) options() []slackgo.MsgOption {
	return []slackgo.MsgOption{
		slackgo.MsgOptionText(m.text, false),
		slackgo.MsgOptionBlocks(m.blocks...),
		slackgo.MsgOptionDisableLinkUnfurl(),
		slackgo.MsgOptionDisableMediaUnfurl(),
	}
}

func channelProblem(err error) bool {
	se, ok := errors.AsType[slackgo.SlackErrorResponse](err)
	if !ok {
		return false
	}
	switch se.Err {
	case "channel_not_found", "not_in_channel", "is_archived", "restricted_action":
		return true
	}
	return false
}

// Update rewrites the approval's message to show its votes or its outcome,
// whoever decided it. It implements broker.Updater.
func (n *Notifier) Update(ctx context.Context, a *broker.Approval) error {
	raw := a.Messages[Name]
	if raw == nil {
		return nil // never posted; nothing to update
	}
	// Our own store's record of the message Airlock posted.
	var ref messageRef
	if err := json.Unmarshal(raw, &ref); err != nil || ref.Channel == "" || ref.TS == "" {
		return fmt.Errorf("slack: approval %s has an unreadable message reference %s", a.ID, raw)
	}
	done, stale := n.versions.begin(a)
	defer done()
	if stale {
		return nil // a newer state is already shown
	}
	msg := n.render(a)
	err := n.call(ctx, "chat.update", func(ctx context.Context) error {
		_, _, _, err := n.api.UpdateMessageContext(ctx, ref.Channel, ref.TS, msg.options()...)
		return err
	})
	if err != nil {
		return err
	}
	n.log.Debug("approval message updated", "approval_id", a.ID, "status", a.Status, "votes", len(a.Votes))
	return nil
}

// versions keeps each message's updates in order. The broker sends them
// from separate goroutines, and an older state (one vote) must never
// overwrite a newer one (approved).
type versions struct {
	mu sync.Mutex
	m  map[string]*version
}

type version struct {
	mu      sync.Mutex // held while the message is being updated
	users   int        // guarded by versions.mu
	touched time.Time  // guarded by versions.mu
	shown   int        // guarded by mu
}

// progress orders an approval's states: more votes is newer, and a final
// state is newest.
func progress(a *broker.Approval) int {
	if a.Status != broker.StatusPending {
		return math.MaxInt
	}
	return len(a.Votes)
}

// versionsKept bounds the versions remembered; older ones are forgotten.
const versionsKept = 1024

func (vs *versions) begin(a *broker.Approval) (done func(), stale bool) {
	vs.mu.Lock()
	if vs.m == nil {
		vs.m = map[string]*version{}
	}
	now := time.Now()
	if len(vs.m) >= versionsKept {
		for id, v := range vs.m {
			if v.users == 0 && now.Sub(v.touched) > time.Hour {
				delete(vs.m, id)
			}
		}
	}
	v := vs.m[a.ID]
	if v == nil {
		v = &version{shown: -1}
		vs.m[a.ID] = v
	}
	v.users++
	v.touched = now
	vs.mu.Unlock()

	v.mu.Lock()
	p := progress(a)
	stale = p < v.shown
	if !stale {
		v.shown = p
	}
	return func() {
		v.mu.Unlock()
		vs.mu.Lock()
		v.users--
		vs.mu.Unlock()
	}, stale
}

// Retries of one Web API call.
const (
	maxAttempts  = 5
	firstBackoff = 500 * time.Millisecond
	maxBackoff   = 8 * time.Second
)

// call runs a Web API call, and runs it again when Slack says it may
// succeed later: after Retry-After when rate limited, with backoff after a
// server error or a broken connection. It gives up when the next attempt
// would pass ctx's deadline.
func (n *Notifier) call(ctx context.Context, method string, fn func(context.Context) error) error {
	backoff := firstBackoff
	for attempt := 1; ; attempt++ {
		err := fn(ctx)
		if err == nil {
			return nil
		}
		wait, ok := retryAfter(err, backoff)
		if !ok || attempt == maxAttempts || ctx.Err() != nil {
			return fmt.Errorf("slack: %s: %w", method, err)
		}
		if deadline, has := ctx.Deadline(); has && time.Until(deadline) < wait {
			return fmt.Errorf("slack: %s: %w (no time left to retry in %s)", method, err, wait)
		}
		n.log.Warn("slack call failed; retrying", "method", method, "attempt", attempt, "retry_in", wait, "err", err)
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("slack: %s: %w", method, err)
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

// retryAfter says whether err is worth another attempt, and when.
func retryAfter(err error, backoff time.Duration) (time.Duration, bool) {
	if rl, ok := errors.AsType[*slackgo.RateLimitedError](err); ok {
		return max(rl.RetryAfter, time.Second), true
	}
	if sc, ok := errors.AsType[slackgo.StatusCodeError](err); ok {
		return backoff, sc.Retryable()
	}
	if se, ok := errors.AsType[slackgo.SlackErrorResponse](err); ok {
		switch se.Err {
		case "internal_error", "fatal_error", "service_unavailable", "request_timeout", "ratelimited":
			return backoff, true
		}
		return 0, false
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return 0, false
	}
	// The connection broke, or something between Airlock and Slack
	// answered with a page that is not Slack's JSON.
	if _, ok := errors.AsType[*url.Error](err); ok {
		return backoff, true
	}
	if _, ok := errors.AsType[*json.SyntaxError](err); ok {
		return backoff, true
	}
	return 0, false
}
