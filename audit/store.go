package audit

import (
	"context"
	"time"
)

// Store is the audit trail's storage. store/postgres and store/memory
// implement it; store/storetest.RunAuditTests checks both.
//
// Records are appended freely by concurrent writers; a sealer later chains
// the committed ones (SealAudit). Nothing in Store updates or deletes a
// record or a seal; only the optional Retainer (retention.go) deletes.
type Store interface {
	// AppendAudit stores events (whose RawDetail is set), assigning each a
	// new Seq, and returns them with Seq filled. It joins the transaction
	// carried by ctx when there is one, so an event can commit together
	// with the state change it describes.
	AppendAudit(ctx context.Context, events []Event) ([]Event, error)
	// QueryAudit returns matching events in Seq order, after q.Cursor.
	QueryAudit(ctx context.Context, q Query) (Page, error)
	// SealAudit chains up to limit committed, unsealed records onto the
	// chain head, in one batch, under a lock that at most one sealer (of
	// any replica) holds. It returns what it sealed (Count 0 when none was
	// ready, or when another sealer holds the lock).
	SealAudit(ctx context.Context, limit int) (SealBatch, error)
	// AuditHead returns the last sealed position and hash (Pos 0 and
	// GenesisHash on an empty chain).
	AuditHead(ctx context.Context) (Head, error)
	// FirstUnsealed returns the time recorded on the first committed
	// record the chain has not reached (in the order the sealer takes
	// them), or the zero time when every committed record is sealed. It
	// is cheap enough to ask after every sealing round.
	FirstUnsealed(ctx context.Context) (time.Time, error)
	// SealedAudit returns up to limit seals with Pos >= from, in Pos order,
	// each with its record (nil when the record is missing).
	SealedAudit(ctx context.Context, from int64, limit int) ([]Sealed, error)
	// AddAuditCheckpoint stores a signed checkpoint.
	AddAuditCheckpoint(ctx context.Context, c Checkpoint) error
	// AuditCheckpoints returns checkpoints with Pos >= from, in Pos order.
	AuditCheckpoints(ctx context.Context, from int64, limit int) ([]Checkpoint, error)
}

// Query filters QueryAudit. Empty fields match everything; Since is
// inclusive, Until exclusive.
type Query struct {
	Person string // Subject or Actor
	Org    string
	Client string
	Types  []Type
	Since  time.Time
	Until  time.Time
	// Cursor: only events with Seq > Cursor.
	Cursor int64
	// Limit: at most this many (default 100, at most 1000).
	Limit int
}

// Normalised returns q with its limit defaulted and capped.
func (q Query) Normalised() Query {
	if q.Limit <= 0 {
		q.Limit = 100
	}
	if q.Limit > 1000 {
		q.Limit = 1000
	}
	return q
}

// Matches reports whether e passes q's filters (not the cursor or limit).
// Memory stores use it; it defines the semantics the SQL must match.
func (q Query) Matches(e *Event) bool {
	if q.Person != "" && e.Subject != q.Person && e.Actor != q.Person {
		return false
	}
	if q.Org != "" && e.Org != q.Org {
		return false
	}
	if q.Client != "" && e.Client != q.Client {
		return false
	}
	if len(q.Types) > 0 {
		ok := false
		for _, t := range q.Types {
			ok = ok || t == e.Type
		}
		if !ok {
			return false
		}
	}
	if !q.Since.IsZero() && e.Time.Before(q.Since) {
		return false
	}
	if !q.Until.IsZero() && !e.Time.Before(q.Until) {
		return false
	}
	return true
}

// Page is one page of QueryAudit. Next is the cursor for the following
// page, 0 when there is none.
type Page struct {
	Events []Event
	Next   int64
}

// SealBatch describes one sealing round.
type SealBatch struct {
	Count    int
	FirstPos int64
	LastPos  int64
	Head     []byte
	// More says the round stopped at its limit with committed records
	// still unsealed. A round can seal fewer than its limit and still
	// have stopped there: it never splits a transaction's records.
	More bool
}

// Head is the end of the sealed chain.
type Head struct {
	Pos  int64
	Seq  int64
	Hash []byte
	// Unsealed is how many committed records are not sealed yet (for
	// reports; best effort).
	Unsealed int64
}

// Sealed is one link of the chain: the record at Pos, and its stored hash.
type Sealed struct {
	Pos   int64
	Seq   int64
	Hash  []byte
	Event *Event // nil if the record was deleted
}
