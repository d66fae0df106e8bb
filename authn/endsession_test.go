package authn_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/nhsid/nhsid/authn"
)

type recordedEnd struct {
	sid, reason string
}

type endRecorder struct {
	mu   sync.Mutex
	ends []recordedEnd
}

func (r *endRecorder) SessionEnded(_ context.Context, s authn.Session, reason string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if s.EndedAt.IsZero() {
		panic("listener got a live session")
	}
	r.ends = append(r.ends, recordedEnd{s.SID, reason})
}

func (r *endRecorder) all() []recordedEnd {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]recordedEnd(nil), r.ends...)
}

func TestEndSessionNotifiesOnce(t *testing.T) {
	ctx := context.Background()
	h := newHarness(t)
	rec := &endRecorder{}
	h.svc.OnSessionEnd(rec)
	now := h.clock.Now()
	mk := func(sid, uid string, exp time.Time) {
		if err := h.store.CreateSession(ctx, authn.Session{IDHash: []byte("h-" + sid), SID: sid, PersonUID: uid, AAL: 3,
			AuthTime: now, LastSeenAt: now, ExpiresAt: exp}); err != nil {
			t.Fatal(err)
		}
	}
	mk("s-1", "100000000001", now.Add(time.Hour))
	mk("s-2", "100000000001", now.Add(2*time.Hour))
	mk("s-3", "100000000002", now.Add(30*time.Minute))

	steps := []struct {
		name string
		run  func() error
		want []recordedEnd
	}{
		{"end one", func() error { return h.svc.EndSession(ctx, "s-1", authn.EndRPLogout) },
			[]recordedEnd{{"s-1", authn.EndRPLogout}}},
		{"ending it again is a no-op", func() error { return h.svc.EndSession(ctx, "s-1", authn.EndLogout) },
			[]recordedEnd{{"s-1", authn.EndRPLogout}}},
		{"unknown sid is a no-op", func() error { return h.svc.EndSession(ctx, "nope", authn.EndLogout) },
			[]recordedEnd{{"s-1", authn.EndRPLogout}}},
		{"sweep before expiry ends nothing", func() error { _, err := h.svc.SweepExpiredSessions(ctx); return err },
			[]recordedEnd{{"s-1", authn.EndRPLogout}}},
		{"sweep after expiry", func() error {
			h.clock.Advance(45 * time.Minute)
			_, err := h.svc.SweepExpiredSessions(ctx)
			return err
		}, []recordedEnd{{"s-1", authn.EndRPLogout}, {"s-3", authn.EndExpired}}},
		{"a person's remaining sessions", func() error {
			_, err := h.svc.EndPersonSessions(ctx, "100000000001", authn.EndAccountClosed)
			return err
		}, []recordedEnd{{"s-1", authn.EndRPLogout}, {"s-3", authn.EndExpired}, {"s-2", authn.EndAccountClosed}}},
	}
	for _, s := range steps {
		if err := s.run(); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if got := rec.all(); len(got) != len(s.want) {
			t.Fatalf("%s: listener saw %v, want %v", s.name, got, s.want)
		} else {
			for i := range got {
				if got[i] != s.want[i] {
					t.Fatalf("%s: listener saw %v, want %v", s.name, got, s.want)
				}
			}
		}
	}
	x, err := h.store.GetSessionBySID(ctx, "s-3")
	if err != nil || x.EndReason != authn.EndExpired || x.EndedAt.IsZero() {
		t.Fatalf("expired session: %+v %v", x, err)
	}
}
