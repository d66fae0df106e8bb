package saml

import (
	"context"
	"time"
)

// LogoutDelivery is one back-channel LogoutRequest owed to one SP for one
// ended session: what to sign and where to send it, and how the attempts
// went. The LogoutRequest itself is made afresh for each attempt.
type LogoutDelivery struct {
	ID string
	// EntityID is the SP's; Location its SOAP SingleLogoutService.
	EntityID string
	Location string
	// SID is the ended nhsid session; NameID and SessionIndex are what
	// the SP was asserted in it.
	SID          string
	NameID       string
	SessionIndex string
	// Reason is why the session ended (for the audit trail).
	Reason   string
	Attempts int
	// CreatedAt is when the session ended.
	CreatedAt     time.Time
	NextAttemptAt time.Time
	// DeliveredAt is set once the SP answered 2xx.
	DeliveredAt time.Time
	// FailedAt is set when the last allowed attempt failed.
	FailedAt  time.Time
	LastError string
}

// LogoutQueue is the durable queue of back-channel LogoutRequests (table
// saml_logout_deliveries). store/memory and store/postgres implement it;
// replicas share it.
type LogoutQueue interface {
	// EnqueueSAMLLogout stores d (ID set by the caller); it fails with
	// store.ErrExists for a duplicate ID.
	EnqueueSAMLLogout(ctx context.Context, d LogoutDelivery) error
	// ClaimSAMLLogouts returns up to limit deliveries that are neither
	// delivered nor failed and whose NextAttemptAt is at or before now,
	// earliest first, and moves their NextAttemptAt to leaseUntil, so
	// that another replica skips them while this one tries (and tries
	// again after the lease if this one stops). Postgres uses FOR UPDATE
	// SKIP LOCKED.
	ClaimSAMLLogouts(ctx context.Context, now, leaseUntil time.Time, limit int) ([]LogoutDelivery, error)
	// UpdateSAMLLogout applies fn inside one transaction; it fails with
	// store.ErrNotFound.
	UpdateSAMLLogout(ctx context.Context, id string, fn func(*LogoutDelivery) error) (LogoutDelivery, error)
}
