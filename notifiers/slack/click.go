package slack

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"sync"
	"time"

	slackgo "github.com/slack-go/slack"

	"github.com/airlock-mcp/airlock/broker"
	"github.com/airlock-mcp/airlock/policy"
)

// Voter is what the notifier needs of the broker to record votes cast in
// Slack. *broker.Broker implements it.
type Voter interface {
	Approval(ctx context.Context, id string) (*broker.Approval, error)
	Vote(ctx context.Context, id string, v broker.Vote) (*broker.Approval, error)
}

// interaction is what Airlock reads of a click or a dialog submission.
// Only these fields are trusted, and only after Slack's signature (HTTP)
// or its authenticated connection (Socket Mode) vouched for the payload.
type interaction struct {
	kind       string // actionApprove, actionDeny, actionGrant, callbackDeny or callbackGrant
	user       string // Slack user ID of the person
	approvalID string
	channel    string // where the message is, for replies only they see
	messageTS  string
	triggerID  string // lets Airlock open a dialog, for three seconds
	reason     string // the denier's reason
	grant      *broker.GrantRequest
}

// payload is the part of Slack's interaction payloads Airlock reads; see
// https://docs.slack.dev/reference/interaction-payloads/.
type payload struct {
	Type string `json:"type"`
	User struct {
		ID string `json:"id"`
	} `json:"user"`
	TriggerID string `json:"trigger_id"`
	Container struct {
		ChannelID string `json:"channel_id"`
		MessageTS string `json:"message_ts"`
	} `json:"container"`
	Channel struct {
		ID string `json:"id"`
	} `json:"channel"`
	Actions []struct {
		ActionID string `json:"action_id"`
		BlockID  string `json:"block_id"`
		Value    string `json:"value"`
	} `json:"actions"`
	View struct {
		CallbackID      string `json:"callback_id"`
		PrivateMetadata string `json:"private_metadata"`
		State           struct {
			Values map[string]map[string]struct {
				Value          *string `json:"value"`
				SelectedOption *struct {
					Value string `json:"value"`
				} `json:"selected_option"`
			} `json:"values"`
		} `json:"state"`
	} `json:"view"`
}

// dialogState travels in the deny dialog's private_metadata, so that its
// submission knows which approval and message it is about.
type dialogState struct {
	Approval string `json:"approval"`
	Channel  string `json:"channel"`
	TS       string `json:"ts"`
}

var (
	approvalIDPattern = regexp.MustCompile(`^[0-9A-Z]{1,64}$`)
	tsPattern         = regexp.MustCompile(`^[0-9]{1,20}\.[0-9]{1,10}$`)
)

// errIgnored is an interaction Airlock did not ask for, such as a click
// on another app's message: it is acknowledged and dropped.
var errIgnored = errors.New("slack: not an Airlock interaction")

// parseInteraction reads an interaction payload. It returns errIgnored for
// well-formed payloads that are none of Airlock's business, and another
// error for malformed ones.
func parseInteraction(data []byte) (*interaction, error) {
	// A Slack-signed payload (checked before it gets here), in Slack's
	// own shape: not written by an agent or a server.
	var p payload
	if err := json.Unmarshal(data, &p); err != nil {
		return nil, fmt.Errorf("slack: interaction payload: %w", err)
	}
	if !userIDPattern.MatchString(p.User.ID) {
		return nil, fmt.Errorf("slack: interaction payload: user %q is not a user ID", p.User.ID)
	}
	in := &interaction{user: p.User.ID, triggerID: p.TriggerID}
	switch p.Type {
	case "block_actions":
		if len(p.Actions) != 1 || p.Actions[0].BlockID != blockDecide {
			return nil, errIgnored
		}
		act := p.Actions[0]
		if act.ActionID != actionApprove && act.ActionID != actionDeny && act.ActionID != actionGrant {
			return nil, errIgnored
		}
		in.kind, in.approvalID = act.ActionID, act.Value
		in.channel = cmp.Or(p.Container.ChannelID, p.Channel.ID)
		in.messageTS = p.Container.MessageTS
	case "view_submission":
		if p.View.CallbackID != callbackDeny && p.View.CallbackID != callbackGrant {
			return nil, errIgnored
		}
		// Airlock's own state, round-tripped by Slack in a signed payload.
		var st dialogState
		if err := json.Unmarshal([]byte(p.View.PrivateMetadata), &st); err != nil {
			return nil, fmt.Errorf("slack: dialog state: %w", err)
		}
		in.kind, in.approvalID, in.channel, in.messageTS = p.View.CallbackID, st.Approval, st.Channel, st.TS
		values := p.View.State.Values
		if in.kind == callbackGrant {
			scope, ttl := values[blockScope][actionScope].SelectedOption, values[blockTTL][actionTTL].SelectedOption
			if scope == nil || ttl == nil {
				return nil, errors.New("slack: grant dialog without a scope or a duration")
			}
			d, err := time.ParseDuration(ttl.Value)
			if err != nil || d <= 0 {
				return nil, fmt.Errorf("slack: grant dialog duration %q", ttl.Value)
			}
			in.grant = &broker.GrantRequest{Scope: scope.Value, TTL: policy.Duration(d)}
			break
		}
		field := values[blockReason][actionReason].Value
		if field == nil {
			return nil, errors.New("slack: deny dialog without a reason")
		}
		// A blank reason is no malformed payload: the broker refuses a
		// denial without one, on every channel, and the denier is told.
		in.reason = strings.TrimSpace(*field)
		if len([]rune(in.reason)) > maxReason {
			return nil, fmt.Errorf("slack: deny reason of %d characters", len([]rune(in.reason)))
		}
	default:
		return nil, errIgnored
	}
	if !approvalIDPattern.MatchString(in.approvalID) {
		return nil, fmt.Errorf("slack: interaction payload: approval %q is not an approval ID", in.approvalID)
	}
	if !channelIDPattern.MatchString(in.channel) || !tsPattern.MatchString(in.messageTS) {
		return nil, fmt.Errorf("slack: interaction payload: no message (channel %q, ts %q)", in.channel, in.messageTS)
	}
	return in, nil
}

// work runs interactions after they were acknowledged: Slack wants an
// answer within three seconds, and deciding may take longer.
type work struct {
	mu     sync.Mutex
	wg     sync.WaitGroup
	closed bool
	sem    chan struct{}
}

// Bounds on the work of interactions.
const (
	maxInFlight        = 32
	interactionTimeout = 30 * time.Second
)

// Why an interaction was not taken; Slack is told to try later.
var (
	errBusy   = errors.New("slack: too many interactions in flight")
	errClosed = errors.New("slack: shutting down")
)

// accept parses an acknowledged payload and handles it in the background.
func (n *Notifier) accept(d Voter, data []byte, via string) error {
	in, err := parseInteraction(data)
	if errors.Is(err, errIgnored) {
		return nil
	}
	if err != nil {
		n.log.Warn("unreadable interaction refused", "via", via, "err", err)
		return err
	}
	n.work.mu.Lock()
	defer n.work.mu.Unlock()
	if n.work.closed {
		return errClosed
	}
	select {
	case n.work.sem <- struct{}{}:
	default:
		n.log.Warn("interaction dropped: too many in flight", "via", via, "user", in.user, "approval_id", in.approvalID)
		return errBusy
	}
	n.work.wg.Go(func() {
		defer func() { <-n.work.sem }()
		ctx, cancel := context.WithTimeout(context.Background(), interactionTimeout)
		defer cancel()
		n.handle(ctx, d, in)
	})
	return nil
}

// Close waits for the interactions being handled and refuses new ones.
// Notify and Update keep working: the broker still updates messages as it
// shuts down.
func (n *Notifier) Close() error {
	n.work.mu.Lock()
	n.work.closed = true
	n.work.mu.Unlock()
	n.work.wg.Wait()
	return nil
}

// handle carries out one interaction.
func (n *Notifier) handle(ctx context.Context, d Voter, in *interaction) {
	log := n.log.With("approval_id", in.approvalID, "user", in.user, "action", in.kind)
	a, err := d.Approval(ctx, in.approvalID)
	if err != nil {
		if errors.Is(err, broker.ErrNotFound) {
			log.Warn("interaction for an unknown approval")
			n.tell(ctx, in, fmt.Sprintf("This Airlock does not know approval %s. Another Airlock may have posted it.", in.approvalID))
			return
		}
		n.failed(ctx, log, in, "reading the approval failed", err)
		return
	}
	if a.Status != broker.StatusPending {
		n.tell(ctx, in, n.tooLate(a.Status, a.DecidedBy))
		return
	}
	verdict := broker.Deny
	if in.kind == actionApprove || in.kind == actionGrant || in.kind == callbackGrant {
		verdict = broker.Approve
	}
	who, refusal, err := n.authorize(ctx, a, in.user)
	if err != nil {
		n.failed(ctx, log, in, "checking the approver failed", err)
		return
	}
	if refusal != "" {
		log.Info("interaction refused", "why", refusal)
		n.tell(ctx, in, refusal+" (ref "+a.ID+")")
		return
	}
	_, realm := n.identity(in.user)
	vote := broker.Vote{Approver: who, Realm: realm, Channel: "slack", Verdict: verdict, Reason: in.reason, Grant: in.grant, Authorized: true}
	switch in.kind {
	case actionDeny, actionGrant:
		// Before a dialog opens, a vote the broker would refuse is told
		// so; Vote checks again when the dialog is submitted.
		probe := vote
		if in.kind == actionGrant {
			choices := a.GrantChoices()
			if len(choices) == 0 {
				n.tell(ctx, in, "The policy does not allow an \"always allow\" for this call (ref "+a.ID+").")
				return
			}
			probe.Grant = &broker.GrantRequest{Scope: choices[0].Scope}
		}
		if ve, ok := errors.AsType[*broker.VoteError](a.CheckVote(probe, time.Now())); ok {
			log.Info("interaction refused", "code", ve.Code, "why", ve.Msg)
			n.tell(ctx, in, n.refusalText(ve, a))
			return
		}
		if in.kind == actionDeny {
			n.openDialog(ctx, log, in, "deny", denyDialog(a, dialogMetadata(a, in)))
		} else {
			n.openDialog(ctx, log, in, "always allow", grantDialog(a, dialogMetadata(a, in)))
		}
		return
	}
	now, err := d.Vote(ctx, a.ID, vote)
	if err == nil {
		log.Info("decision taken in slack", "approver", who, "verdict", verdict)
		return
	}
	ve, ok := errors.AsType[*broker.VoteError](err)
	if !ok {
		n.failed(ctx, log, in, "recording the decision failed", err)
		return
	}
	log.Info("vote refused", "code", ve.Code, "why", ve.Msg)
	if now == nil {
		now = a
	}
	n.tell(ctx, in, n.refusalText(ve, now))
}

// refusalText tells the person who clicked why their vote did not
// (entirely) count, in Slack's words.
func (n *Notifier) refusalText(ve *broker.VoteError, a *broker.Approval) string {
	switch ve.Code {
	case broker.VoteAlreadyDecided:
		return n.tooLate(ve.Status, ve.By)
	case broker.VoteExpired:
		return "Too late: the time for a decision on this call ran out; it will not run."
	case broker.VoteNotFound:
		return fmt.Sprintf("This Airlock does not know approval %s. Another Airlock may have posted it.", a.ID)
	case broker.VoteNotApprover:
		return refuseNotApprover + " (ref " + a.ID + ")"
	case broker.VoteSelfApproval:
		return refuseRequester + " (ref " + a.ID + ")"
	case broker.VoteAlreadyVoted:
		return fmt.Sprintf("You have already approved this call; it needs %d different approvers.", a.Quorum())
	case broker.VoteGrantNotStored:
		return "You approved the call and it goes ahead, but the \"always allow\" could not be stored, so calls like it will still ask (ref " + ve.Ref + ")."
	}
	if errors.Is(ve, broker.ErrNoReason) {
		return "Nothing was decided: say why you deny the call, the agent reads the reason. Click Deny again (ref " + a.ID + ")."
	}
	// not_grantable, bad_vote
	return "Nothing was decided: " + escape(ve.Msg) + " (ref " + a.ID + ")."
}

func dialogMetadata(a *broker.Approval, in *interaction) string {
	meta, _ := json.Marshal(dialogState{Approval: a.ID, Channel: in.channel, TS: in.messageTS})
	return string(meta)
}

// openDialog opens the deny or "always allow" dialog. Its trigger is good
// for three seconds after the click, which is why clicks are handled at
// once.
func (n *Notifier) openDialog(ctx context.Context, log *slog.Logger, in *interaction, what string, view slackgo.ModalViewRequest) {
	err := n.call(ctx, "views.open", func(ctx context.Context) error {
		_, err := n.api.OpenViewContext(ctx, in.triggerID, view)
		return err
	})
	if err != nil {
		log.Warn("opening a dialog failed", "dialog", what, "err", err)
		n.tell(ctx, in, "Slack did not open the dialog in time. Click again.")
	}
}

// tooLate answers a click on an approval that was decided meanwhile.
func (n *Notifier) tooLate(s broker.Status, by string) string {
	if by == "" || by == broker.Airlock {
		return fmt.Sprintf("Too late: this call is already %s.", s)
	}
	return fmt.Sprintf("Too late: this call was already %s by %s.", s, n.person(by))
}

// failed tells the person that Airlock could not do what they asked, with
// a reference to the log line that says why.
func (n *Notifier) failed(ctx context.Context, log *slog.Logger, in *interaction, what string, err error) {
	ref := broker.NewRef()
	log.Error(what, "ref", ref, "err", err)
	n.tell(ctx, in, fmt.Sprintf("Airlock could not take your decision; nothing was decided. Try again, or use the web UI (ref %s).", ref))
}

// tell sends a message only the person who clicked sees. text is mrkdwn
// that Airlock composed, with anything from elsewhere escaped.
func (n *Notifier) tell(ctx context.Context, in *interaction, text string) {
	err := n.call(ctx, "chat.postEphemeral", func(ctx context.Context) error {
		_, err := n.api.PostEphemeralContext(ctx, in.channel, in.user, slackgo.MsgOptionText(text, false))
		return err
	})
	if err != nil {
		n.log.Warn("telling an approver failed", "approval_id", in.approvalID, "user", in.user, "err", err)
	}
}
