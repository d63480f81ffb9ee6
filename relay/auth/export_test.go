package auth

import "time"

// SetNow sets the door's clock, for tests of expiry and of the rate limits.
func SetNow(d *Door, now func() time.Time) { d.now = now }
