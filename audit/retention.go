package audit

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"
)

// Retention: records older than a cut are first written to an archive
// file (Archive), then deleted (Purge) by a separate database role. The
// store keeps the boundary (the last purged position and its hash), and
// Verify starts from the first remaining seal anchored on it: the first
// remaining link must hash from the boundary hash.

// Boundary is the end of the purged part of the chain: every link up to
// Pos is gone from the store, and Hash is the chain hash at Pos.
type Boundary struct {
	Pos  int64     `json:"pos"`
	Seq  int64     `json:"seq"`
	Hash []byte    `json:"hash"`
	Time time.Time `json:"time"` // when it was purged (store) or the archive's cut
}

// Retainer is implemented by stores that can purge (store/postgres). The
// memory store does not: retention needs PostgreSQL.
type Retainer interface {
	// AuditBoundary returns the current boundary (Pos 0 when nothing was
	// ever purged).
	AuditBoundary(ctx context.Context) (Boundary, error)
	// PurgeAudit deletes every link and record with position in
	// (current boundary, b.Pos], provided the stored hash at b.Pos is
	// b.Hash and b.Pos is below the chain head, records b as the new
	// boundary and appends e (the retention.deleted event), all in one
	// transaction. It returns how many records it deleted.
	PurgeAudit(ctx context.Context, b Boundary, e Event) (int64, error)
}

// ArchiveLink is one line of an archive file: a sealed link with its
// record, whose detail is kept only verbatim in RawDetail (the Event's
// detail field is left out), so the hash covers all of it.
type ArchiveLink struct {
	Pos       int64  `json:"pos"`
	Seq       int64  `json:"seq"`
	Hash      []byte `json:"hash"`
	Event     *Event `json:"event"`
	RawDetail string `json:"raw_detail,omitempty"`
}

// ArchiveTrailer is the last line of an archive file.
type ArchiveTrailer struct {
	// Anchor is the chain hash before the first archived link (the genesis
	// hash, or the boundary of an earlier purge).
	Anchor []byte `json:"anchor"`
	// Boundary is the last archived position and its hash.
	Boundary Boundary  `json:"boundary"`
	Before   time.Time `json:"before"`
	Count    int64     `json:"count"`
}

type archiveLine struct {
	Link    *ArchiveLink    `json:"link,omitempty"`
	Trailer *ArchiveTrailer `json:"trailer,omitempty"`
}

// Archive writes to w, as JSON Lines, every sealed link from the start of
// the stored chain whose record is older than before, stopping at the
// first that is not (so the archive is a contiguous prefix), then a
// trailer with the boundary. The chain head is never archived, so a purge
// always leaves at least one link. It returns the trailer (Count 0 when
// nothing is old enough).
func Archive(ctx context.Context, s Store, before time.Time, w io.Writer) (ArchiveTrailer, error) {
	tr := ArchiveTrailer{Anchor: GenesisHash, Before: before.UTC()}
	from := int64(1)
	if r, ok := s.(Retainer); ok {
		b, err := r.AuditBoundary(ctx)
		if err != nil {
			return tr, fmt.Errorf("archive: %w", err)
		}
		if b.Pos > 0 {
			from, tr.Anchor = b.Pos+1, b.Hash
		}
	}
	tr.Boundary = Boundary{Pos: from - 1, Hash: tr.Anchor, Time: before.UTC()}
	head, err := s.AuditHead(ctx)
	if err != nil {
		return tr, fmt.Errorf("archive: %w", err)
	}
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	prev := tr.Anchor
	for next := from; next < head.Pos; {
		links, err := s.SealedAudit(ctx, next, 1000)
		if err != nil {
			return tr, fmt.Errorf("archive: %w", err)
		}
		if len(links) == 0 {
			break
		}
		for _, l := range links {
			if l.Pos >= head.Pos || l.Event == nil || !l.Event.Time.Before(before) {
				next = head.Pos
				break
			}
			if b := checkLink(&l, next, prev); b != nil {
				return tr, fmt.Errorf("archive: %w", b)
			}
			// The detail is kept once, verbatim (what the hash covers).
			ev := *l.Event
			ev.Detail = nil
			al := ArchiveLink{Pos: l.Pos, Seq: l.Seq, Hash: l.Hash, Event: &ev, RawDetail: string(l.Event.RawDetail)}
			if err := enc.Encode(archiveLine{Link: &al}); err != nil {
				return tr, fmt.Errorf("archive: %w", err)
			}
			prev = l.Hash
			tr.Count++
			tr.Boundary = Boundary{Pos: l.Pos, Seq: l.Seq, Hash: l.Hash, Time: before.UTC()}
			next = l.Pos + 1
		}
	}
	if err := enc.Encode(archiveLine{Trailer: &tr}); err != nil {
		return tr, fmt.Errorf("archive: %w", err)
	}
	return tr, nil
}

// ReadArchive reads an archive file and checks that its links chain from
// its anchor to its boundary. It returns the links and the trailer.
func ReadArchive(r io.Reader) ([]ArchiveLink, ArchiveTrailer, error) {
	var links []ArchiveLink
	var tr *ArchiveTrailer
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 16<<20)
	for sc.Scan() {
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			continue
		}
		if tr != nil {
			return nil, ArchiveTrailer{}, errors.New("read archive: data after the trailer")
		}
		var l archiveLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			return nil, ArchiveTrailer{}, fmt.Errorf("read archive: %w", err)
		}
		switch {
		case l.Link != nil && l.Link.Event != nil:
			l.Link.Event.RawDetail, l.Link.Event.Detail = nil, nil
			if l.Link.RawDetail != "" {
				l.Link.Event.RawDetail = []byte(l.Link.RawDetail)
				_ = json.Unmarshal(l.Link.Event.RawDetail, &l.Link.Event.Detail)
			}
			links = append(links, *l.Link)
		case l.Trailer != nil:
			tr = l.Trailer
		default:
			return nil, ArchiveTrailer{}, errors.New("read archive: a line is neither a link nor the trailer")
		}
	}
	if err := sc.Err(); err != nil {
		return nil, ArchiveTrailer{}, fmt.Errorf("read archive: %w", err)
	}
	if tr == nil {
		return nil, ArchiveTrailer{}, errors.New("read archive: no trailer (truncated file)")
	}
	if int64(len(links)) != tr.Count {
		return nil, ArchiveTrailer{}, fmt.Errorf("read archive: %d links, trailer says %d", len(links), tr.Count)
	}
	prev, want := tr.Anchor, tr.Boundary.Pos-tr.Count+1
	for i := range links {
		l := Sealed{Pos: links[i].Pos, Seq: links[i].Seq, Hash: links[i].Hash, Event: links[i].Event}
		if b := checkLink(&l, want, prev); b != nil {
			return nil, ArchiveTrailer{}, fmt.Errorf("read archive: %w", b)
		}
		prev, want = l.Hash, want+1
	}
	if !bytes.Equal(prev, tr.Boundary.Hash) {
		return nil, ArchiveTrailer{}, errors.New("read archive: boundary hash does not match the archived links")
	}
	return links, *tr, nil
}

// Purge deletes the records archived in the file read from archive, after
// checking the file (ReadArchive), that its cut is before, and that every
// archived link is still in the store with the same hash. The deletion is
// recorded as a retention.deleted event, in the same transaction. It
// refuses (deleting nothing) when the store cannot purge, the archive is
// empty or does not match the store. now (nil: time.Now) stamps the event.
func Purge(ctx context.Context, s Store, archive io.Reader, before time.Time, actor string, now func() time.Time) (int64, error) {
	if now == nil {
		now = time.Now
	}
	r, ok := s.(Retainer)
	if !ok {
		return 0, errors.New("purge: this store does not support retention (use PostgreSQL)")
	}
	links, tr, err := ReadArchive(archive)
	if err != nil {
		return 0, fmt.Errorf("purge: %w", err)
	}
	if !tr.Before.Equal(before.UTC()) {
		return 0, fmt.Errorf("purge: the archive was cut at %s, not %s", tr.Before.Format(time.RFC3339Nano), before.UTC().Format(time.RFC3339Nano))
	}
	if tr.Count == 0 {
		return 0, errors.New("purge: the archive holds no records")
	}
	cur, err := r.AuditBoundary(ctx)
	if err != nil {
		return 0, fmt.Errorf("purge: %w", err)
	}
	if cur.Pos != tr.Boundary.Pos-tr.Count || !bytes.Equal(cur.Hash, tr.Anchor) && cur.Pos > 0 {
		return 0, fmt.Errorf("purge: the archive starts after position %d, the store's boundary is %d", tr.Boundary.Pos-tr.Count, cur.Pos)
	}
	for i := 0; i < len(links); {
		got, err := s.SealedAudit(ctx, links[i].Pos, 1000)
		if err != nil {
			return 0, fmt.Errorf("purge: %w", err)
		}
		if len(got) == 0 {
			return 0, fmt.Errorf("purge: archived position %d is not in the store", links[i].Pos)
		}
		for _, g := range got {
			if i == len(links) {
				break
			}
			l := links[i]
			if g.Pos != l.Pos || g.Seq != l.Seq || !bytes.Equal(g.Hash, l.Hash) || g.Event == nil {
				return 0, fmt.Errorf("purge: archived position %d does not match the store", l.Pos)
			}
			i++
		}
	}
	e := Event{Type: RetentionDeleted, Actor: actor,
		Detail: map[string]any{"before": tr.Before.Format(time.RFC3339Nano), "count": tr.Count,
			"first_pos": tr.Boundary.Pos - tr.Count + 1, "last_pos": tr.Boundary.Pos,
			"boundary_hash": fmt.Sprintf("%x", tr.Boundary.Hash)}}
	raw, err := e.normalise(ctx, now())
	if err != nil {
		return 0, fmt.Errorf("purge: %w", err)
	}
	e.RawDetail = raw
	n, err := r.PurgeAudit(ctx, tr.Boundary, e)
	if err != nil {
		return 0, fmt.Errorf("purge: %w", err)
	}
	return n, nil
}
