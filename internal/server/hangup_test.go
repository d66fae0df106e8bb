package server

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// TestHangUpIsNotServerError: a request whose client closed the
// connection before the answer is counted and logged as 499, not as a
// server error, even when the handler then answers 500 (as fosite's error
// writer does for a cancelled store call); a 500 to a client that is
// still there stays a 5xx.
func TestHangUpIsNotServerError(t *testing.T) {
	reg := prometheus.NewRegistry()
	reqs, lat := newMetrics(reg)
	// Written by the server's handler goroutines before they signal done.
	var logged bytes.Buffer
	m := &instrument{log: slog.New(slog.NewJSONHandler(&logged, nil)), requests: reqs, latency: lat, listener: "public"}
	started := make(chan struct{})
	mux := http.NewServeMux()
	mux.HandleFunc("GET /wait", func(w http.ResponseWriter, r *http.Request) {
		close(started)
		<-r.Context().Done()
		w.WriteHeader(http.StatusInternalServerError)
	})
	mux.HandleFunc("GET /fail", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusInternalServerError)
	})
	h := m.wrap(mux)
	done := make(chan struct{}, 2)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(w, r)
		done <- struct{}{}
	}))
	defer srv.Close()

	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/wait", nil)
	go func() {
		<-started
		cancel() // the client hangs up while the request waits
	}()
	if resp, err := srv.Client().Do(req); err == nil {
		resp.Body.Close()
		t.Fatal("the hung-up request got an answer")
	}
	<-done
	resp, err := srv.Client().Get(srv.URL + "/fail")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	<-done

	for _, c := range []struct {
		route, class string
		want         float64
	}{
		{"GET /wait", "4xx", 1}, {"GET /wait", "5xx", 0},
		{"GET /fail", "5xx", 1}, {"GET /fail", "4xx", 0},
	} {
		if got := requestCount(t, reg, c.route, c.class); got != c.want {
			t.Errorf("%s %s: %v, want %v", c.route, c.class, got, c.want)
		}
	}
	if log := logged.String(); !strings.Contains(log, `"path":"/wait","status":499`) || !strings.Contains(log, `"path":"/fail","status":500`) {
		t.Errorf("log:\n%s", log)
	}
}

// requestCount reads nhsid_http_requests_total for route and class.
func requestCount(t *testing.T, reg *prometheus.Registry, route, class string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "nhsid_http_requests_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["route"] == route && labels["code"] == class {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}
