package policy

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// ParseDuration reads a duration the way every Airlock flag, config key
// and policy field writes one: a Go duration ("90s", "1h30m"), optionally
// led by whole days ("90d", "1d12h"), since grants and retention are
// naturally counted in days and time.ParseDuration has no such unit. A day
// is 24 hours. Negative durations are refused: none of Airlock's
// durations can be negative.
func ParseDuration(s string) (time.Duration, error) {
	if s == "" {
		return 0, errors.New(`empty duration; write one such as "50s", "10m", "24h" or "7d"`)
	}
	days, rest, hasDays := cutDays(s)
	var d time.Duration
	if hasDays {
		n, err := strconv.ParseInt(days, 10, 64)
		if err != nil || n > math.MaxInt64/int64(24*time.Hour) {
			return 0, fmt.Errorf("duration %q: %q is not a whole number of days that fits", s, days+"d")
		}
		d = time.Duration(n) * 24 * time.Hour
		if rest == "" {
			return d, nil
		}
		if rest[0] == '-' || rest[0] == '+' {
			return 0, fmt.Errorf("duration %q: a sign may only lead the whole duration", s)
		}
	}
	v, err := time.ParseDuration(rest)
	if err != nil {
		if strings.Contains(rest, "d") {
			return 0, fmt.Errorf("duration %q: days (d) are whole and come first, as in \"1d12h\"", s)
		}
		return 0, fmt.Errorf("duration %q: not a duration such as \"50s\", \"10m\", \"24h\" or \"7d\"", s)
	}
	if v < 0 || (hasDays && v > math.MaxInt64-d) {
		if v < 0 {
			return 0, fmt.Errorf("duration %q is negative", s)
		}
		return 0, fmt.Errorf("duration %q is too long", s)
	}
	return d + v, nil
}

// cutDays splits a leading "<digits>d" off s.
func cutDays(s string) (days, rest string, ok bool) {
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	if i == 0 || i >= len(s) || s[i] != 'd' {
		return "", s, false
	}
	return s[:i], s[i+1:], true
}
