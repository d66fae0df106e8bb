package audit

import (
	"bufio"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"time"
)

// FollowOptions configure Follow.
type FollowOptions struct {
	// From is the first chain position to write (default 1).
	From int64
	// Interval is the wait between looks when every sealed record is
	// written (default 2 s).
	Interval time.Duration
	// Saved, when set, is called after each batch is written and flushed
	// with the position to start from next time (a state file), so that
	// a restart neither skips nor repeats a batch.
	Saved func(next int64) error
}

// FollowLine is one line of Follow's output: the record with its place
// in the hash chain. Purged is set, and the event fields are empty, for
// a position whose record retention has deleted.
type FollowLine struct {
	ChainPos  int64  `json:"chain_pos"`
	ChainHash string `json:"chain_hash"` // hex
	Purged    bool   `json:"purged,omitempty"`
	*Event
}

const followBatch = 1000

// Follow writes the sealed records from opts.From on to w as JSON Lines
// (FollowLine), in chain order, and then waits for more until ctx ends,
// when it returns the count written and nil. It is a feed for a SIEM
// through any log shipper. Only sealed records are written: the sealer
// chains records in commit order behind a watermark, so no record can
// appear later before one already written, which a feed by Seq could
// not promise. Delivery is at least once: after a crash between a
// write and Saved, the next run repeats that batch; a consumer drops
// lines whose chain_pos it has.
func Follow(ctx context.Context, s Store, w io.Writer, opts FollowOptions) (int, error) {
	if opts.From < 1 {
		opts.From = 1
	}
	if opts.Interval <= 0 {
		opts.Interval = 2 * time.Second
	}
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	enc.SetEscapeHTML(false)
	next, n := opts.From, 0
	for {
		batch, err := s.SealedAudit(ctx, next, followBatch)
		if err != nil {
			if ctx.Err() != nil {
				return n, nil
			}
			return n, fmt.Errorf("follow: %w", err)
		}
		for _, sl := range batch {
			line := FollowLine{ChainPos: sl.Pos, ChainHash: hex.EncodeToString(sl.Hash), Event: sl.Event}
			if sl.Event == nil {
				line.Purged = true
			}
			if err := enc.Encode(&line); err != nil {
				return n, fmt.Errorf("follow: %w", err)
			}
			next = sl.Pos + 1
			n++
		}
		if len(batch) > 0 {
			if err := bw.Flush(); err != nil {
				return n, fmt.Errorf("follow: %w", err)
			}
			if opts.Saved != nil {
				if err := opts.Saved(next); err != nil {
					return n, fmt.Errorf("follow: save position: %w", err)
				}
			}
		}
		if len(batch) == followBatch {
			continue
		}
		select {
		case <-ctx.Done():
			return n, nil
		case <-time.After(opts.Interval):
		}
	}
}
