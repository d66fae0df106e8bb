// Package store holds what every storage adapter shares: the errors that
// adapters translate driver failures into. The interfaces themselves are
// declared by the packages that use them (policy, authn, idp); the adapters
// live in store/memory (embedded, for --dev and unit tests) and store/postgres
// (pgx/v5, production), and store/storetest checks both against one suite.
//
// This package imports nothing from nhsid, so any package may import it.
package store

import "errors"

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
