// Package store holds what every storage adapter shares: the errors that
// adapters translate driver failures into. The interfaces themselves are
// declared by the packages that use them (policy, authn, idp); the adapters
// live in store/memory (embedded, for --dev and unit tests) and store/postgres
// (pgx/v5, production), and store/storetest checks both against one suite.
//
// This package imports nothing from nhsid, so any package may import it.
package store

import (
	"context"
	"errors"
)

var (
	// ErrNotFound means the record does not exist (or is no longer usable,
	// where a method says so).
	ErrNotFound = errors.New("not found")
	// ErrExists means a record with the same unique key already exists.
	ErrExists = errors.New("already exists")
	// ErrConflict means a concurrent change won, or a state transition was
	// not allowed (for example consuming an invite twice).
	ErrConflict = errors.New("conflict")
	// ErrUnavailable means the backing database cannot be reached. HTTP
	// handlers map it to 503 so that an outage is never reported as bad
	// credentials.
	ErrUnavailable = errors.New("store unavailable")
)

// WritePipeliner is a store that can queue writes needing no answer and
// send them together: one round trip and one commit, all or nothing
// (store/postgres).
type WritePipeliner interface {
	// BeginPipeline returns a context in which the store's writes that need
	// no answer are queued; anything else in it fails.
	BeginPipeline(ctx context.Context) (context.Context, error)
	// SendPipeline sends the writes queued in ctx.
	SendPipeline(ctx context.Context) error
}

// BeginWrites returns a context in which s's writes are queued in a write
// pipeline, and the function that sends them; when s is not a
// WritePipeliner the writes happen at once and send does nothing.
func BeginWrites(ctx context.Context, s any) (context.Context, func(context.Context) error, error) {
	wp, ok := s.(WritePipeliner)
	if !ok {
		return ctx, func(context.Context) error { return nil }, nil
	}
	pctx, err := wp.BeginPipeline(ctx)
	if err != nil {
		return ctx, nil, err
	}
	return pctx, wp.SendPipeline, nil
}

// SignInReadAheader is a store that can read what a sign-in's finish
// needs (the flow, and the person, credentials, failed sign-ins and risk
// profile of the person the assertion names) in one round trip, and answer
// the finish's reads from it (store/postgres).
type SignInReadAheader interface {
	// WithSignInReadAhead returns a context in which those reads are read
	// ahead.
	WithSignInReadAhead(ctx context.Context, flowID, personUID string) context.Context
}

// WithSignInReadAhead returns ctx with s's read-ahead of a sign-in's
// reads, or ctx when s is not a SignInReadAheader.
func WithSignInReadAhead(ctx context.Context, s any, flowID, personUID string) context.Context {
	if ra, ok := s.(SignInReadAheader); ok {
		return ra.WithSignInReadAhead(ctx, flowID, personUID)
	}
	return ctx
}

// CodeReadAheader is a store that can read an authorization code's rows
// (the code, its PKCE request and its OpenID Connect request) in one
// look-up for a token request, and answer the request's later look-ups of
// them from it (store/postgres).
type CodeReadAheader interface {
	// WithCodeReadAhead returns a context in which the look-ups of code's
	// rows are read ahead. signature is the code's signature as the token
	// strategy computes it (fosite's key of the code and PKCE rows), or
	// empty; with it the read can start before fosite's first look-up.
	WithCodeReadAhead(ctx context.Context, code, signature string) context.Context
}

// WithCodeReadAhead returns ctx with s's read-ahead of code's rows, or ctx
// when s is not a CodeReadAheader.
func WithCodeReadAhead(ctx context.Context, s any, code, signature string) context.Context {
	if ra, ok := s.(CodeReadAheader); ok {
		return ra.WithCodeReadAhead(ctx, code, signature)
	}
	return ctx
}
