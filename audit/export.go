package audit

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
)

// ExportJSONL streams every event matching q (from q.Cursor on, ignoring
// q.Limit) to w as JSON Lines, one page at a time, and returns how many it
// wrote.
func ExportJSONL(ctx context.Context, s Store, q Query, w io.Writer) (int, error) {
	q.Limit = 1000
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	n := 0
	for {
		p, err := s.QueryAudit(ctx, q)
		if err != nil {
			return n, fmt.Errorf("export: %w", err)
		}
		for i := range p.Events {
			if err := enc.Encode(&p.Events[i]); err != nil {
				return n, fmt.Errorf("export: %w", err)
			}
			n++
		}
		if p.Next == 0 {
			return n, nil
		}
		q.Cursor = p.Next
	}
}

// ExportCheckpoints writes every stored checkpoint to w as JSON Lines.
func ExportCheckpoints(ctx context.Context, s Store, w io.Writer) (int, error) {
	var from int64
	n := 0
	for {
		cps, err := s.AuditCheckpoints(ctx, from, 1000)
		if err != nil {
			return n, fmt.Errorf("export checkpoints: %w", err)
		}
		if err := WriteCheckpoints(w, cps); err != nil {
			return n, err
		}
		n += len(cps)
		if len(cps) < 1000 {
			return n, nil
		}
		from = cps[len(cps)-1].Pos + 1
	}
}
