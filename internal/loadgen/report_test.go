package loadgen

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"
)

func TestMedian(t *testing.T) {
	runs := []*Summary{
		{Scenario: Login, Stats: Stats{Throughput: 10, P99ms: 30}, ErrorKinds: map[string]int{"token: 500": 1}, WarmupSeconds: 1, WarmupErrors: 1},
		{Scenario: Login, Stats: Stats{Throughput: 30, P99ms: 10}, ErrorKinds: map[string]int{}, WarmupSeconds: 1, WarmupErrors: 2},
		{Scenario: Login, Stats: Stats{Throughput: 20, P99ms: 20}, ErrorKinds: map[string]int{"token: 500": 2}},
	}
	m := Median(runs)
	for _, tc := range []struct {
		name      string
		got, want float64
	}{
		{"throughput", m.Throughput, 20},
		{"p99", m.P99ms, 20},
		{"errors", float64(m.ErrorKinds["token: 500"]), 3},
		{"warm-up errors", float64(m.WarmupErrors), 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.got != tc.want {
				t.Fatalf("%s = %v, want %v", tc.name, tc.got, tc.want)
			}
		})
	}
	var out bytes.Buffer
	if err := WriteTable(&out, []*Summary{m}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "token: 500") {
		t.Fatalf("table lacks the error kinds:\n%s", out.String())
	}
	if !strings.Contains(out.String(), "after a 1s warm-up") {
		t.Fatalf("table does not say the runs had a warm-up:\n%s", out.String())
	}
}

func TestCPUSince(t *testing.T) {
	before := CPUTimes{Nhsid: 1, pg: map[int]float64{10: 5, 11: 7}}
	// Backend 11 exited, 12 is new.
	after := CPUTimes{Nhsid: 3, pg: map[int]float64{10: 6, 12: 2}}
	d := after.Since(before)
	if d.Nhsid != 2 || d.Postgres != 3 {
		t.Fatalf("since = %+v, want nhsid 2, postgres 3", d)
	}
}

// TestRunRejectsOptions: Run refuses bad options before any request, and
// a secret-client refresh needs a state file that has that client.
func TestRunRejectsOptions(t *testing.T) {
	st := &State{Issuer: "http://127.0.0.1:1"}
	for _, tc := range []struct {
		opts Options
		want string
	}{
		{Options{Scenario: "nope", Concurrency: 1, Duration: time.Second}, "unknown scenario"},
		{Options{Scenario: Login, Concurrency: 1, Duration: time.Second, Warmup: -time.Second}, "warm-up must be"},
		{Options{Scenario: Login, Concurrency: 1, Duration: time.Second, Warmup: MaxDuration + time.Second}, "warm-up must be"},
		{Options{Scenario: Refresh, Concurrency: 1, Duration: time.Second, RefreshAuth: "client_secret_post"}, "refresh auth must be"},
		{Options{Scenario: Refresh, Concurrency: 1, Duration: time.Second}, "run setup again"},
		{Options{Scenario: Mixed, Concurrency: 1, Duration: time.Second, RefreshAuth: AuthSecretBasic}, "run setup again"},
	} {
		_, err := Run(context.Background(), st, tc.opts)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Run(%+v) = %v, want an error with %q", tc.opts, err, tc.want)
		}
	}
}
