package apierror

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/nhsid/nhsid/store"
)

// TestWriteStatus: what Write answers and logs for each kind of error,
// with the client still there, gone, or out of nhsid's own deadline.
func TestWriteStatus(t *testing.T) {
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	expired, cancel2 := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel2()
	// nhsid's request deadline sits on top of the connection's context
	// (limitAndBound): a client that leaves cancels it from below.
	gone, cancel3 := context.WithTimeout(canceled, time.Minute)
	defer cancel3()
	for _, tc := range []struct {
		name   string
		ctx    context.Context
		err    error
		status int
		code   string
		level  string
	}{
		{"internal", context.Background(), errors.New("boom"), 500, "server_error", "ERROR"},
		{"unavailable", context.Background(), fmt.Errorf("read: %w", store.ErrUnavailable), 503, "temporarily_unavailable", "ERROR"},
		{"client gone", canceled, fmt.Errorf("send: %w", context.Canceled), StatusClientClosed, "client_closed_request", "INFO"},
		{"client gone under the deadline", gone, fmt.Errorf("send: %w", context.Canceled), StatusClientClosed, "client_closed_request", "INFO"},
		{"client gone, store unreachable", canceled, store.ErrUnavailable, StatusClientClosed, "client_closed_request", "INFO"},
		{"own deadline", expired, fmt.Errorf("send: %w", context.DeadlineExceeded), 500, "server_error", "ERROR"},
		{"api error, client gone", canceled, New(400, "invalid_request", "Bad.", nil), 400, "invalid_request", "INFO"},
	} {
		var logged bytes.Buffer
		log := slog.New(slog.NewTextHandler(&logged, nil))
		rec := httptest.NewRecorder()
		Write(rec, httptest.NewRequest("POST", "/x", nil).WithContext(tc.ctx), log, tc.err)
		var body map[string]string
		if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
			t.Fatalf("%s: body %q: %v", tc.name, rec.Body, err)
		}
		if rec.Code != tc.status || body["error"] != tc.code {
			t.Errorf("%s: %d %q, want %d %q", tc.name, rec.Code, body["error"], tc.status, tc.code)
		}
		if !strings.Contains(logged.String(), "level="+tc.level) {
			t.Errorf("%s: logged %q, want level %s", tc.name, logged.String(), tc.level)
		}
		if strings.Contains(body["message"], "boom") || strings.Contains(body["message"], "send") {
			t.Errorf("%s: the cause leaked: %q", tc.name, body["message"])
		}
	}
}

// TestFailureLevel: a failed request is an error to log unless its client
// has gone; nhsid's own deadline does not count as the client going.
func TestFailureLevel(t *testing.T) {
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	expired, cancel2 := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel2()
	for _, tc := range []struct {
		ctx  context.Context
		want slog.Level
	}{
		{context.Background(), slog.LevelError},
		{canceled, slog.LevelInfo},
		{expired, slog.LevelError},
	} {
		if got := FailureLevel(httptest.NewRequest("GET", "/", nil).WithContext(tc.ctx)); got != tc.want {
			t.Errorf("ctx err %v: %v, want %v", tc.ctx.Err(), got, tc.want)
		}
	}
}
