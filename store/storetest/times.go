package storetest

import (
	"context"
	"testing"
	"time"

	"github.com/nhsid/nhsid/authn"
	"github.com/nhsid/nhsid/idp"
	"github.com/nhsid/nhsid/policy"
)

// testZeroTimes: zero time.Time values (NULL in SQL) round-trip as zero, and
// a zero expiry never expires.
func testZeroTimes(t *testing.T, s Store) {
	ctx := context.Background()
	late := t0.Add(100 * 365 * 24 * time.Hour)

	o := policy.Organisation{Code: "Z1", Name: "Zero"}
	noErr(t, "create organisation", s.CreateOrganisation(ctx, o))
	gotO, err := s.GetOrganisation(ctx, o.Code)
	noErr(t, "get organisation", err)
	equal(t, "organisation", gotO, o)

	p := policy.Person{UID: "555000000001"}
	noErr(t, "create person", s.CreatePerson(ctx, p))
	gotP, err := s.GetPerson(ctx, p.UID)
	noErr(t, "get person", err)
	equal(t, "person", gotP, p)

	c := authn.Credential{ID: []byte("zero"), PersonUID: p.UID, AAL: 2}
	noErr(t, "create credential", s.CreateCredential(ctx, c))
	gotC, err := s.GetCredential(ctx, c.ID)
	noErr(t, "get credential", err)
	equal(t, "credential", gotC, c)

	inv := authn.Invite{CodeHash: []byte("zero-invite"), PersonUID: p.UID}
	noErr(t, "create invite", s.CreateInvite(ctx, inv))
	gotI, err := s.GetInvite(ctx, inv.CodeHash)
	noErr(t, "get invite", err)
	equal(t, "invite", gotI, inv)
	_, err = s.EnrolWithInvite(ctx, inv.CodeHash, late, authn.Credential{ID: []byte("zero-2"), AAL: 2})
	noErr(t, "enrol with an invite without expiry", err)

	x := authn.Session{IDHash: []byte("zero-session"), SID: "zero-sid", PersonUID: p.UID}
	noErr(t, "create session", s.CreateSession(ctx, x))
	gotX, err := s.GetSession(ctx, x.IDHash)
	noErr(t, "get session", err)
	equal(t, "session", gotX, x)

	f := authn.Flow{ID: "zero-flow"}
	noErr(t, "create flow", s.CreateFlow(ctx, f))
	gotF, err := s.GetFlow(ctx, f.ID, late)
	noErr(t, "get flow without expiry", err)
	equal(t, "flow", gotF, f)

	noErr(t, "put challenge", s.PutChallenge(ctx, "zero", nil, time.Time{}))
	_, err = s.TakeChallenge(ctx, "zero", late)
	noErr(t, "take challenge without expiry", err)

	cl := &idp.Client{ID: "zero-client"}
	noErr(t, "create client", s.CreateClient(ctx, cl))
	gotCl, err := s.GetClient(ctx, cl.ID)
	noErr(t, "get client", err)
	sameClient(t, "client", gotCl, cl)

	k := idp.SigningKey{KID: "zero-key", Alg: "RS256"}
	noErr(t, "create key", s.CreateKey(ctx, k))
	keys, err := s.ListKeys(ctx)
	noErr(t, "list keys", err)
	equal(t, "keys", keys, []idp.SigningKey{k})
}

// testTimeNormalised: times come back in UTC at microsecond precision
// whatever zone and precision they went in with, in every adapter.
func testTimeNormalised(t *testing.T, s Store) {
	ctx := context.Background()
	zone := time.FixedZone("UTC+5:30", 5*3600+1800)
	in := time.Date(2026, 3, 2, 15, 0, 15, 123456789, zone)
	want := time.Date(2026, 3, 2, 9, 30, 15, 123456000, time.UTC)

	p := policy.Person{UID: "555000000001", CreatedAt: in, UpdatedAt: in}
	noErr(t, "create", s.CreatePerson(ctx, p))
	got, err := s.GetPerson(ctx, p.UID)
	noErr(t, "get", err)
	equal(t, "created at", got.CreatedAt, want)
	equal(t, "updated at", got.UpdatedAt, want)
}
