package slack

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Limits on HTTP interactivity requests.
const (
	// signatureWindow is how far a request's timestamp may be from now:
	// Slack's own rule, which bounds how long a captured request could be
	// replayed and how long Airlock must remember what it saw.
	signatureWindow = 5 * time.Minute
	// maxRequestBody is far above Slack's payloads, which carry the
	// message the button was on.
	maxRequestBody = 1 << 20
	// replaysKept bounds the signatures remembered; past it, requests are
	// refused until old ones age out, rather than forgetting any early.
	replaysKept = 100000
	// replaysPrune is when forgetting the signatures too old to replay
	// starts.
	replaysPrune = 1024
)

// InteractivityHandler serves Slack's interactivity Request URL
// (/slack/interactivity). It accepts a request only if Slack signed it
// with the signing secret within the last five minutes and it was not seen
// before; it answers at once and handles the click after.
func (n *Notifier) InteractivityHandler(d Voter) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxRequestBody))
		if err != nil {
			http.Error(w, "request body too large or unreadable", http.StatusRequestEntityTooLarge)
			return
		}
		if err := n.verify(r.Header, body, time.Now()); err != nil {
			// Forged, stale or replayed: nothing in it is believed.
			n.log.Warn("slack request refused", "remote", r.RemoteAddr, "why", err.Error())
			http.Error(w, "invalid request signature", http.StatusUnauthorized)
			return
		}
		form, err := url.ParseQuery(string(body))
		if err != nil || form.Get("payload") == "" {
			http.Error(w, "expected a form with a payload", http.StatusBadRequest)
			return
		}
		switch err := n.accept(d, []byte(form.Get("payload")), "http"); {
		case errors.Is(err, errBusy), errors.Is(err, errClosed):
			http.Error(w, "busy; try again", http.StatusServiceUnavailable)
		case err != nil:
			http.Error(w, "unreadable interaction", http.StatusBadRequest)
		default:
			// An empty 200 is the acknowledgement; for a dialog
			// submission it also closes the dialog.
			w.WriteHeader(http.StatusOK)
		}
	})
}

// Why a request is refused; logged, not shown.
var (
	errNoSecret     = errors.New("no signing secret configured")
	errNoSignature  = errors.New("missing signature headers")
	errBadTimestamp = errors.New("timestamp is not a number")
	errStale        = errors.New("timestamp outside the five-minute window")
	errBadSignature = errors.New("signature does not match")
	errReplay       = errors.New("request seen before")
	errReplayFull   = errors.New("too many recent requests to remember")
)

// verify checks Slack's v0 request signature: an HMAC-SHA256, keyed with
// the signing secret, of "v0:<timestamp>:<body>".
func (n *Notifier) verify(h http.Header, body []byte, now time.Time) error {
	if n.secret == "" {
		return errNoSecret
	}
	sig, ts := h.Get("X-Slack-Signature"), h.Get("X-Slack-Request-Timestamp")
	if sig == "" || ts == "" {
		return errNoSignature
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return errBadTimestamp
	}
	// Compared in seconds: a duration would overflow for absurd values.
	if d := now.Unix() - sec; d > int64(signatureWindow/time.Second) || d < -int64(signatureWindow/time.Second) {
		return errStale
	}
	hexSig, ok := strings.CutPrefix(sig, "v0=")
	if !ok {
		return errBadSignature
	}
	got, err := hex.DecodeString(hexSig)
	if err != nil {
		return errBadSignature
	}
	mac := hmac.New(sha256.New, []byte(n.secret))
	mac.Write([]byte("v0:" + ts + ":"))
	mac.Write(body)
	if !hmac.Equal(got, mac.Sum(nil)) {
		return errBadSignature
	}
	// By the decoded MAC, not its text: hex in another case is the same
	// signature.
	return n.replays.first(string(got), time.Unix(sec, 0), now)
}

// replays remembers the signatures of recent requests: a valid request
// captured on its way (by a proxy's log, say) must not count twice.
type replays struct {
	mu   sync.Mutex
	seen map[string]time.Time // decoded signature → request timestamp
}

func (r *replays) first(sig string, at, now time.Time) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.seen == nil {
		r.seen = map[string]time.Time{}
	}
	if _, ok := r.seen[sig]; ok {
		return errReplay
	}
	if len(r.seen) >= replaysPrune {
		for s, t := range r.seen {
			if now.Sub(t) > signatureWindow {
				delete(r.seen, s) // too old to pass the timestamp check anyway
			}
		}
		if len(r.seen) >= replaysKept {
			return errReplayFull
		}
	}
	r.seen[sig] = at
	return nil
}
