package slacktest

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Sign returns the headers Slack sends with body at time at: the request
// timestamp and the v0 signature made with secret.
func Sign(secret string, at time.Time, body []byte) http.Header {
	ts := strconv.FormatInt(at.Unix(), 10)
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte("v0:" + ts + ":"))
	mac.Write(body)
	h := http.Header{}
	h.Set("X-Slack-Request-Timestamp", ts)
	h.Set("X-Slack-Signature", "v0="+hex.EncodeToString(mac.Sum(nil)))
	return h
}

// InteractionBody is the form Slack posts to an interactivity Request URL.
func InteractionBody(payload []byte) []byte {
	return []byte(url.Values{"payload": {string(payload)}}.Encode())
}

// InteractionRequest is payload posted to target as Slack would at time
// at, signed with secret.
func InteractionRequest(target, secret string, at time.Time, payload []byte) *http.Request {
	body := InteractionBody(payload)
	r, _ := http.NewRequest(http.MethodPost, target, strings.NewReader(string(body)))
	r.Header = Sign(secret, at, body)
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.Header.Set("User-Agent", "Slackbot 1.0 (+https://api.slack.com/robots)")
	return r
}
