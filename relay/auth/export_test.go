package auth

import "time"

// SetNow sets the door's clock, for tests of expiry and of the rate limits.
func SetNow(d *Door, now func() time.Time) { d.now = now }

// ForgetVerified empties the cache of verified tokens, so that a benchmark
// measures signature checks.
func ForgetVerified(d *Door) {
	d.oauth.mu.Lock()
	clear(d.oauth.verified)
	d.oauth.mu.Unlock()
}
