package postgres_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nhsid/nhsid/authn"
	"github.com/nhsid/nhsid/internal/ratelimit"
	"github.com/nhsid/nhsid/internal/testdb"
	"github.com/nhsid/nhsid/policy"
	"github.com/nhsid/nhsid/store"
	"github.com/nhsid/nhsid/store/postgres"
)

// TestSignInReadAhead: in a finish's read-ahead context the first read
// reads the flow and the person's record, credentials, failed sign-ins and
// risk profile together, the others are answered from that read, each
// once, and reads of anything else go to the database.
func TestSignInReadAhead(t *testing.T) {
	pool := testdb.Pool(t)
	s := postgres.New(pool)
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Second)
	const uid, other = "555000000001", "555000000002"
	for _, p := range []policy.Person{{UID: uid, GivenName: "Ada", FamilyName: "Lovelace", Status: policy.StatusActive, CreatedAt: now, UpdatedAt: now},
		{UID: other, GivenName: "Bob", FamilyName: "Other", Status: policy.StatusActive, CreatedAt: now, UpdatedAt: now}} {
		if err := s.CreatePerson(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	must := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	must("credential", s.CreateCredential(ctx, authn.Credential{ID: []byte("cred-1"), PersonUID: uid, Name: "key", AAL: 3,
		AAGUID: make([]byte, 16), Data: []byte(`{}`), CreatedAt: now}))
	must("flow", s.CreateFlow(ctx, authn.Flow{ID: "flow-1", BindingHash: []byte("b"), Kind: "oidc", ClientID: "c1",
		RequestedAt: now, MinAAL: 2, ResumeURL: "/r", ExpiresAt: now.Add(time.Hour)}))
	_, err := s.RateIncr(ctx, ratelimit.PersonKey(uid), now, time.Hour)
	must("rate", err)
	_, err = s.UpdateRiskProfile(ctx, uid, func(p *policy.RiskProfile) error { p.SignIns = 3; return nil })
	must("risk", err)

	rctx := store.WithSignInReadAhead(ctx, s, "flow-1", uid)
	f, err := s.GetFlow(rctx, "flow-1", time.Time{})
	must("flow", err)
	// Everything changes after the first read.
	for _, q := range []string{`UPDATE people SET given_name = 'Changed' WHERE uid = '` + uid + `'`, `DELETE FROM credentials`, `DELETE FROM rate_limits`,
		`DELETE FROM risk_profiles`, `UPDATE flows SET client_id = 'changed'`} {
		if _, err := pool.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	p, err := s.GetPerson(rctx, uid)
	must("person", err)
	creds, err := s.ListCredentials(rctx, uid)
	must("credentials", err)
	rate, err := s.RateGet(rctx, ratelimit.PersonKey(uid))
	must("rate", err)
	risk, err := s.GetRiskProfile(rctx, uid)
	must("risk", err)
	if f.ClientID != "c1" || p.GivenName != "Ada" || len(creds) != 1 || rate.Count != 1 || risk.SignIns != 3 || risk.Version == "" {
		t.Fatalf("not read with the first read: flow client %q, name %q, %d credentials, rate %d, risk sign-ins %d version %q",
			f.ClientID, p.GivenName, len(creds), rate.Count, risk.SignIns, risk.Version)
	}
	// Each once: the second reads see the changes.
	f, err = s.GetFlow(rctx, "flow-1", time.Time{})
	must("flow again", err)
	p, err = s.GetPerson(rctx, uid)
	must("person again", err)
	creds, err = s.ListCredentials(rctx, uid)
	must("credentials again", err)
	rate, err = s.RateGet(rctx, ratelimit.PersonKey(uid))
	must("rate again", err)
	risk, err = s.GetRiskProfile(rctx, uid)
	must("risk again", err)
	if f.ClientID != "changed" || p.GivenName != "Changed" || len(creds) != 0 || rate.Count != 0 || risk.SignIns != 0 {
		t.Fatalf("answered twice: flow client %q, name %q, %d credentials, rate %d, risk sign-ins %d",
			f.ClientID, p.GivenName, len(creds), rate.Count, risk.SignIns)
	}
	// Another person, or an absent flow, is read as usual.
	rctx = store.WithSignInReadAhead(ctx, s, "no-such-flow", uid)
	if _, err := s.GetFlow(rctx, "no-such-flow", time.Time{}); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("absent flow: %v, want not found", err)
	}
	if p, err := s.GetPerson(rctx, other); err != nil || p.GivenName != "Bob" {
		t.Fatalf("another person: %q, %v", p.GivenName, err)
	}
}
