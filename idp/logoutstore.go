package idp

import (
	"context"
	"time"
)

// LogoutDelivery is one queued back-channel logout: a logout_token for one
// client, POSTed to its backchannel_logout_uri until the RP accepts it or
// the retry window closes. Token is the most recently minted logout_token
// (re-minted with the same jti when it would expire before an attempt).
type LogoutDelivery struct {
	ID       string
	ClientID string
	URI      string
	SID      string
	Subject  string
	JTI      string
	Token    string
	Attempts int
	// CreatedAt starts the retry window.
	CreatedAt     time.Time
	NextAttemptAt time.Time
	// DeliveredAt is set once the RP answered 200 or 204.
	DeliveredAt time.Time
	// FailedAt is set when the retry window closed without delivery.
	FailedAt  time.Time
	LastError string
}

// LogoutDeliveryStore is the durable back-channel logout queue (table
// logout_deliveries). store/memory and store/postgres implement it.
type LogoutDeliveryStore interface {
	// EnqueueLogoutDelivery stores d (ID set by the caller); it fails with
	// store.ErrExists for a duplicate ID.
	EnqueueLogoutDelivery(ctx context.Context, d LogoutDelivery) error
	// ClaimLogoutDeliveries returns up to limit deliveries that are neither
	// delivered nor failed and whose NextAttemptAt is at or before now,
	// earliest first, and moves their NextAttemptAt to leaseUntil, so that
	// another replica skips them while this one tries (and retries after
	// the lease if this one dies). Postgres uses FOR UPDATE SKIP LOCKED.
	ClaimLogoutDeliveries(ctx context.Context, now, leaseUntil time.Time, limit int) ([]LogoutDelivery, error)
	// UpdateLogoutDelivery applies fn inside one transaction; it fails
	// with store.ErrNotFound.
	UpdateLogoutDelivery(ctx context.Context, id string, fn func(*LogoutDelivery) error) (LogoutDelivery, error)
	// GetLogoutDelivery fails with store.ErrNotFound.
	GetLogoutDelivery(ctx context.Context, id string) (LogoutDelivery, error)
}
