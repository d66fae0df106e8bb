package postgres

import (
	"time"

	"github.com/jackc/pgx/v5/pgtype"

	"github.com/nhsid/nhsid/authn"
	"github.com/nhsid/nhsid/idp"
	"github.com/nhsid/nhsid/policy"
)

var (
	_ policy.Store    = (*Store)(nil)
	_ authn.Store     = (*Store)(nil)
	_ idp.ClientStore = (*Store)(nil)
	_ idp.KeyStore    = (*Store)(nil)
)

// Conventions for the core tables (people.go, authn.go, clients.go,
// keys.go): a zero time.Time is stored as NULL and read back as zero; times
// come back in UTC; nil and empty slices and maps read back as nil; the key
// of a record cannot be changed by an Update* closure.

// nullTime encodes t for a nullable timestamptz column.
func nullTime(t time.Time) pgtype.Timestamptz {
	if t.IsZero() {
		return pgtype.Timestamptz{}
	}
	return pgtype.Timestamptz{Time: t.UTC(), Valid: true}
}

// timeDest scans a nullable timestamptz into a time.Time (NULL -> zero).
type timeDest struct{ t *time.Time }

func (d *timeDest) ScanTimestamptz(v pgtype.Timestamptz) error {
	if !v.Valid {
		*d.t = time.Time{}
		return nil
	}
	*d.t = v.Time.UTC()
	return nil
}

// scanTime returns a scan destination for a nullable timestamptz.
func scanTime(t *time.Time) *timeDest { return &timeDest{t: t} }

// limitArg turns a page size into a LIMIT argument; <= 0 means no limit.
func limitArg(limit int) any {
	if limit <= 0 {
		return nil
	}
	return limit
}

// noEmpty turns an empty slice into nil, as read from a NOT NULL array
// column.
func noEmpty[T any](s []T) []T {
	if len(s) == 0 {
		return nil
	}
	return s
}

// notNil turns nil into an empty slice, for NOT NULL array columns.
func notNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
