// Package apierror is the one error type of nhsid's own JSON APIs (the
// WebAuthn ceremony API, the admin API): a status, a stable code, a message
// safe to show to the caller, and the wrapped cause for the log. Write renders
// it in one place. OAuth/OIDC errors are fosite's and never go through here.
package apierror

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"

	"github.com/nhsid/nhsid/store"
)

// Error is an API error.
type Error struct {
	Status  int
	Code    string // e.g. "invalid_flow"
	Message string // safe for the client
	Err     error  // for the log only
}

func (e *Error) Error() string {
	if e.Err != nil {
		return e.Code + ": " + e.Message + ": " + e.Err.Error()
	}
	return e.Code + ": " + e.Message
}

func (e *Error) Unwrap() error { return e.Err }

// New returns an Error.
func New(status int, code, message string, cause error) *Error {
	return &Error{Status: status, Code: code, Message: message, Err: cause}
}

// StatusClientClosed is the status nhsid logs and counts for a request
// whose client closed the connection before the answer was ready (nginx's
// 499): nobody received an answer, so it is not a server error.
const StatusClientClosed = 499

// ClientGone reports whether r's client closed its connection (or HTTP/2
// stream) before the answer. The request deadline nhsid sets itself
// (database.request_timeout) ends a context with DeadlineExceeded, not
// Canceled, and stays a server error.
func ClientGone(r *http.Request) bool {
	return errors.Is(r.Context().Err(), context.Canceled)
}

// FailureLevel is the level at which to log a failed request: INFO when
// its client had already gone (most likely the cause of the failure, and
// nobody waits for the answer), ERROR otherwise.
func FailureLevel(r *http.Request) slog.Level {
	if ClientGone(r) {
		return slog.LevelInfo
	}
	return slog.LevelError
}

// Write renders err as {"error","message"} JSON. Errors that are not *Error
// become 499 when the client has gone (ClientGone), 503 when the store is
// unavailable, otherwise 500 with a generic message; the cause is logged,
// never sent.
func Write(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	var e *Error
	if !errors.As(err, &e) {
		switch {
		case ClientGone(r):
			e = New(StatusClientClosed, "client_closed_request", "The client closed the request.", err)
		case errors.Is(err, store.ErrUnavailable):
			e = New(http.StatusServiceUnavailable, "temporarily_unavailable", "The service is temporarily unavailable. Try again shortly.", err)
		default:
			e = New(http.StatusInternalServerError, "server_error", "Something went wrong on our side.", err)
		}
	}
	if log != nil {
		level := slog.LevelInfo
		if e.Status >= 500 {
			level = slog.LevelError
		}
		attrs := []any{"status", e.Status, "code", e.Code}
		if e.Err != nil {
			attrs = append(attrs, "err", e.Err.Error())
		}
		log.Log(r.Context(), level, "request failed", attrs...)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(e.Status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": e.Code, "message": e.Message})
}
