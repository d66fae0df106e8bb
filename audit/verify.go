package audit

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"fmt"
)

// VerifyOptions select what Verify checks.
type VerifyOptions struct {
	// From and To bound the positions checked (inclusive); 0 means the
	// start and the head. A range starting after 1 trusts the stored hash
	// at From-1 as its anchor. After a retention purge (Retainer), the
	// range starts no earlier than the first remaining position, anchored
	// on the stored boundary hash.
	From, To int64
	// Checkpoints (typically read from an exported file) must each match
	// the recomputed chain at their position.
	Checkpoints []Checkpoint
	// PublicKey checks the checkpoints' signatures; required with
	// Checkpoints.
	PublicKey ed25519.PublicKey
	// PageSize is how many links are read at once (default 1000).
	PageSize int
}

// Break is the first broken link.
type Break struct {
	Pos    int64  `json:"pos"`
	Seq    int64  `json:"seq,omitempty"`
	Reason string `json:"reason"`
}

func (b *Break) Error() string {
	if b.Seq != 0 {
		return fmt.Sprintf("audit chain broken at position %d (record %d): %s", b.Pos, b.Seq, b.Reason)
	}
	return fmt.Sprintf("audit chain broken at position %d: %s", b.Pos, b.Reason)
}

// Report is what Verify found.
type Report struct {
	From, To    int64
	Checked     int64
	Checkpoints int
	Head        []byte
	// Broken is the first broken link, nil when the range verifies.
	Broken *Break
}

// Verify recomputes the chain over the selected range and compares every
// link with its stored hash, and every checkpoint in range with the
// recomputed hash at its position. It reports the first broken link in
// Report.Broken; the error is for failures to read the store.
func Verify(ctx context.Context, s Store, o VerifyOptions) (Report, error) {
	if o.PageSize <= 0 {
		o.PageSize = 1000
	}
	from := o.From
	var bound Boundary
	if r, ok := s.(Retainer); ok {
		b, err := r.AuditBoundary(ctx)
		if err != nil {
			return Report{}, fmt.Errorf("verify: %w", err)
		}
		bound = b
		if bound.Pos > 0 {
			// A boundary is only real if nothing at or below it remains.
			first, err := s.SealedAudit(ctx, 1, 1)
			if err != nil {
				return Report{}, fmt.Errorf("verify: %w", err)
			}
			if len(first) > 0 && first[0].Pos <= bound.Pos {
				return Report{From: first[0].Pos, Broken: &Break{Pos: first[0].Pos, Reason: fmt.Sprintf(
					"retention boundary is position %d but position %d is still stored", bound.Pos, first[0].Pos)}}, nil
			}
		}
	}
	if from <= bound.Pos {
		// Records up to the retention boundary were purged: start after it.
		from = bound.Pos + 1
	}
	if from < 1 {
		from = 1
	}
	head, err := s.AuditHead(ctx)
	if err != nil {
		return Report{}, fmt.Errorf("verify: %w", err)
	}
	to := o.To
	if to <= 0 || to > head.Pos {
		to = head.Pos
	}
	rep := Report{From: from, To: to}

	cps := map[int64][]Checkpoint{}
	for _, c := range o.Checkpoints {
		if o.PublicKey == nil {
			return rep, fmt.Errorf("verify: checkpoints given without a public key")
		}
		if err := VerifyCheckpoint(o.PublicKey, c); err != nil {
			rep.Broken = &Break{Pos: c.Pos, Reason: err.Error()}
			return rep, nil
		}
		if c.Pos > head.Pos && c.Pos >= from && (o.To <= 0 || c.Pos <= o.To) {
			rep.Broken = &Break{Pos: c.Pos, Reason: fmt.Sprintf("checkpoint at position %d is beyond the chain head %d (chain truncated)", c.Pos, head.Pos)}
			return rep, nil
		}
		cps[c.Pos] = append(cps[c.Pos], c)
	}

	prev := GenesisHash
	if from > 1 && from-1 == bound.Pos {
		// The first remaining link must hash from the archived boundary.
		prev = bound.Hash
	} else if from > 1 {
		anchor, err := s.SealedAudit(ctx, from-1, 1)
		if err != nil {
			return rep, fmt.Errorf("verify: %w", err)
		}
		if len(anchor) == 0 || anchor[0].Pos != from-1 {
			rep.Broken = &Break{Pos: from - 1, Reason: "anchor seal missing"}
			return rep, nil
		}
		prev = anchor[0].Hash
	}
	next := from
	for next <= to {
		links, err := s.SealedAudit(ctx, next, o.PageSize)
		if err != nil {
			return rep, fmt.Errorf("verify: %w", err)
		}
		if len(links) == 0 {
			rep.Broken = &Break{Pos: next, Reason: "seal missing"}
			return rep, nil
		}
		for _, l := range links {
			if next > to {
				break
			}
			if l.Pos != next { // a gap inside the range
				rep.Broken = &Break{Pos: next, Reason: fmt.Sprintf("seal missing (next is position %d)", l.Pos)}
				return rep, nil
			}
			if b := checkLink(&l, next, prev); b != nil {
				rep.Broken = b
				return rep, nil
			}
			for _, c := range cps[l.Pos] {
				rep.Checkpoints++
				if !bytes.Equal(c.Hash, l.Hash) {
					rep.Broken = &Break{Pos: l.Pos, Seq: l.Seq, Reason: fmt.Sprintf(
						"chain hash %s differs from signed checkpoint %s (signed %s): the chain was rewritten",
						short(l.Hash), short(c.Hash), c.Time.Format("2006-01-02T15:04:05Z"))}
					return rep, nil
				}
			}
			prev = l.Hash
			rep.Checked++
			next = l.Pos + 1
		}
	}
	rep.Head = prev
	return rep, nil
}

// checkLink checks one link: it sits at the expected position, its record
// is present and its hash is H(prev || record).
func checkLink(l *Sealed, want int64, prev []byte) *Break {
	if l.Pos != want {
		return &Break{Pos: want, Reason: fmt.Sprintf("seal missing (next is position %d)", l.Pos)}
	}
	if l.Event == nil {
		return &Break{Pos: l.Pos, Seq: l.Seq, Reason: "record missing"}
	}
	if l.Event.Seq != l.Seq {
		return &Break{Pos: l.Pos, Seq: l.Seq, Reason: fmt.Sprintf("seal names record %d, found record %d", l.Seq, l.Event.Seq)}
	}
	if got := NextHash(prev, l.Event); !bytes.Equal(got, l.Hash) {
		return &Break{Pos: l.Pos, Seq: l.Seq, Reason: fmt.Sprintf("hash mismatch: record hashes to %s, seal says %s", short(got), short(l.Hash))}
	}
	return nil
}

func short(b []byte) string {
	s := hex.EncodeToString(b)
	if len(s) > 16 {
		return s[:16]
	}
	return s
}
