package storetest

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nhsid/nhsid/authn"
	"github.com/nhsid/nhsid/federation/saml"
	"github.com/nhsid/nhsid/idp"
	"github.com/nhsid/nhsid/store"
)

// LogoutStore is what RunLogoutTests checks: session participants, the
// expired-session sweep and the back-channel logout queues (OIDC and
// SAML).
type LogoutStore interface {
	authn.SessionStore
	authn.ParticipantStore
	authn.ExpiredSessionStore
	idp.LogoutDeliveryStore
	saml.LogoutQueue
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
		{"SAMLQueue", func(t *testing.T, s LogoutStore) {
			d := saml.LogoutDelivery{ID: "d1", EntityID: "https://sp.example/metadata", Location: "https://sp.example/slo/soap",
				SID: "s1", NameID: "555000000001", SessionIndex: "s1", Reason: "user", CreatedAt: t0, NextAttemptAt: t0}
			noErr(t, "enqueue", s.EnqueueSAMLLogout(ctx, d))
			isErr(t, "duplicate", s.EnqueueSAMLLogout(ctx, d), store.ErrExists)
			later := d
			later.ID, later.NextAttemptAt = "d2", t0.Add(time.Hour)
			noErr(t, "enqueue later", s.EnqueueSAMLLogout(ctx, later))
			_, err := s.UpdateSAMLLogout(ctx, "nope", func(*saml.LogoutDelivery) error { return nil })
			isErr(t, "update missing", err, store.ErrNotFound)

			lease := t0.Add(time.Minute)
			got, err := s.ClaimSAMLLogouts(ctx, t0, lease, 10)
			noErr(t, "claim", err)
			want := d
			want.NextAttemptAt = lease
			equal(t, "claimed", got, []saml.LogoutDelivery{want})
			got, err = s.ClaimSAMLLogouts(ctx, t0.Add(30*time.Second), lease, 10)
			noErr(t, "claim while leased", err)
			equal(t, "leased", len(got), 0)
			got, err = s.ClaimSAMLLogouts(ctx, lease, lease.Add(time.Minute), 10)
			noErr(t, "claim after lease", err)
			equal(t, "re-claimed after lease", len(got), 1)

			retry, err := s.UpdateSAMLLogout(ctx, "d1", func(x *saml.LogoutDelivery) error {
				x.Attempts++
				x.NextAttemptAt, x.LastError = t0.Add(3*time.Minute), "status 503"
				return nil
			})
			noErr(t, "retry later", err)
			want.Attempts, want.NextAttemptAt, want.LastError = 1, t0.Add(3*time.Minute), "status 503"
			equal(t, "updated", retry, want)
			got, err = s.ClaimSAMLLogouts(ctx, t0.Add(3*time.Minute), t0.Add(4*time.Minute), 10)
			noErr(t, "claim the retry", err)
			want.NextAttemptAt = t0.Add(4 * time.Minute)
			equal(t, "the retry as stored", got, []saml.LogoutDelivery{want})

			_, err = s.UpdateSAMLLogout(ctx, "d1", func(x *saml.LogoutDelivery) error {
				x.Attempts++
				x.DeliveredAt, x.LastError = t0.Add(5*time.Minute), ""
				return nil
			})
			noErr(t, "deliver", err)
			_, err = s.UpdateSAMLLogout(ctx, "d2", func(x *saml.LogoutDelivery) error {
				x.FailedAt, x.LastError = t0, "gave up"
				return nil
			})
			noErr(t, "fail", err)
			got, err = s.ClaimSAMLLogouts(ctx, t0.Add(48*time.Hour), t0.Add(49*time.Hour), 10)
			noErr(t, "claim done", err)
			equal(t, "delivered and failed are never claimed", len(got), 0)
		}},
		{"SAMLConcurrentClaimsDisjoint", func(t *testing.T, s LogoutStore) {
			for i := range 20 {
				noErr(t, "enqueue", s.EnqueueSAMLLogout(ctx, saml.LogoutDelivery{ID: fmt.Sprintf("c%02d", i), EntityID: "sp",
					Location: "https://sp.example/slo", SID: "s", NameID: "n", CreatedAt: t0, NextAttemptAt: t0}))
			}
			claimDisjoint(t, 20, func() ([]string, error) {
				got, err := s.ClaimSAMLLogouts(ctx, t0, t0.Add(time.Hour), 3)
				ids := make([]string, len(got))
				for i, d := range got {
					ids[i] = d.ID
				}
				return ids, err
			})
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
			for _, d := range []saml.LogoutDelivery{
				{ID: "saml-done", DeliveredAt: t0.Add(-time.Hour)},
				{ID: "saml-pending"},
			} {
				d.EntityID, d.Location, d.SID, d.NameID, d.CreatedAt, d.NextAttemptAt = "sp", "https://sp.example/slo", "s", "n", t0.Add(-2*time.Hour), t0.Add(-2*time.Hour)
				noErr(t, "enqueue "+d.ID, s.EnqueueSAMLLogout(ctx, d))
			}
			n, err := s.PurgeExpiredSessionData(ctx, t0)
			noErr(t, "purge", err)
			equal(t, "purged", n, 5)
			left, err := s.ClaimSAMLLogouts(ctx, t0, t0.Add(time.Minute), 10)
			noErr(t, "claim after purge", err)
			equal(t, "pending SAML logout kept", len(left), 1)
			noErr(t, "delivered SAML logout purged (its ID is free again)", s.EnqueueSAMLLogout(ctx, saml.LogoutDelivery{ID: "saml-done",
				EntityID: "sp", Location: "https://sp.example/slo", SID: "s", NameID: "n", CreatedAt: t0, NextAttemptAt: t0}))
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
			claimDisjoint(t, 20, func() ([]string, error) {
				got, err := s.ClaimLogoutDeliveries(ctx, t0, t0.Add(time.Hour), 3)
				ids := make([]string, len(got))
				for i, d := range got {
					ids[i] = d.ID
				}
				return ids, err
			})
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.run(t, newStore(t))
		})
	}
}

// claimDisjoint runs claim from six goroutines, three times each, and
// fails unless every one of the total queued deliveries was claimed
// exactly once.
func claimDisjoint(t *testing.T, total int, claim func() ([]string, error)) {
	t.Helper()
	var mu sync.Mutex
	seen := map[string]int{}
	var wg sync.WaitGroup
	for range 6 {
		wg.Go(func() {
			for range 3 {
				ids, err := claim()
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				for _, id := range ids {
					seen[id]++
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	for id, n := range seen {
		if n != 1 {
			t.Fatalf("%s claimed %d times", id, n)
		}
	}
	equal(t, "all claimed", len(seen), total)
}
