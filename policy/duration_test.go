package policy_test

import (
	"strings"
	"testing"
	"time"

	"github.com/airlock-mcp/airlock/policy"
)

func TestParseDuration(t *testing.T) {
	const day = 24 * time.Hour
	for in, want := range map[string]time.Duration{
		"50s":    50 * time.Second,
		"1h30m":  90 * time.Minute,
		"90d":    90 * day,
		"1d":     day,
		"1d12h":  day + 12*time.Hour,
		"0d":     0,
		"2d1.5h": 2*day + 90*time.Minute,
		"0":      0,
	} {
		got, err := policy.ParseDuration(in)
		if err != nil || got != want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for in, want := range map[string]string{
		"":                     "empty duration",
		"50":                   `not a duration such as "50s"`,
		"1h1d":                 "days (d) are whole and come first",
		"1.5d":                 "days (d) are whole and come first",
		"-1h":                  "is negative",
		"1d-1h":                "a sign may only lead",
		"99999999999999999d":   "whole number of days that fits",
		"106751d23h47m16.855s": "too long",
		"week":                 "not a duration",
	} {
		_, err := policy.ParseDuration(in)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseDuration(%q) error = %v; want one saying %q", in, err, want)
		}
	}
}

// A policy's max_ttl may be written in days like every other duration.
func TestDurationJSONDays(t *testing.T) {
	var d policy.Duration
	if err := d.UnmarshalJSON([]byte(`"90d"`)); err != nil || time.Duration(d) != 90*24*time.Hour {
		t.Fatalf("UnmarshalJSON(\"90d\") = %v, %v", time.Duration(d), err)
	}
}
