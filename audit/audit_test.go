package audit_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nhsid/nhsid/audit"
)

var t0 = time.Date(2026, 3, 2, 9, 30, 15, 123456789, time.UTC)

func TestCanonicalIsStableAndCoversEveryField(t *testing.T) {
	base := audit.Event{Seq: 7, Time: t0, Type: audit.SigninSuccess, Outcome: audit.Success, Actor: "a", Subject: "s",
		Client: "c", Org: "o", RoleID: "r", SessionHash: "h", RequestID: "q", IP: "i", UserAgent: "u",
		RawDetail: []byte(`{"aal":3}`)}
	sum := audit.NextHash(audit.GenesisHash, &base)
	if len(sum) != audit.HashSize {
		t.Fatalf("hash size %d", len(sum))
	}
	// Truncation to microseconds and time zone do not change the bytes.
	other := base
	other.Time = t0.Truncate(time.Microsecond).In(time.FixedZone("X", 3600))
	if !bytes.Equal(audit.Canonical(&base), audit.Canonical(&other)) {
		t.Fatal("canonical bytes depend on zone or sub-microsecond time")
	}
	mutations := []struct {
		name string
		mut  func(e *audit.Event)
	}{
		{"seq", func(e *audit.Event) { e.Seq++ }},
		{"time", func(e *audit.Event) { e.Time = e.Time.Add(time.Microsecond) }},
		{"type", func(e *audit.Event) { e.Type = audit.SigninFailure }},
		{"outcome", func(e *audit.Event) { e.Outcome = audit.Denied }},
		{"actor", func(e *audit.Event) { e.Actor = "b" }},
		{"subject", func(e *audit.Event) { e.Subject = "t" }},
		{"client", func(e *audit.Event) { e.Client = "d" }},
		{"org", func(e *audit.Event) { e.Org = "p" }},
		{"role", func(e *audit.Event) { e.RoleID = "x" }},
		{"session", func(e *audit.Event) { e.SessionHash = "y" }},
		{"request", func(e *audit.Event) { e.RequestID = "z" }},
		{"ip", func(e *audit.Event) { e.IP = "j" }},
		{"ua", func(e *audit.Event) { e.UserAgent = "v" }},
		{"detail", func(e *audit.Event) { e.RawDetail = []byte(`{"aal":2}`) }},
		// Length prefixes: moving a byte between fields changes the bytes.
		{"field boundary", func(e *audit.Event) { e.Actor, e.Subject = "as", "" }},
	}
	for _, tt := range mutations {
		t.Run(tt.name, func(t *testing.T) {
			e := base
			tt.mut(&e)
			if bytes.Equal(audit.Canonical(&base), audit.Canonical(&e)) {
				t.Fatal("mutation not reflected in canonical bytes")
			}
			if bytes.Equal(audit.NextHash(audit.GenesisHash, &base), audit.NextHash(audit.GenesisHash, &e)) {
				t.Fatal("mutation not reflected in hash")
			}
		})
	}
	// The previous hash is part of the link.
	if bytes.Equal(audit.NextHash(audit.GenesisHash, &base), audit.NextHash(sum, &base)) {
		t.Fatal("prev hash ignored")
	}
	// Detail encodes the same from a map as from its raw form.
	m := base
	m.RawDetail, m.Detail = nil, map[string]any{"aal": 3}
	if !bytes.Equal(audit.Canonical(&base), audit.Canonical(&m)) {
		t.Fatalf("map and raw detail differ:\n%q\n%q", audit.Canonical(&base), audit.Canonical(&m))
	}
}

func TestCanonicalGolden(t *testing.T) {
	e := audit.Event{Seq: 1, Time: t0, Type: audit.TokenIssued, Outcome: audit.Success, Subject: "555000000001", RawDetail: []byte(`{"n":1}`)}
	got := hex.EncodeToString(audit.NextHash(audit.GenesisHash, &e))
	// A change here breaks every existing chain: it must come with a new
	// canonicalVersion, never silently.
	const want = "49ff10b8afd5fa3d601b6b077a43cc373826e769bd42bc47bb86351060cb69cc"
	if got != want {
		t.Fatalf("hash %s, want %s: the canonical encoding changed", got, want)
	}
}

type memStore struct {
	audit.Store
	events []audit.Event
}

func (m *memStore) AppendAudit(_ context.Context, evs []audit.Event) ([]audit.Event, error) {
	for i := range evs {
		evs[i].Seq = int64(len(m.events) + 1)
		m.events = append(m.events, evs[i])
	}
	return evs, nil
}

func TestRecordValidation(t *testing.T) {
	ctx := audit.WithRequest(context.Background(), audit.RequestInfo{RequestID: "rid", IP: "ip", UserAgent: strings.Repeat("u", 2000)})
	tests := []struct {
		name    string
		e       audit.Event
		wantErr bool
	}{
		{"ok", audit.Event{Type: audit.SigninSuccess, Detail: map[string]any{"aal": 3}}, false},
		{"unknown type", audit.Event{Type: "signin.maybe"}, true},
		{"unknown outcome", audit.Event{Type: audit.SigninSuccess, Outcome: "meh"}, true},
		{"secret key", audit.Event{Type: audit.TokenIssued, Detail: map[string]any{"access_token": "x"}}, true},
		{"exact secret key", audit.Event{Type: audit.TokenIssued, Detail: map[string]any{"Token": "x"}}, true},
		{"harmless token key", audit.Event{Type: audit.Introspection, Detail: map[string]any{"token_type": "access_token"}}, false},
		{"nested secret", audit.Event{Type: audit.AdminChange, Detail: map[string]any{"after": map[string]any{"client_secret": "x"}}}, true},
		{"too big", audit.Event{Type: audit.AdminChange, Detail: map[string]any{"after": strings.Repeat("x", 5000)}}, true},
		{"unsupported value", audit.Event{Type: audit.AdminChange, Detail: map[string]any{"f": func() {}}}, true},
		{"before after", audit.Event{Type: audit.AdminChange, Detail: map[string]any{"before": map[string]any{"a": 1}, "after": map[string]any{"a": 2}}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &memStore{}
			l := audit.NewLog(s, audit.Options{Now: func() time.Time { return t0 }})
			err := l.Record(ctx, tt.e)
			if tt.wantErr {
				if !errors.Is(err, audit.ErrInvalidEvent) || len(s.events) != 0 {
					t.Fatalf("got %v with %d stored, want ErrInvalidEvent and nothing stored", err, len(s.events))
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			e := s.events[0]
			if e.RequestID != "rid" || e.IP != "ip" || len(e.UserAgent) != audit.MaxFieldLen || !e.Time.Equal(t0.Truncate(time.Microsecond)) || e.Outcome != audit.Success {
				t.Fatalf("defaults not filled: %+v", e)
			}
			if e.RawDetail == nil {
				t.Fatal("raw detail not set")
			}
		})
	}
}

func TestHashSession(t *testing.T) {
	h := audit.HashSession("sid-123")
	if h == "" || strings.Contains(h, "sid-123") || h != audit.HashSession("sid-123") || h == audit.HashSession("sid-124") {
		t.Fatalf("HashSession: %q", h)
	}
	if audit.HashSession("") != "" {
		t.Fatal("empty sid must hash to empty")
	}
}

func TestCheckpointSignature(t *testing.T) {
	_, key, _ := ed25519.GenerateKey(nil)
	_, other, _ := ed25519.GenerateKey(nil)
	pub := key.Public().(ed25519.PublicKey)
	cp := audit.SignCheckpoint(key, audit.Head{Pos: 42, Hash: bytes.Repeat([]byte{7}, 32)}, t0)
	if err := audit.VerifyCheckpoint(pub, cp); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := audit.WriteCheckpoints(&buf, []audit.Checkpoint{cp}); err != nil {
		t.Fatal(err)
	}
	back, err := audit.ReadCheckpoints(&buf)
	if err != nil || len(back) != 1 {
		t.Fatal(back, err)
	}
	if err := audit.VerifyCheckpoint(pub, back[0]); err != nil {
		t.Fatalf("after round trip: %v", err)
	}
	tampered := []struct {
		name string
		mut  func(c *audit.Checkpoint)
		pub  ed25519.PublicKey
	}{
		{"pos", func(c *audit.Checkpoint) { c.Pos++ }, pub},
		{"hash", func(c *audit.Checkpoint) { c.Hash = bytes.Repeat([]byte{8}, 32) }, pub},
		{"time", func(c *audit.Checkpoint) { c.Time = c.Time.Add(time.Second) }, pub},
		{"other key", func(c *audit.Checkpoint) {}, other.Public().(ed25519.PublicKey)},
		{"re-signed by other key", func(c *audit.Checkpoint) {
			*c = audit.SignCheckpoint(other, audit.Head{Pos: c.Pos, Hash: c.Hash}, c.Time)
		}, pub},
	}
	for _, tt := range tampered {
		t.Run(tt.name, func(t *testing.T) {
			c := back[0]
			tt.mut(&c)
			if err := audit.VerifyCheckpoint(tt.pub, c); !errors.Is(err, audit.ErrBadSignature) {
				t.Fatalf("got %v, want ErrBadSignature", err)
			}
		})
	}
}

func TestParseKeys(t *testing.T) {
	_, key, _ := ed25519.GenerateKey(nil)
	seed := key.Seed()
	enc := base64.StdEncoding.EncodeToString
	k, err := audit.ParseSigningKey(enc(seed))
	if err != nil || !k.Equal(key) {
		t.Fatalf("seed: %v", err)
	}
	k, err = audit.ParseSigningKey(enc(key))
	if err != nil || !k.Equal(key) {
		t.Fatalf("private key: %v", err)
	}
	if _, err := audit.ParseSigningKey(enc([]byte("short"))); err == nil {
		t.Fatal("short key accepted")
	}
	p, err := audit.ParsePublicKey(enc(key.Public().(ed25519.PublicKey)))
	if err != nil || !p.Equal(key.Public()) {
		t.Fatalf("public: %v", err)
	}
}

// slowStore counts inserts, each taking a few milliseconds.
type slowStore struct {
	audit.Store
	mu      sync.Mutex
	inserts int
	events  int
}

func (s *slowStore) AppendAudit(_ context.Context, evs []audit.Event) ([]audit.Event, error) {
	time.Sleep(3 * time.Millisecond)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.inserts++
	s.events += len(evs)
	return evs, nil
}

func TestRecordGroupedSharesFlushes(t *testing.T) {
	for _, window := range []time.Duration{0, 2 * time.Millisecond} {
		t.Run(window.String(), func(t *testing.T) {
			s := &slowStore{}
			l := audit.NewLog(s, audit.Options{GroupWindow: window})
			var wg sync.WaitGroup
			for range 64 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					if err := l.RecordGrouped(context.Background(), audit.Event{Type: audit.Userinfo}); err != nil {
						t.Error(err)
					}
				}()
			}
			wg.Wait()
			if s.events != 64 {
				t.Fatalf("%d events stored, want 64", s.events)
			}
			if s.inserts > 16 {
				t.Fatalf("%d inserts for 64 concurrent events: not grouped", s.inserts)
			}
			// Idle again: the next caller flushes at once, alone.
			if err := l.RecordGrouped(context.Background(), audit.Event{Type: audit.Userinfo}); err != nil || s.events != 65 {
				t.Fatalf("after idle: %v, %d events", err, s.events)
			}
		})
	}
}

func TestOrNop(t *testing.T) {
	if err := audit.OrNop(nil).Record(context.Background(), audit.Event{Type: "anything"}); err != nil {
		t.Fatal(err)
	}
	l := audit.NewLog(&memStore{}, audit.Options{})
	if audit.OrNop(l) != audit.Recorder(l) {
		t.Fatal("OrNop replaced a real recorder")
	}
}

// roundsStore answers SealAudit with the batches it is given, in turn.
type roundsStore struct {
	audit.Store
	rounds []audit.SealBatch
	calls  int
}

func (s *roundsStore) SealAudit(context.Context, int) (audit.SealBatch, error) {
	s.calls++
	if len(s.rounds) == 0 {
		return audit.SealBatch{}, nil
	}
	b := s.rounds[0]
	s.rounds = s.rounds[1:]
	return b, nil
}

// TestSealAllFollowsMore: SealAll goes on while a round says it stopped at
// its limit, even when that round sealed fewer records than the limit (it
// never splits a transaction), and stops after a round that says no more.
func TestSealAllFollowsMore(t *testing.T) {
	st := &roundsStore{rounds: []audit.SealBatch{
		{Count: 9, More: true}, {Count: 8, More: true}, {Count: 10, More: true}, {Count: 3}, {Count: 7},
	}}
	n, err := (&audit.Sealer{Store: st, BatchSize: 10}).SealAll(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if n != 30 || st.calls != 4 {
		t.Fatalf("SealAll sealed %d in %d rounds, want 30 in 4", n, st.calls)
	}
	// A round that sealed nothing ends SealAll even if it says more.
	st = &roundsStore{rounds: []audit.SealBatch{{Count: 0, More: true}, {Count: 5}}}
	if n, _ := (&audit.Sealer{Store: st, BatchSize: 10}).SealAll(context.Background()); n != 0 || st.calls != 1 {
		t.Fatalf("SealAll sealed %d in %d rounds, want 0 in 1", n, st.calls)
	}
}
