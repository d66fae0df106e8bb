package audit

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"fmt"
	"log/slog"
	"time"
)

// Sealer chains committed records in batches and signs the chain head
// periodically. Several replicas may each run one: the store lets only one
// seal at a time.
type Sealer struct {
	Store Store
	// Key signs checkpoints; nil means no checkpoints.
	Key ed25519.PrivateKey
	// Interval between sealing rounds (default 1 s).
	Interval time.Duration
	// CheckpointEvery is how often the head is signed when it moved
	// (default 1 min).
	CheckpointEvery time.Duration
	// BatchSize caps one round (default 1000); a round that stopped at
	// its cap is followed at once by another.
	BatchSize int
	// ObserveLag, if set, is told after every round of Run how far the
	// chain is behind: the age of the first unsealed record, 0 when all
	// are sealed (the server exports it as nhsid_audit_seal_lag_seconds).
	ObserveLag func(time.Duration)
	Log        *slog.Logger
	Now        func() time.Time

	lastCheckpoint time.Time
}

func (s *Sealer) defaults() {
	if s.Interval <= 0 {
		s.Interval = time.Second
	}
	if s.CheckpointEvery <= 0 {
		s.CheckpointEvery = time.Minute
	}
	if s.BatchSize <= 0 {
		s.BatchSize = 1000
	}
	if s.Now == nil {
		s.Now = time.Now
	}
	if s.Log == nil {
		s.Log = slog.Default()
	}
}

// SealAll seals until nothing committed is left unsealed, and returns how
// many records it sealed.
func (s *Sealer) SealAll(ctx context.Context) (int, error) {
	s.defaults()
	total := 0
	for {
		b, err := s.Store.SealAudit(ctx, s.BatchSize)
		if err != nil {
			return total, fmt.Errorf("seal audit: %w", err)
		}
		total += b.Count
		// Not Count < BatchSize: a round ends at a transaction boundary
		// below its cap, and the group commits put whole groups of
		// requests' records in one transaction, so a busy chain would
		// seal one round a second and fall ever further behind.
		if !b.More || b.Count == 0 {
			return total, nil
		}
	}
}

// Flush seals until no committed record is left unsealed: it returns once
// every record committed before the call is sealed. A round can seal
// nothing while any transaction older than a record is still running
// (the watermark waits for it), so Flush retries every few milliseconds
// until ctx ends. It is for tests, shutdown and `nhsid audit verify --seal`;
// Run does not wait.
func (s *Sealer) Flush(ctx context.Context) (int, error) {
	s.defaults()
	total := 0
	for {
		n, err := s.SealAll(ctx)
		total += n
		if err != nil {
			return total, err
		}
		h, err := s.Store.AuditHead(ctx)
		if err != nil {
			return total, fmt.Errorf("seal audit: %w", err)
		}
		if h.Unsealed <= 0 {
			return total, nil
		}
		select {
		case <-ctx.Done():
			return total, fmt.Errorf("seal audit: %d records still unsealed: %w", h.Unsealed, ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// Checkpoint signs the current head and stores the checkpoint, unless the
// head is empty or already checkpointed. It returns the checkpoint (nil if
// none was made).
func (s *Sealer) Checkpoint(ctx context.Context) (*Checkpoint, error) {
	s.defaults()
	if s.Key == nil {
		return nil, nil
	}
	h, err := s.Store.AuditHead(ctx)
	if err != nil {
		return nil, fmt.Errorf("checkpoint: %w", err)
	}
	if h.Pos == 0 {
		return nil, nil
	}
	last, err := s.Store.AuditCheckpoints(ctx, h.Pos, 1)
	if err != nil {
		return nil, fmt.Errorf("checkpoint: %w", err)
	}
	if len(last) > 0 && last[0].Pos == h.Pos && bytes.Equal(last[0].Hash, h.Hash) {
		return nil, nil
	}
	c := SignCheckpoint(s.Key, h, s.Now())
	if err := s.Store.AddAuditCheckpoint(ctx, c); err != nil {
		return nil, fmt.Errorf("checkpoint: %w", err)
	}
	return &c, nil
}

// observeLag reports the chain's lag to ObserveLag, if set.
func (s *Sealer) observeLag(ctx context.Context) {
	if s.ObserveLag == nil {
		return
	}
	first, err := s.Store.FirstUnsealed(ctx)
	if err != nil {
		s.Log.Error("audit seal lag", "err", err.Error())
		return
	}
	var lag time.Duration
	if !first.IsZero() {
		lag = max(s.Now().Sub(first), 0)
	}
	s.ObserveLag(lag)
}

// Run seals every Interval and checkpoints every CheckpointEvery until ctx
// ends; on the way out it seals and checkpoints once more.
func (s *Sealer) Run(ctx context.Context) {
	s.defaults()
	t := time.NewTicker(s.Interval)
	defer t.Stop()
	round := func(ctx context.Context, final bool) {
		if _, err := s.SealAll(ctx); err != nil {
			s.Log.Error("audit seal", "err", err.Error())
			return
		}
		s.observeLag(ctx)
		if final || s.Now().Sub(s.lastCheckpoint) >= s.CheckpointEvery {
			if _, err := s.Checkpoint(ctx); err != nil {
				s.Log.Error("audit checkpoint", "err", err.Error())
				return
			}
			s.lastCheckpoint = s.Now()
		}
	}
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			round(fctx, true)
			cancel()
			return
		case <-t.C:
			round(ctx, false)
		}
	}
}
