package storetest

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nhsid/nhsid/authn"
	"github.com/nhsid/nhsid/idp"
	"github.com/nhsid/nhsid/store"
)

// LogoutStore is what RunLogoutTests checks: session participants, the
// expired-session sweep and the back-channel logout queue.
type LogoutStore interface {
	authn.SessionStore
	authn.ParticipantStore
	authn.ExpiredSessionStore
	idp.LogoutDeliveryStore
	authn.FlowStore
	authn.ChallengeStore
	PurgeExpiredSessionData(ctx context.Context, before time.Time) (int, error)
}

// RunLogoutTests runs the logout suite; newStore must return an empty store.
func RunLogoutTests(t *testing.T, newStore func(t *testing.T) LogoutStore) {
	ctx := context.Background()
	tests := []struct {
		name string
		run  func(t *testing.T, s LogoutStore)
	}{
		{"ParticipantsKeepFirstAt", func(t *testing.T, s LogoutStore) {
			noErr(t, "add b", s.AddSessionParticipant(ctx, authn.SessionParticipant{SID: "s1", Kind: "oidc", PartyID: "rp-b", FirstAt: t0.Add(time.Second)}))
			noErr(t, "add a", s.AddSessionParticipant(ctx, authn.SessionParticipant{SID: "s1", Kind: "oidc", PartyID: "rp-a", FirstAt: t0}))
			noErr(t, "add a again", s.AddSessionParticipant(ctx, authn.SessionParticipant{SID: "s1", Kind: "oidc", PartyID: "rp-a", FirstAt: t0.Add(time.Hour)}))
			noErr(t, "add saml", s.AddSessionParticipant(ctx, authn.SessionParticipant{SID: "s1", Kind: "saml", PartyID: "rp-a", FirstAt: t0.Add(2 * time.Second)}))
			noErr(t, "other sid", s.AddSessionParticipant(ctx, authn.SessionParticipant{SID: "s2", Kind: "oidc", PartyID: "rp-a", FirstAt: t0}))
			got, err := s.ListSessionParticipants(ctx, "s1")
			noErr(t, "list", err)
			equal(t, "participants", got, []authn.SessionParticipant{
				{SID: "s1", Kind: "oidc", PartyID: "rp-a", FirstAt: t0},
				{SID: "s1", Kind: "oidc", PartyID: "rp-b", FirstAt: t0.Add(time.Second)},
				{SID: "s1", Kind: "saml", PartyID: "rp-a", FirstAt: t0.Add(2 * time.Second)},
			})
			none, err := s.ListSessionParticipants(ctx, "nope")
			noErr(t, "list none", err)
			equal(t, "no participants", len(none), 0)
		}},
		{"ListExpiredSessions", func(t *testing.T, s LogoutStore) {
			mk := func(sid string, exp time.Time, ended bool) {
				x := authn.Session{IDHash: []byte("h-" + sid), SID: sid, PersonUID: "555000000001", AAL: 3,
					AuthTime: t0.Add(-time.Hour), LastSeenAt: t0.Add(-time.Hour), ExpiresAt: exp}
				if ended {
					x.EndedAt, x.EndReason = t0.Add(-time.Minute), "logout"
				}
				noErr(t, "create "+sid, s.CreateSession(ctx, x))
			}
			mk("expired-2", t0.Add(-time.Minute), false)
			mk("expired-1", t0.Add(-2*time.Minute), false)
			mk("expired-now", t0, false)
			mk("ended", t0.Add(-time.Hour), true)
			mk("live", t0.Add(time.Second), false)
			got, err := s.ListExpiredSessions(ctx, t0, 0)
			noErr(t, "list", err)
			var sids []string
			for _, x := range got {
				sids = append(sids, x.SID)
			}
			equal(t, "expired", sids, []string{"expired-1", "expired-2", "expired-now"})
			got, err = s.ListExpiredSessions(ctx, t0, 1)
			noErr(t, "list limit", err)
			equal(t, "limited", len(got), 1)
		}},
		{"DeliveryQueue", func(t *testing.T, s LogoutStore) {
			d := idp.LogoutDelivery{ID: "d1", ClientID: "rp-a", URI: "https://rp.example/bcl", SID: "s1", Subject: "555000000001",
				JTI: "j1", Token: "tok", CreatedAt: t0, NextAttemptAt: t0}
			noErr(t, "enqueue", s.EnqueueLogoutDelivery(ctx, d))
			isErr(t, "duplicate", s.EnqueueLogoutDelivery(ctx, d), store.ErrExists)
			later := d
			later.ID, later.NextAttemptAt = "d2", t0.Add(time.Hour)
			noErr(t, "enqueue later", s.EnqueueLogoutDelivery(ctx, later))
			_, err := s.GetLogoutDelivery(ctx, "nope")
			isErr(t, "get missing", err, store.ErrNotFound)
			_, err = s.UpdateLogoutDelivery(ctx, "nope", func(*idp.LogoutDelivery) error { return nil })
			isErr(t, "update missing", err, store.ErrNotFound)

			lease := t0.Add(time.Minute)
			got, err := s.ClaimLogoutDeliveries(ctx, t0, lease, 10)
			noErr(t, "claim", err)
			want := d
			want.NextAttemptAt = lease
			equal(t, "claimed", got, []idp.LogoutDelivery{want})
			got, err = s.ClaimLogoutDeliveries(ctx, t0.Add(30*time.Second), lease, 10)
			noErr(t, "claim while leased", err)
			equal(t, "leased", len(got), 0)
			got, err = s.ClaimLogoutDeliveries(ctx, lease, lease.Add(time.Minute), 10)
			noErr(t, "claim after lease", err)
			equal(t, "re-claimed after lease", len(got), 1)

			upd, err := s.UpdateLogoutDelivery(ctx, "d1", func(x *idp.LogoutDelivery) error {
				x.Attempts++
				x.DeliveredAt = t0.Add(2 * time.Minute)
				x.LastError = ""
				return nil
			})
			noErr(t, "deliver", err)
			equal(t, "attempts", upd.Attempts, 1)
			back, err := s.GetLogoutDelivery(ctx, "d1")
			noErr(t, "get", err)
			equal(t, "stored", back, upd)
			_, err = s.UpdateLogoutDelivery(ctx, "d2", func(x *idp.LogoutDelivery) error {
				x.FailedAt, x.LastError = t0, "window closed"
				return nil
			})
			noErr(t, "fail", err)
			got, err = s.ClaimLogoutDeliveries(ctx, t0.Add(48*time.Hour), t0.Add(49*time.Hour), 10)
			noErr(t, "claim done", err)
			equal(t, "delivered and failed are never claimed", len(got), 0)
		}},
		{"PurgeExpiredSessionData", func(t *testing.T, s LogoutStore) {
			noErr(t, "old flow", s.CreateFlow(ctx, authn.Flow{ID: "f-old", Kind: "oidc", ExpiresAt: t0.Add(-time.Hour)}))
			noErr(t, "new flow", s.CreateFlow(ctx, authn.Flow{ID: "f-new", Kind: "oidc", ExpiresAt: t0.Add(time.Hour)}))
			noErr(t, "old challenge", s.PutChallenge(ctx, "c-old", []byte("x"), t0.Add(-time.Hour)))
			noErr(t, "new challenge", s.PutChallenge(ctx, "c-new", []byte("x"), t0.Add(time.Hour)))
			for _, d := range []idp.LogoutDelivery{
				{ID: "done", DeliveredAt: t0.Add(-time.Hour)},
				{ID: "failed", FailedAt: t0.Add(-time.Hour)},
				{ID: "pending"},
				{ID: "recent", DeliveredAt: t0.Add(time.Minute)},
			} {
				d.ClientID, d.URI, d.JTI, d.Token, d.CreatedAt, d.NextAttemptAt = "rp", "https://rp.example/bcl", "j", "t", t0.Add(-2*time.Hour), t0.Add(-2*time.Hour)
				noErr(t, "enqueue "+d.ID, s.EnqueueLogoutDelivery(ctx, d))
			}
			n, err := s.PurgeExpiredSessionData(ctx, t0)
			noErr(t, "purge", err)
			equal(t, "purged", n, 4)
			_, err = s.GetFlow(ctx, "f-old", time.Time{})
			isErr(t, "old flow gone", err, store.ErrNotFound)
			_, err = s.GetFlow(ctx, "f-new", time.Time{})
			noErr(t, "new flow kept", err)
			_, err = s.TakeChallenge(ctx, "c-new", t0)
			noErr(t, "new challenge kept", err)
			for id, kept := range map[string]bool{"done": false, "failed": false, "pending": true, "recent": true} {
				_, err := s.GetLogoutDelivery(ctx, id)
				if kept {
					noErr(t, id+" kept", err)
				} else {
					isErr(t, id+" purged", err, store.ErrNotFound)
				}
			}
		}},
		{"ConcurrentClaimsDisjoint", func(t *testing.T, s LogoutStore) {
			for i := range 20 {
				noErr(t, "enqueue", s.EnqueueLogoutDelivery(ctx, idp.LogoutDelivery{ID: fmt.Sprintf("c%02d", i), ClientID: "rp",
					URI: "https://rp.example/bcl", JTI: "j", Token: "t", CreatedAt: t0, NextAttemptAt: t0}))
			}
			var mu sync.Mutex
			seen := map[string]int{}
			var wg sync.WaitGroup
			for range 6 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for range 3 {
						got, err := s.ClaimLogoutDeliveries(ctx, t0, t0.Add(time.Hour), 3)
						if err != nil {
							t.Error(err)
							return
						}
						mu.Lock()
						for _, d := range got {
							seen[d.ID]++
						}
						mu.Unlock()
					}
				}()
			}
			wg.Wait()
			for id, n := range seen {
				if n != 1 {
					t.Fatalf("%s claimed %d times", id, n)
				}
			}
			equal(t, "all claimed", len(seen), 20)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.run(t, newStore(t))
		})
	}
}
