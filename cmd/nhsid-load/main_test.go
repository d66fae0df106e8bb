package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

func run(t *testing.T, env map[string]string, args ...string) (string, error) {
	t.Helper()
	for k, v := range env {
		t.Setenv(k, v)
	}
	root := newRoot()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	err := root.ExecuteContext(context.Background())
	return out.String(), err
}

// TestRefusals: the load generator never targets anything but loopback,
// and refuses runs outside its bounds.
func TestRefusals(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  map[string]string
		args []string
		want string
	}{
		{"remote issuer", map[string]string{"NHSID_TOKEN": "x"}, []string{"setup", "--issuer", "https://id.example.nhs.uk", "--users", "1"}, "not a loopback"},
		{"remote admin", map[string]string{"NHSID_TOKEN": "x"}, []string{"setup", "--admin", "http://10.1.2.3:8081", "--users", "1"}, "not a loopback"},
		{"no token", map[string]string{"NHSID_TOKEN": ""}, []string{"setup", "--users", "1"}, "NHSID_TOKEN"},
		{"too many users", map[string]string{"NHSID_TOKEN": "x"}, []string{"setup", "--users", "1000000"}, "users must be"},
		{"no state", nil, []string{"run", "--state", "/nonexistent/state.json"}, "load state"},
		{"bad concurrency list", nil, []string{"limit", "--concurrency", "8,x"}, "bad number"},
		{"limit too long", nil, []string{"limit", "--op", "introspect", "--duration", "1h"}, "duration must be"},
		{"unknown limit op", nil, []string{"limit", "--op", "nope", "--duration", "10ms"}, "unknown operation"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := run(t, tc.env, tc.args...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tc.want)
			}
		})
	}
}

// TestLimitCommand runs the in-memory limit benchmark briefly.
func TestLimitCommand(t *testing.T) {
	out, err := run(t, nil, "limit", "--op", "introspect,client_credentials", "--duration", "100ms", "--concurrency", "2")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "introspect") || !strings.Contains(out, "client_credentials") {
		t.Fatalf("output:\n%s", out)
	}
}
