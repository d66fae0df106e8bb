package storetest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nhsid/nhsid/onboarding"
	"github.com/nhsid/nhsid/policy"
	"github.com/nhsid/nhsid/store"
)

// OnboardingStore is what RunOnboardingTests checks: sign-ups,
// applications, and the onboarding flags on people.
type OnboardingStore interface {
	onboarding.Store
	policy.Store
}

// RunOnboardingTests runs the onboarding suite; newStore must return an
// empty store.
func RunOnboardingTests(t *testing.T, newStore func(t *testing.T) OnboardingStore) {
	ctx := context.Background()
	t0 := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	tests := []struct {
		name string
		run  func(t *testing.T, s OnboardingStore)
	}{
		{"signup is single use and expires", func(t *testing.T, s OnboardingStore) {
			su := onboarding.Signup{TokenHash: []byte("hash-1"), Email: "a@example.com", GivenName: "A", FamilyName: "B",
				CreatedAt: t0, ExpiresAt: t0.Add(time.Hour)}
			noErr(t, "create", s.CreateSignup(ctx, su))
			isErr(t, "duplicate", s.CreateSignup(ctx, su), store.ErrExists)
			got, err := s.TakeSignup(ctx, []byte("hash-1"), t0.Add(time.Minute))
			noErr(t, "take", err)
			equal(t, "email", got.Email, "a@example.com")
			_, err = s.TakeSignup(ctx, []byte("hash-1"), t0.Add(time.Minute))
			isErr(t, "second take", err, store.ErrNotFound)
			su.TokenHash = []byte("hash-2")
			noErr(t, "create 2", s.CreateSignup(ctx, su))
			_, err = s.TakeSignup(ctx, []byte("hash-2"), t0.Add(2*time.Hour))
			isErr(t, "expired", err, store.ErrNotFound)
		}},
		{"application round trip, update and list", func(t *testing.T, s OnboardingStore) {
			a := onboarding.Application{ID: "app-1", Kind: onboarding.KindNew, IntegratorUID: "111111111111",
				Input:  onboarding.Input{Organisation: "Org", Product: "P", Scopes: []string{"openid", "profile"}, RequiredAAL: 3},
				Status: onboarding.StatusSubmitted, SandboxClientID: "sb", CreatedAt: t0, UpdatedAt: t0,
				History: []onboarding.Event{{At: t0, Actor: "person:111111111111", Action: "submitted"}}}
			noErr(t, "create", s.CreateApplication(ctx, a))
			isErr(t, "duplicate", s.CreateApplication(ctx, a), store.ErrExists)
			b := a
			b.ID, b.IntegratorUID, b.CreatedAt = "app-2", "222222222222", t0.Add(time.Minute)
			noErr(t, "create 2", s.CreateApplication(ctx, b))
			got, err := s.GetApplication(ctx, "app-1")
			noErr(t, "get", err)
			equal(t, "scopes", got.Scopes, []string{"openid", "profile"})
			equal(t, "history", len(got.History), 1)
			_, err = s.GetApplication(ctx, "nope")
			isErr(t, "get missing", err, store.ErrNotFound)

			up, err := s.UpdateApplication(ctx, "app-1", func(a *onboarding.Application) error {
				a.Status = onboarding.StatusQuestions
				a.IntegratorUID = "999999999999" // ignored
				a.Questions = append(a.Questions, onboarding.Question{ID: "q1", Text: "Why?", AskedAt: t0})
				return nil
			})
			noErr(t, "update", err)
			equal(t, "integrator kept", up.IntegratorUID, "111111111111")
			boom := errors.New("boom")
			_, err = s.UpdateApplication(ctx, "app-1", func(a *onboarding.Application) error { a.Status = "x"; return boom })
			isErr(t, "aborted update", err, boom)
			got, _ = s.GetApplication(ctx, "app-1")
			equal(t, "status", got.Status, onboarding.StatusQuestions)
			equal(t, "question", got.Questions[0].Text, "Why?")
			_, err = s.UpdateApplication(ctx, "nope", func(*onboarding.Application) error { return nil })
			isErr(t, "update missing", err, store.ErrNotFound)

			all, err := s.ListApplications(ctx, onboarding.Filter{})
			noErr(t, "list", err)
			equal(t, "all", len(all), 2)
			equal(t, "order", all[0].ID, "app-1")
			mine, _ := s.ListApplications(ctx, onboarding.Filter{IntegratorUID: "222222222222"})
			equal(t, "mine", len(mine), 1)
			q, _ := s.ListApplications(ctx, onboarding.Filter{Statuses: []string{onboarding.StatusQuestions}})
			equal(t, "by status", len(q), 1)
			equal(t, "by status id", q[0].ID, "app-1")
		}},
		{"person onboarding flags persist", func(t *testing.T, s OnboardingStore) {
			p := policy.Person{UID: "333333333333", GivenName: "T", FamilyName: "A", Status: policy.StatusActive,
				TestAccount: true, CreatedAt: t0, UpdatedAt: t0}
			noErr(t, "create", s.CreatePerson(ctx, p))
			got, err := s.GetPerson(ctx, p.UID)
			noErr(t, "get", err)
			equal(t, "flags", [3]bool{got.Integrator, got.TestAccount, got.Reviewer}, [3]bool{false, true, false})
			got, err = s.UpdatePerson(ctx, p.UID, func(p *policy.Person) error {
				p.TestAccount, p.Integrator, p.Reviewer = false, true, true
				return nil
			})
			noErr(t, "update", err)
			got, _ = s.GetPerson(ctx, p.UID)
			equal(t, "flags after update", [3]bool{got.Integrator, got.TestAccount, got.Reviewer}, [3]bool{true, false, true})
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.run(t, newStore(t)) })
	}
}
