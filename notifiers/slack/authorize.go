package slack

import (
	"context"
	"slices"
	"sync"
	"time"

	slackgo "github.com/slack-go/slack"

	"github.com/airlock-mcp/airlock/broker"
)

// How long Slack's answers about people are trusted. users.info allows
// about 100 calls a minute and usergroups.users.list about 20, so one
// look-up per person or group per minute stays far inside both, however
// often people click.
const (
	userTTL  = time.Minute
	groupTTL = time.Minute
)

// approverSet is who may decide an approval in Slack.
type approverSet struct {
	users  []string // Slack user IDs
	groups []string // Slack user group IDs
	names  []string // Airlock identities, matched through Config.Identities
}

func (s approverSet) empty() bool {
	return len(s.users) == 0 && len(s.groups) == 0 && len(s.names) == 0
}

// approverSet is the policy's approvers when it names any, else the
// configured ones.
func (n *Notifier) approverSet(a *broker.Approval) approverSet {
	d := a.Decision.Approvers
	s := approverSet{users: d.SlackUsers, groups: d.SlackGroups, names: d.Users}
	if s.empty() {
		s = approverSet{users: n.defaults.Users, groups: n.defaults.Groups}
	}
	return s
}

// identity is the Airlock identity a Slack user votes as: the person
// Config.Identities maps the account to (config's identities and
// slack.identities), so that they are one person with their web sign-in,
// their tokens and their agents. An unmapped user has a realm: someone
// other than every other Slack user, but maybe anyone who decides
// elsewhere.
func (n *Notifier) identity(slackID string) (who, realm string) {
	if who, ok := n.principal[slackID]; ok {
		return who, ""
	}
	return slackIdentityPrefix + slackID, "slack"
}

// Why a click is refused. These are shown to the person who clicked.
const (
	refuseNotApprover = "You are not an approver for this call."
	refuseRequester   = "You requested this call, so you cannot approve it."
)

// authorize decides whether the Slack user may vote on a: the part of who
// may vote that only Slack can answer (account types, slack_users,
// slack_groups, the configured approvers); broker.Vote checks the rest. It
// returns the identity to vote as, or a refusal to show them; an error
// means Slack could not say who they are, and nothing may be decided.
func (n *Notifier) authorize(ctx context.Context, a *broker.Approval, slackID string) (who, refusal string, err error) {
	u, err := n.directory.user(ctx, slackID)
	if err != nil {
		return "", "", err
	}
	// Deactivated accounts, bots and apps, guests and people from other
	// organizations never decide, whatever a policy says.
	if u.Deleted || u.IsBot || u.IsAppUser || u.IsWorkflowBot || u.IsRestricted || u.IsUltraRestricted || u.IsStranger || u.ID != slackID {
		return "", refuseNotApprover, nil
	}
	// The requester approving their own call is the broker's rule
	// (VoteSelfApproval): identities maps their account to their person,
	// which the broker compares with the person of the requester.
	who, _ = n.identity(slackID)
	set := n.approverSet(a)
	if set.empty() || slices.Contains(set.users, slackID) || slices.Contains(set.names, who) {
		return who, "", nil
	}
	for _, g := range set.groups {
		members, err := n.directory.group(ctx, g)
		if err != nil {
			return "", "", err
		}
		if members[slackID] {
			return who, "", nil
		}
	}
	return "", refuseNotApprover, nil
}

// directory caches what Slack says about people and user groups.
type directory struct {
	n      *Notifier
	mu     sync.Mutex
	users  map[string]*cached[*slackgo.User]
	groups map[string]*cached[map[string]bool]
}

// cached is one answer from Slack. Its mutex is held during the look-up,
// so concurrent clicks by the same person cause one call, not many.
type cached[T any] struct {
	mu      sync.Mutex
	value   T
	fetched time.Time
}

// directoryKept bounds the entries cached; past it, the cache starts over.
const directoryKept = 10000

func entry[T any](d *directory, m map[string]*cached[T], key string) *cached[T] {
	d.mu.Lock()
	defer d.mu.Unlock()
	e := m[key]
	if e == nil {
		if len(m) >= directoryKept {
			clear(m)
		}
		e = &cached[T]{}
		m[key] = e
	}
	return e
}

func (c *cached[T]) get(ctx context.Context, ttl time.Duration, fetch func(context.Context) (T, error)) (T, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.fetched.IsZero() && time.Since(c.fetched) < ttl {
		return c.value, nil
	}
	v, err := fetch(ctx)
	if err != nil {
		var zero T
		return zero, err // an old answer might let a removed approver in
	}
	c.value, c.fetched = v, time.Now()
	return v, nil
}

func (d *directory) user(ctx context.Context, id string) (*slackgo.User, error) {
	return entry(d, d.users, id).get(ctx, userTTL, func(ctx context.Context) (*slackgo.User, error) {
		var u *slackgo.User
		err := d.n.call(ctx, "users.info", func(ctx context.Context) error {
			var err error
			u, err = d.n.api.GetUserInfoContext(ctx, id)
			return err
		})
		return u, err
	})
}

func (d *directory) group(ctx context.Context, id string) (map[string]bool, error) {
	return entry(d, d.groups, id).get(ctx, groupTTL, func(ctx context.Context) (map[string]bool, error) {
		var ids []string
		err := d.n.call(ctx, "usergroups.users.list", func(ctx context.Context) error {
			var err error
			ids, err = d.n.api.GetUserGroupMembersContext(ctx, id)
			return err
		})
		if err != nil {
			return nil, err
		}
		members := make(map[string]bool, len(ids))
		for _, m := range ids {
			members[m] = true
		}
		return members, nil
	})
}
