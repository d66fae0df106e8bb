package storetest

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nhsid/nhsid/audit"
	"github.com/nhsid/nhsid/store"
)

// RunAuditTests runs the audit.Store suite; newStore must return an empty
// store and is called once per subtest (which run in parallel).
func RunAuditTests(t *testing.T, newStore func(t *testing.T) audit.Store) {
	tests := []struct {
		name string
		run  func(t *testing.T, s audit.Store)
	}{
		{"AuditAppendAndQuery", testAuditAppendAndQuery},
		{"AuditQueryPagination", testAuditPagination},
		{"AuditQueryPersonClientType", testAuditPersonClientType},
		{"AuditQueryPersonAsActor", testAuditPersonAsActor},
		{"AuditSealAndVerify", testAuditSealAndVerify},
		{"AuditSealLag", testAuditSealLag},
		{"AuditConcurrentAppendAndSeal", testAuditConcurrent},
		{"AuditCheckpoints", testAuditCheckpoints},
		{"AuditGroupedRecord", testAuditGrouped},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.run(t, newStore(t))
		})
	}
}

func auditLog(s audit.Store) *audit.Log {
	return audit.NewLog(s, audit.Options{Now: func() time.Time { return t0 }})
}

func testAuditAppendAndQuery(t *testing.T, s audit.Store) {
	ctx := audit.WithRequest(context.Background(), audit.RequestInfo{RequestID: "req-1", IP: "192.0.2.1", UserAgent: "UA/1"})
	l := auditLog(s)
	evs := []audit.Event{
		{Type: audit.SigninSuccess, Subject: "555000000001", SessionHash: audit.HashSession("sid-1"),
			Detail: map[string]any{"aal": 3, "credential": "cred-1", "roles": []string{"a", "b"}}},
		{Type: audit.TokenIssued, Subject: "555000000001", Client: "client-a", Org: "RX1", RoleID: "555000000101"},
		{Type: audit.SigninFailure, Outcome: audit.Failure, Subject: "555000000002", Time: t0.Add(time.Hour)},
		{Type: audit.AdminChange, Actor: "555000000001", Subject: "555000000003", Org: "RX2",
			Detail: map[string]any{"object": "person", "before": map[string]any{"name": "A"}, "after": map[string]any{"name": "B"}}},
	}
	for _, e := range evs {
		noErr(t, "record", l.Record(ctx, e))
	}
	all, err := s.QueryAudit(ctx, audit.Query{})
	noErr(t, "query all", err)
	if len(all.Events) != 4 || all.Next != 0 {
		t.Fatalf("query all: %d events, next %d", len(all.Events), all.Next)
	}
	for i := 1; i < len(all.Events); i++ {
		if all.Events[i].Seq <= all.Events[i-1].Seq {
			t.Fatalf("not in seq order: %+v", all.Events)
		}
	}
	first := all.Events[0]
	equal(t, "request info", []string{first.RequestID, first.IP, first.UserAgent}, []string{"req-1", "192.0.2.1", "UA/1"})
	equal(t, "time", first.Time, t0)
	equal(t, "outcome default", first.Outcome, audit.Success)
	equal(t, "detail", first.Detail, map[string]any{"aal": float64(3), "credential": "cred-1", "roles": []any{"a", "b"}})
	equal(t, "raw detail", string(first.RawDetail), `{"aal":3,"credential":"cred-1","roles":["a","b"]}`)

	tests := []struct {
		name string
		q    audit.Query
		want []audit.Type
	}{
		{"person as subject or actor", audit.Query{Person: "555000000001"}, []audit.Type{audit.SigninSuccess, audit.TokenIssued, audit.AdminChange}},
		{"org", audit.Query{Org: "RX2"}, []audit.Type{audit.AdminChange}},
		{"client", audit.Query{Client: "client-a"}, []audit.Type{audit.TokenIssued}},
		{"types", audit.Query{Types: []audit.Type{audit.SigninFailure, audit.SigninSuccess}}, []audit.Type{audit.SigninSuccess, audit.SigninFailure}},
		{"since", audit.Query{Since: t0.Add(time.Minute)}, []audit.Type{audit.SigninFailure}},
		{"until", audit.Query{Until: t0.Add(time.Minute)}, []audit.Type{audit.SigninSuccess, audit.TokenIssued, audit.AdminChange}},
		{"since inclusive", audit.Query{Since: t0.Add(time.Hour), Until: t0.Add(2 * time.Hour)}, []audit.Type{audit.SigninFailure}},
		{"no match", audit.Query{Person: "555000000009"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := s.QueryAudit(ctx, tt.q)
			noErr(t, "query", err)
			var got []audit.Type
			for _, e := range p.Events {
				got = append(got, e.Type)
			}
			equal(t, "types", got, tt.want)
		})
	}
}

// testAuditPersonAsActor: a person's events are those where they are the
// subject, the actor or both, each once, with or without a client; the
// PostgreSQL store indexes an actor only where it is not the subject.
func testAuditPersonAsActor(t *testing.T, s audit.Store) {
	ctx := context.Background()
	l := auditLog(s)
	const p, q, r = "555000000011", "555000000012", "555000000013"
	evs := []audit.Event{
		{Type: audit.SigninSuccess, Actor: p, Subject: p},
		{Type: audit.AdminChange, Actor: p, Subject: q},
		{Type: audit.AdminChange, Actor: q, Subject: p},
		{Type: audit.TokenIssued, Subject: p, Client: "client-a"},
		{Type: audit.TokenIssued, Actor: p, Subject: p, Client: "client-a"},
		{Type: audit.TokenIssued, Actor: p, Subject: r, Client: "client-a"},
		{Type: audit.SigninSuccess, Actor: r, Subject: r},
	}
	for _, e := range evs {
		noErr(t, "record", l.Record(ctx, e))
	}
	for _, tt := range []struct {
		q    audit.Query
		want []int // indexes into evs
	}{
		{audit.Query{Person: p}, []int{0, 1, 2, 3, 4, 5}},
		{audit.Query{Person: q}, []int{1, 2}},
		{audit.Query{Person: r}, []int{5, 6}},
		{audit.Query{Person: p, Client: "client-a"}, []int{3, 4, 5}},
		{audit.Query{Person: r, Client: "client-a"}, []int{5}},
		{audit.Query{Person: p, Types: []audit.Type{audit.AdminChange}}, []int{1, 2}},
	} {
		page, err := s.QueryAudit(ctx, tt.q)
		noErr(t, "query", err)
		var got []string
		for _, e := range page.Events {
			got = append(got, fmt.Sprintf("%s %s>%s %s", e.Type, e.Actor, e.Subject, e.Client))
		}
		var want []string
		for _, i := range tt.want {
			e := evs[i]
			want = append(want, fmt.Sprintf("%s %s>%s %s", e.Type, e.Actor, e.Subject, e.Client))
		}
		equal(t, fmt.Sprintf("query %+v", tt.q), got, want)
	}
}

func testAuditPagination(t *testing.T, s audit.Store) {
	ctx := context.Background()
	l := auditLog(s)
	for i := range 25 {
		subj := "555000000001"
		if i%2 == 1 {
			subj = "555000000002"
		}
		noErr(t, "record", l.Record(ctx, audit.Event{Type: audit.Userinfo, Subject: subj, Detail: map[string]any{"i": i}}))
	}
	var got []int64
	q := audit.Query{Person: "555000000001", Limit: 5}
	for pages := 0; ; pages++ {
		if pages > 10 {
			t.Fatal("pagination does not end")
		}
		p, err := s.QueryAudit(ctx, q)
		noErr(t, "query", err)
		for _, e := range p.Events {
			got = append(got, e.Seq)
		}
		if p.Next == 0 {
			break
		}
		if len(p.Events) != 5 {
			t.Fatalf("short page %d with a next cursor", len(p.Events))
		}
		q.Cursor = p.Next
	}
	if len(got) != 13 {
		t.Fatalf("got %d events, want 13: %v", len(got), got)
	}
	for i := 1; i < len(got); i++ {
		if got[i] <= got[i-1] {
			t.Fatalf("not increasing: %v", got)
		}
	}
}

// testAuditPersonClientType covers the query the first-use check makes
// (person, client and one type), which a store may answer on its own path.
func testAuditPersonClientType(t *testing.T, s audit.Store) {
	ctx := context.Background()
	l := auditLog(s)
	const p, q = "555000000001", "555000000002"
	evs := []audit.Event{
		{Type: audit.ClientFirstUse, Subject: p, Actor: p, Client: "client-a"}, // subject and actor: once
		{Type: audit.TokenIssued, Subject: p, Actor: p, Client: "client-a"},    // another type
		{Type: audit.ClientFirstUse, Subject: q, Actor: p, Client: "client-a"}, // actor only
		{Type: audit.ClientFirstUse, Subject: p, Actor: p, Client: "client-b"}, // another client
		{Type: audit.ClientFirstUse, Subject: p, Client: "client-a"},           // subject only
		{Type: audit.ClientFirstUse, Subject: q, Actor: q, Client: "client-a"}, // another person
	}
	for _, e := range evs {
		noErr(t, "record", l.Record(ctx, e))
	}
	all, err := s.QueryAudit(ctx, audit.Query{Limit: 100})
	noErr(t, "query all", err)
	if len(all.Events) != len(evs) {
		t.Fatalf("%d events recorded, want %d", len(all.Events), len(evs))
	}
	seq := func(i int) int64 { return all.Events[i].Seq }
	query := audit.Query{Person: p, Client: "client-a", Types: []audit.Type{audit.ClientFirstUse}}
	page, err := s.QueryAudit(ctx, query)
	noErr(t, "query", err)
	var got []int64
	for _, e := range page.Events {
		got = append(got, e.Seq)
	}
	equal(t, "matching events", got, []int64{seq(0), seq(2), seq(4)})
	equal(t, "first event", page.Events[0].Actor+" "+page.Events[0].Subject+" "+page.Events[0].Client, p+" "+p+" client-a")

	query.Limit = 2
	page, err = s.QueryAudit(ctx, query)
	noErr(t, "first page", err)
	if len(page.Events) != 2 || page.Next != seq(2) {
		t.Fatalf("first page: %d events, next %d; want 2 and %d", len(page.Events), page.Next, seq(2))
	}
	query.Cursor = page.Next
	page, err = s.QueryAudit(ctx, query)
	noErr(t, "second page", err)
	if len(page.Events) != 1 || page.Events[0].Seq != seq(4) || page.Next != 0 {
		t.Fatalf("second page: %+v, want only seq %d", page, seq(4))
	}
	page, err = s.QueryAudit(ctx, audit.Query{Person: "555000000009", Client: "client-a", Types: []audit.Type{audit.ClientFirstUse}})
	noErr(t, "no match", err)
	if len(page.Events) != 0 {
		t.Fatalf("no match: %d events", len(page.Events))
	}
}

// sealRound runs SealAudit until it seals something: on PostgreSQL a round
// seals nothing while an older transaction anywhere in the cluster (another
// test's) is still running.
func sealRound(t *testing.T, s audit.Store, limit int) audit.SealBatch {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, err := s.SealAudit(context.Background(), limit)
		noErr(t, "seal", err)
		if b.Count > 0 || time.Now().After(deadline) {
			return b
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// sealedSeqs returns every sealed seq in chain order, failing on a gap or a
// duplicate.
func sealedSeqs(t *testing.T, s audit.Store) []int64 {
	t.Helper()
	var out []int64
	seen := map[int64]bool{}
	from := int64(1)
	for {
		links, err := s.SealedAudit(context.Background(), from, 500)
		noErr(t, "sealed", err)
		for _, l := range links {
			if l.Pos != from {
				t.Fatalf("seal position %d, want %d", l.Pos, from)
			}
			if seen[l.Seq] {
				t.Fatalf("record %d sealed twice", l.Seq)
			}
			if l.Event == nil || l.Event.Seq != l.Seq {
				t.Fatalf("seal %d: record %d missing", l.Pos, l.Seq)
			}
			seen[l.Seq] = true
			out = append(out, l.Seq)
			from++
		}
		if len(links) < 500 {
			return out
		}
	}
}

func testAuditSealAndVerify(t *testing.T, s audit.Store) {
	ctx := context.Background()
	l := auditLog(s)
	h, err := s.AuditHead(ctx)
	noErr(t, "empty head", err)
	equal(t, "empty head", h.Pos, int64(0))
	equal(t, "genesis", h.Hash, audit.GenesisHash)
	b, err := s.SealAudit(ctx, 10)
	noErr(t, "seal empty", err)
	equal(t, "seal empty", b.Count, 0)

	first, err := s.FirstUnsealed(ctx)
	noErr(t, "first unsealed of none", err)
	equal(t, "first unsealed of none", first.IsZero(), true)
	for i := range 7 {
		noErr(t, "record", l.Record(ctx, audit.Event{Type: audit.TokenIssued, Subject: "555000000001", Detail: map[string]any{"n": i}}))
	}
	first, err = s.FirstUnsealed(ctx)
	noErr(t, "first unsealed", err)
	equal(t, "first unsealed", first.UTC(), t0.UTC())
	// Seal until all seven are in. Batches hold at most the limit, follow
	// on from each other and keep insertion order. Their sizes are not
	// fixed: the watermark is the oldest transaction running anywhere in
	// the cluster, so another test's open transaction can hold part of a
	// batch back for a moment.
	var sealed int64
	var lastHead []byte
	for rounds := 0; sealed < 7; rounds++ {
		b = sealRound(t, s, 5)
		if b.Count == 0 || rounds > 7 {
			t.Fatalf("sealing stalled after %d of 7 records", sealed)
		}
		if b.Count > 5 || b.FirstPos != sealed+1 || b.LastPos != sealed+int64(b.Count) {
			t.Fatalf("batch %+v after %d sealed: want at most 5, starting at %d", b, sealed, sealed+1)
		}
		if b.Count == 5 && b.LastPos < 7 && !b.More {
			t.Fatalf("batch %+v stopped at its limit with records left, but says no more", b)
		}
		if b.LastPos == 7 && b.More {
			t.Fatalf("batch %+v sealed the last record, but says more", b)
		}
		sealed, lastHead = b.LastPos, b.Head
	}
	b, err = s.SealAudit(ctx, 5)
	noErr(t, "seal", err)
	equal(t, "nothing left", b.Count, 0)
	equal(t, "nothing more", b.More, false)
	first, err = s.FirstUnsealed(ctx)
	noErr(t, "first unsealed when all are sealed", err)
	equal(t, "first unsealed when all are sealed", first.IsZero(), true)

	h, err = s.AuditHead(ctx)
	noErr(t, "head", err)
	equal(t, "head pos", h.Pos, int64(7))
	equal(t, "head hash", h.Hash, lastHead)
	equal(t, "unsealed", h.Unsealed, int64(0))

	// Recompute the chain independently of Verify.
	links, err := s.SealedAudit(ctx, 1, 100)
	noErr(t, "sealed", err)
	prev := audit.GenesisHash
	for _, ln := range links {
		prev = audit.NextHash(prev, ln.Event)
		equal(t, fmt.Sprintf("hash at %d", ln.Pos), ln.Hash, prev)
	}
	equal(t, "head is last hash", h.Hash, prev)

	for _, tt := range []struct {
		name     string
		from, to int64
		checked  int64
	}{{"whole", 0, 0, 7}, {"range", 3, 5, 3}, {"to past head", 6, 100, 2}} {
		t.Run(tt.name, func(t *testing.T) {
			rep, err := audit.Verify(ctx, s, audit.VerifyOptions{From: tt.from, To: tt.to, PageSize: 2})
			noErr(t, "verify", err)
			if rep.Broken != nil {
				t.Fatalf("verify: %v", rep.Broken)
			}
			equal(t, "checked", rep.Checked, tt.checked)
		})
	}
}

func testAuditConcurrent(t *testing.T, s audit.Store) {
	ctx := context.Background()
	l := auditLog(s)
	const writers, each = 8, 40
	stop := make(chan struct{})
	var sealers sync.WaitGroup
	for range 2 { // two "replicas"
		sealers.Add(1)
		go func() {
			defer sealers.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := s.SealAudit(ctx, 7); err != nil {
					t.Errorf("seal: %v", err)
					return
				}
			}
		}()
	}
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				var err error
				e := audit.Event{Type: audit.TokenIssued, Subject: fmt.Sprintf("5550000%05d", w), Detail: map[string]any{"i": i}}
				if i%3 == 0 {
					err = l.RecordGrouped(ctx, e)
				} else {
					err = l.Record(ctx, e)
				}
				if err != nil {
					t.Errorf("record: %v", err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	sealers.Wait()
	sl := &audit.Sealer{Store: s, BatchSize: 50}
	_, err := sl.Flush(ctx)
	noErr(t, "seal all", err)

	seqs := sealedSeqs(t, s)
	all, err := s.QueryAudit(ctx, audit.Query{Limit: 1000})
	noErr(t, "query", err)
	if len(all.Events) != writers*each || len(seqs) != writers*each {
		t.Fatalf("%d events, %d sealed, want %d", len(all.Events), len(seqs), writers*each)
	}
	rep, err := audit.Verify(ctx, s, audit.VerifyOptions{})
	noErr(t, "verify", err)
	if rep.Broken != nil || rep.Checked != writers*each {
		t.Fatalf("verify: checked %d, broken %v", rep.Checked, rep.Broken)
	}
}

// testAuditSealLag: the sealer's Run tells ObserveLag after each round how
// old the first unsealed record is.
func testAuditSealLag(t *testing.T, s audit.Store) {
	ctx := context.Background()
	noErr(t, "record", auditLog(s).Record(ctx, audit.Event{Type: audit.TokenIssued, Subject: "555000000001"}))
	first, err := s.FirstUnsealed(ctx)
	noErr(t, "first unsealed", err)
	equal(t, "first unsealed", first.UTC(), t0.UTC())

	lags := make(chan time.Duration, 1)
	rctx, cancel := context.WithCancel(ctx)
	sl := &audit.Sealer{Store: s, Interval: 5 * time.Millisecond, Now: func() time.Time { return t0.Add(time.Minute) },
		ObserveLag: func(d time.Duration) {
			select {
			case lags <- d:
			default:
			}
			cancel()
		}}
	sl.Run(rctx)
	// The round seals the record, unless a transaction elsewhere in the
	// cluster holds the watermark back for a moment.
	if lag := <-lags; lag != 0 && lag != time.Minute {
		t.Fatalf("lag after a round = %v, want 0 (or 1m while held back)", lag)
	}
	_, err = sl.Flush(ctx)
	noErr(t, "flush", err)
	first, err = s.FirstUnsealed(ctx)
	noErr(t, "first unsealed after flush", err)
	equal(t, "first unsealed after flush", first.IsZero(), true)
}

func testAuditCheckpoints(t *testing.T, s audit.Store) {
	ctx := context.Background()
	_, key, err := ed25519.GenerateKey(nil)
	noErr(t, "key", err)
	pub := key.Public().(ed25519.PublicKey)
	l := auditLog(s)
	sl := &audit.Sealer{Store: s, Key: key, Now: func() time.Time { return t0 }}

	cp, err := sl.Checkpoint(ctx)
	noErr(t, "checkpoint of empty chain", err)
	if cp != nil {
		t.Fatalf("checkpoint of an empty chain: %+v", cp)
	}
	for range 3 {
		noErr(t, "record", l.Record(ctx, audit.Event{Type: audit.KeyRotated}))
	}
	_, err = sl.Flush(ctx)
	noErr(t, "seal", err)
	cp, err = sl.Checkpoint(ctx)
	noErr(t, "checkpoint", err)
	if cp == nil || cp.Pos != 3 {
		t.Fatalf("checkpoint: %+v", cp)
	}
	noErr(t, "signature", audit.VerifyCheckpoint(pub, *cp))
	again, err := sl.Checkpoint(ctx)
	noErr(t, "checkpoint again", err)
	if again != nil {
		t.Fatalf("head unchanged but checkpointed again: %+v", again)
	}
	isErr(t, "duplicate position", s.AddAuditCheckpoint(ctx, *cp), store.ErrExists)

	noErr(t, "record", l.Record(ctx, audit.Event{Type: audit.KeyRotated}))
	_, err = sl.Flush(ctx)
	noErr(t, "seal", err)
	cp2, err := sl.Checkpoint(ctx)
	noErr(t, "checkpoint 2", err)
	cps, err := s.AuditCheckpoints(ctx, 0, 10)
	noErr(t, "list", err)
	equal(t, "checkpoints", cps, []audit.Checkpoint{*cp, *cp2})
	later, err := s.AuditCheckpoints(ctx, 4, 10)
	noErr(t, "list from", err)
	equal(t, "checkpoints from 4", later, []audit.Checkpoint{*cp2})

	rep, err := audit.Verify(ctx, s, audit.VerifyOptions{Checkpoints: cps, PublicKey: pub})
	noErr(t, "verify", err)
	if rep.Broken != nil || rep.Checkpoints != 2 {
		t.Fatalf("verify with checkpoints: %+v", rep)
	}
}

func testAuditGrouped(t *testing.T, s audit.Store) {
	ctx := context.Background()
	l := audit.NewLog(s, audit.Options{GroupWindow: 20 * time.Millisecond})
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := l.RecordGrouped(ctx, audit.Event{Type: audit.Introspection, Client: fmt.Sprintf("c-%02d", i)}); err != nil {
				t.Errorf("grouped: %v", err)
			}
		}()
	}
	wg.Wait()
	p, err := s.QueryAudit(ctx, audit.Query{Types: []audit.Type{audit.Introspection}})
	noErr(t, "query", err)
	if len(p.Events) != 20 {
		t.Fatalf("%d introspection events, want 20", len(p.Events))
	}
	// Refused events never reach the store.
	err = l.RecordGrouped(ctx, audit.Event{Type: "bogus"})
	isErr(t, "bogus type", err, audit.ErrInvalidEvent)
}
