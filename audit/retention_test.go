package audit_test

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nhsid/nhsid/audit"
	"github.com/nhsid/nhsid/store/memory"
)

// TestArchiveMemory: the archive is the contiguous prefix of sealed
// records older than the cut (never the head), it reads back and chains,
// and a store without retention support refuses to purge.
func TestArchiveMemory(t *testing.T) {
	ctx := context.Background()
	base := t0.Truncate(time.Second)
	s := memory.New()
	l := audit.NewLog(s, audit.Options{})
	for i := range 6 {
		at := base.Add(time.Duration(i) * time.Hour)
		if err := l.Record(ctx, audit.Event{Type: audit.Userinfo, Subject: "555000000001", Time: at, Detail: map[string]any{"i": i}}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := (&audit.Sealer{Store: s}).SealAll(ctx); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		before time.Time
		want   int64
	}{
		{"none old enough", base, 0},
		{"three", base.Add(150 * time.Minute), 3},
		{"never the head", base.Add(100 * time.Hour), 5},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			tr, err := audit.Archive(ctx, s, tc.before, &buf)
			if err != nil || tr.Count != tc.want || tr.Boundary.Pos != tc.want {
				t.Fatalf("archive: %+v %v", tr, err)
			}
			links, rtr, err := audit.ReadArchive(bytes.NewReader(buf.Bytes()))
			if err != nil || int64(len(links)) != tc.want || !bytes.Equal(rtr.Boundary.Hash, tr.Boundary.Hash) {
				t.Fatalf("read archive: %d %+v %v", len(links), rtr, err)
			}
			if tc.want > 0 && links[0].Event.Detail["i"] != float64(0) {
				t.Fatalf("detail: %v", links[0].Event.Detail)
			}
			_, err = audit.Purge(ctx, s, bytes.NewReader(buf.Bytes()), tc.before, "operator:test", nil)
			if err == nil || !strings.Contains(err.Error(), "PostgreSQL") {
				t.Fatalf("purge on memory: %v", err)
			}
		})
	}
}
