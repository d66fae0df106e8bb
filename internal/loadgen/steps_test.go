package loadgen

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestMedianSteps: the medians of runs keep each step's median numbers,
// and WriteSteps prints them.
func TestMedianSteps(t *testing.T) {
	runs := []*Summary{
		{Scenario: Login, Concurrency: 4, Steps: map[string]Stats{"authorize": {Count: 10, Errors: 0, Throughput: 5, P50ms: 1, P95ms: 2, P99ms: 3, MaxMs: 4}}},
		{Scenario: Login, Concurrency: 4, Steps: map[string]Stats{"authorize": {Count: 30, Errors: 2, Throughput: 15, P50ms: 3, P95ms: 6, P99ms: 9, MaxMs: 12}, "resume": {Count: 8, P50ms: 2}}},
		{Scenario: Login, Concurrency: 4, Steps: map[string]Stats{"authorize": {Count: 20, Errors: 1, Throughput: 10, P50ms: 2, P95ms: 4, P99ms: 6, MaxMs: 8}}},
	}
	m := Median(runs)
	if got, want := m.Steps["authorize"], (Stats{Count: 20, Errors: 1, Throughput: 10, P50ms: 2, P95ms: 4, P99ms: 6, MaxMs: 8}); got != want {
		t.Fatalf("authorize: %+v, want %+v", got, want)
	}
	if got := m.Steps["resume"]; got.Count != 8 || got.P50ms != 2 {
		t.Fatalf("resume, in one run only: %+v", got)
	}
	var b bytes.Buffer
	if err := WriteSteps(&b, []*Summary{m}); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	a, r := strings.Index(out, "authorize"), strings.Index(out, "resume")
	if a < 0 || r < a || !strings.Contains(out, "2.0") || !strings.Contains(out, "6.0") {
		t.Fatalf("steps table:\n%s", out)
	}
}

// TestDoRecordsSteps: do times each reply read in full under its step,
// and counts an error status as an error of the step.
func TestDoRecordsSteps(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/bad" {
			http.Error(w, `{"error":"invalid_request"}`, http.StatusBadRequest)
			return
		}
		_, _ = w.Write([]byte("ok"))
	}))
	defer srv.Close()
	times := newStepTimes()
	ctx := withStepTimes(context.Background(), times)
	for _, p := range []string{"/ok", "/ok", "/bad"} {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+p, nil)
		_, _, _ = do(srv.Client(), "get"+p, req)
	}
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/ok", nil) // no step times
	_, _, _ = do(srv.Client(), "untimed", req)
	if len(times.d["get/ok"]) != 2 || len(times.d["get/bad"]) != 1 || len(times.d) != 2 {
		t.Fatalf("times %v", times.d)
	}
	if times.errs["get/ok"] != 0 || times.errs["get/bad"] != 1 {
		t.Fatalf("errors %v", times.errs)
	}
}
