package config

import (
	"strings"
	"testing"
	"time"
)

func TestAuditRetention(t *testing.T) {
	tests := []struct {
		name string
		val  time.Duration
		ok   bool
	}{
		{"default keeps for ever", 0, true},
		{"seven years", 7 * 8766 * time.Hour, true},
		{"negative", -time.Hour, false},
		{"under a day", time.Hour, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := Defaults()
			c.Issuer = "http://localhost:8080"
			c.Audit.Retention = tc.val
			err := c.Validate(true)
			if tc.ok != (err == nil) || (err != nil && !strings.Contains(err.Error(), "audit.retention")) {
				t.Fatalf("retention %v: %v", tc.val, err)
			}
		})
	}
	if Defaults().Audit.Retention != 0 {
		t.Fatal("default retention is not 0")
	}
}
