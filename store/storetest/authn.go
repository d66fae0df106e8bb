package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/nhsid/nhsid/authn"
	"github.com/nhsid/nhsid/store"
)

func authnTests() []suiteTest {
	return []suiteTest{
		{"Credential/RoundTrip", testCredentialRoundTrip},
		{"Credential/List", testCredentialList},
		{"Credential/Update", testCredentialUpdate},
		{"Invite/RoundTrip", testInviteRoundTrip},
		{"Invite/Enrol", testInviteEnrol},
		{"Invite/EnrolRefused", testInviteEnrolRefused},
		{"Invite/ConcurrentEnrol", testInviteConcurrentEnrol},
		{"Session/RoundTrip", testSessionRoundTrip},
		{"Session/Update", testSessionUpdate},
		{"Session/List", testSessionList},
		{"Flow/RoundTrip", testFlowRoundTrip},
		{"Flow/Expiry", testFlowExpiry},
		{"Flow/UpdateDelete", testFlowUpdateDelete},
		{"Flow/LoginChallenge", testFlowLoginChallenge},
		{"Flow/LoginChallengeMadeWithFlow", testFlowLoginChallengeMade},
		{"Challenge/Take", testChallengeTake},
		{"Challenge/Expiry", testChallengeExpiry},
		{"Challenge/ConcurrentTake", testChallengeConcurrentTake},
		{"ZeroTimes", testZeroTimes},
		{"TimeNormalised", testTimeNormalised},
	}
}

func newCredential(id string, person string, created time.Time) authn.Credential {
	return authn.Credential{
		ID:         []byte(id),
		PersonUID:  person,
		Name:       "YubiKey 5C " + id,
		AAL:        3,
		AAGUID:     bytes.Repeat([]byte{0xee}, 16),
		SignCount:  7,
		Data:       []byte(`{"id":"` + id + `","publicKey":"pQECAyYgASFYIA"}`),
		CreatedAt:  created,
		LastUsedAt: created.Add(time.Minute),
	}
}

func testCredentialRoundTrip(t *testing.T, s Store) {
	ctx := context.Background()
	c := newCredential("cred-1", "555000000001", t0)
	c.SignCount = math.MaxUint32
	noErr(t, "create", s.CreateCredential(ctx, c))

	c.ID[0], c.Data[0], c.AAGUID[0] = 'X', 'X', 'X' // the store must have copied them
	c = newCredential("cred-1", "555000000001", t0)
	c.SignCount = math.MaxUint32
	got, err := s.GetCredential(ctx, []byte("cred-1"))
	noErr(t, "get", err)
	equal(t, "credential", got, c)

	got.Data[0] = '!'
	again, err := s.GetCredential(ctx, []byte("cred-1"))
	noErr(t, "get again", err)
	equal(t, "credential after mutating a returned copy", again, c)

	isErr(t, "duplicate id", s.CreateCredential(ctx, newCredential("cred-1", "555000000002", t0)), store.ErrExists)
	_, err = s.GetCredential(ctx, []byte("nope"))
	isErr(t, "missing credential", err, store.ErrNotFound)
}

func testCredentialList(t *testing.T, s Store) {
	ctx := context.Background()
	const person = "555000000001"
	b := newCredential("b", person, t0.Add(2*time.Hour))
	a := newCredential("a", person, t0.Add(time.Hour))
	revoked := newCredential("r", person, t0)
	revoked.RevokedAt = t0.Add(3 * time.Hour)
	other := newCredential("o", "555000000009", t0)
	for _, c := range []authn.Credential{b, a, revoked, other} {
		noErr(t, "create", s.CreateCredential(ctx, c))
	}
	got, err := s.ListCredentials(ctx, person)
	noErr(t, "list", err)
	equal(t, "credentials oldest first, revoked included", got, []authn.Credential{revoked, a, b})

	none, err := s.ListCredentials(ctx, "555000000000")
	noErr(t, "list for a person without credentials", err)
	if len(none) != 0 {
		t.Fatalf("listed %d credentials for a person without any", len(none))
	}
}

func testCredentialUpdate(t *testing.T, s Store) {
	ctx := context.Background()
	c := newCredential("cred-u", "555000000001", t0)
	noErr(t, "create", s.CreateCredential(ctx, c))

	want := c
	want.SignCount = 8
	want.LastUsedAt = t0.Add(time.Hour)
	want.Data = []byte(`{"updated":true}`)
	got, err := s.UpdateCredential(ctx, c.ID, func(x *authn.Credential) error {
		equal(t, "updater sees current", *x, c)
		x.ID = []byte("other") // ignored
		x.SignCount = want.SignCount
		x.LastUsedAt = want.LastUsedAt
		x.Data = want.Data
		return nil
	})
	noErr(t, "update", err)
	equal(t, "returned", got, want)
	stored, err := s.GetCredential(ctx, c.ID)
	noErr(t, "get", err)
	equal(t, "stored", stored, want)

	_, err = s.UpdateCredential(ctx, c.ID, func(x *authn.Credential) error {
		x.RevokedAt = t0
		return errAbort
	})
	isErr(t, "aborted update", err, errAbort)
	stored, err = s.GetCredential(ctx, c.ID)
	noErr(t, "get after abort", err)
	equal(t, "stored after abort", stored, want)

	want.RevokedAt = t0.Add(2 * time.Hour)
	got, err = s.UpdateCredential(ctx, c.ID, func(x *authn.Credential) error {
		x.RevokedAt = want.RevokedAt
		return nil
	})
	noErr(t, "revoke", err)
	equal(t, "revoked", got, want)

	_, err = s.UpdateCredential(ctx, []byte("nope"), func(*authn.Credential) error { return nil })
	isErr(t, "update missing", err, store.ErrNotFound)

	// A sign-in's use, in one step: refused for a revoked or missing credential.
	_, err = s.RecordCredentialUse(ctx, c.ID, 9, []byte(`{"used":true}`), t0.Add(3*time.Hour))
	isErr(t, "use revoked", err, store.ErrNotFound)
	_, err = s.RecordCredentialUse(ctx, []byte("nope"), 9, nil, t0)
	isErr(t, "use missing", err, store.ErrNotFound)
	live := newCredential("cred-use", "555000000001", t0)
	noErr(t, "create live", s.CreateCredential(ctx, live))
	wantUse := live
	wantUse.SignCount, wantUse.Data, wantUse.LastUsedAt = 12, []byte(`{"used":true}`), t0.Add(3*time.Hour)
	got, err = s.RecordCredentialUse(ctx, live.ID, wantUse.SignCount, wantUse.Data, wantUse.LastUsedAt)
	noErr(t, "use", err)
	equal(t, "used", got, wantUse)
	stored, err = s.GetCredential(ctx, live.ID)
	noErr(t, "get used", err)
	equal(t, "stored use", stored, wantUse)
}

func newInvite(code string, person string) authn.Invite {
	return authn.Invite{
		CodeHash:  []byte("hash-of-" + code),
		PersonUID: person,
		CreatedBy: "555000000099",
		CreatedAt: t0,
		ExpiresAt: t0.Add(15 * time.Minute),
	}
}

func testInviteRoundTrip(t *testing.T, s Store) {
	ctx := context.Background()
	inv := newInvite("c1", "555000000001")
	noErr(t, "create", s.CreateInvite(ctx, inv))
	got, err := s.GetInvite(ctx, inv.CodeHash)
	noErr(t, "get", err)
	equal(t, "invite", got, inv)

	isErr(t, "duplicate", s.CreateInvite(ctx, newInvite("c1", "555000000002")), store.ErrExists)
	_, err = s.GetInvite(ctx, []byte("nope"))
	isErr(t, "missing", err, store.ErrNotFound)
}

func testInviteEnrol(t *testing.T, s Store) {
	ctx := context.Background()
	inv := newInvite("c1", "555000000001")
	noErr(t, "create", s.CreateInvite(ctx, inv))

	now := t0.Add(5 * time.Minute)
	c := newCredential("enrolled", "someone-else", now)
	got, err := s.EnrolWithInvite(ctx, inv.CodeHash, now, c)
	noErr(t, "enrol", err)
	want := inv
	want.UsedAt = now
	equal(t, "consumed invite", got, want)
	stored, err := s.GetInvite(ctx, inv.CodeHash)
	noErr(t, "get invite", err)
	equal(t, "stored invite", stored, want)

	cred, err := s.GetCredential(ctx, c.ID)
	noErr(t, "get credential", err)
	c.PersonUID = inv.PersonUID // always the invite's person
	equal(t, "enrolled credential", cred, c)

	_, err = s.EnrolWithInvite(ctx, inv.CodeHash, now, newCredential("second", "", now))
	isErr(t, "second use", err, store.ErrNotFound)
	_, err = s.GetCredential(ctx, []byte("second"))
	isErr(t, "no credential from a used invite", err, store.ErrNotFound)
}

func testInviteEnrolRefused(t *testing.T, s Store) {
	ctx := context.Background()
	const person = "555000000001"
	noErr(t, "create existing credential", s.CreateCredential(ctx, newCredential("taken", person, t0)))
	tests := []struct {
		name    string
		invite  *authn.Invite // created first when set
		code    string
		now     time.Time
		credID  string
		wantErr error
		// consumed: whether the invite is used afterwards
		consumed bool
	}{
		{name: "unknown code", code: "unknown", now: t0, credID: "c-unknown", wantErr: store.ErrNotFound},
		{name: "expired", invite: ptr(newInvite("expired", person)), code: "expired", now: t0.Add(time.Hour), credID: "c-expired", wantErr: store.ErrNotFound},
		{name: "at expiry instant", invite: ptr(newInvite("edge", person)), code: "edge", now: t0.Add(15 * time.Minute), credID: "c-edge", wantErr: store.ErrNotFound},
		{name: "already used", invite: func() *authn.Invite { i := newInvite("used", person); i.UsedAt = t0; return &i }(), code: "used", now: t0.Add(time.Minute), credID: "c-used", wantErr: store.ErrNotFound, consumed: true},
		{name: "duplicate credential", invite: ptr(newInvite("dup", person)), code: "dup", now: t0.Add(time.Minute), credID: "taken", wantErr: store.ErrExists},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.invite != nil {
				noErr(t, "create invite", s.CreateInvite(ctx, *tt.invite))
			}
			_, err := s.EnrolWithInvite(ctx, []byte("hash-of-"+tt.code), tt.now, newCredential(tt.credID, person, tt.now))
			isErr(t, "enrol", err, tt.wantErr)
			if tt.credID != "taken" {
				_, err = s.GetCredential(ctx, []byte(tt.credID))
				isErr(t, "credential must not exist", err, store.ErrNotFound)
			}
			if tt.invite != nil {
				inv, err := s.GetInvite(ctx, tt.invite.CodeHash)
				noErr(t, "get invite", err)
				if got := !inv.UsedAt.IsZero(); got != tt.consumed {
					t.Fatalf("invite consumed = %v, want %v (nothing may change on error)", got, tt.consumed)
				}
			}
		})
	}
	creds, err := s.ListCredentials(ctx, person)
	noErr(t, "list", err)
	if len(creds) != 1 {
		t.Fatalf("refused enrolments left %d credentials, want 1", len(creds))
	}
}

func testInviteConcurrentEnrol(t *testing.T, s Store) {
	ctx := context.Background()
	inv := newInvite("race", "555000000001")
	noErr(t, "create", s.CreateInvite(ctx, inv))

	const n = 10
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			now := t0.Add(time.Minute)
			_, err := s.EnrolWithInvite(ctx, inv.CodeHash, now, newCredential(fmt.Sprintf("race-%d", i), "", now))
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	ok := 0
	for err := range errs {
		switch {
		case err == nil:
			ok++
		case errors.Is(err, store.ErrNotFound):
		default:
			t.Errorf("unexpected error: %v", err)
		}
	}
	if ok != 1 {
		t.Fatalf("%d of %d concurrent enrolments succeeded, want exactly 1", ok, n)
	}
	creds, err := s.ListCredentials(ctx, inv.PersonUID)
	noErr(t, "list", err)
	if len(creds) != 1 {
		t.Fatalf("%d credentials created, want 1", len(creds))
	}
}

func newSession(id string, person string, auth time.Time) authn.Session {
	return authn.Session{
		IDHash:         []byte("hash-of-" + id),
		SID:            "sid-" + id,
		PersonUID:      person,
		CredentialID:   []byte("cred-" + id),
		AAL:            3,
		AMR:            []string{"hwk", "mfa"},
		AuthTime:       auth,
		LastSeenAt:     auth.Add(time.Minute),
		IdleTimeout:    15 * time.Minute,
		ExpiresAt:      auth.Add(12 * time.Hour),
		UserAgent:      "Mozilla/5.0",
		IP:             "192.0.2.10",
		SelectedRoleID: "555000000123",
	}
}

func testSessionRoundTrip(t *testing.T, s Store) {
	ctx := context.Background()
	x := newSession("s1", "555000000001", t0)
	noErr(t, "create", s.CreateSession(ctx, x))

	got, err := s.GetSession(ctx, x.IDHash)
	noErr(t, "get", err)
	equal(t, "session", got, x)
	got.AMR[0] = "mutated"
	bySID, err := s.GetSessionBySID(ctx, x.SID)
	noErr(t, "get by sid", err)
	equal(t, "session by sid", bySID, x)

	dupID := newSession("s2", "555000000001", t0)
	dupID.IDHash = x.IDHash
	isErr(t, "duplicate id hash", s.CreateSession(ctx, dupID), store.ErrExists)
	dupSID := newSession("s3", "555000000001", t0)
	dupSID.SID = x.SID
	isErr(t, "duplicate sid", s.CreateSession(ctx, dupSID), store.ErrExists)
	_, err = s.GetSession(ctx, dupSID.IDHash)
	isErr(t, "session with duplicate sid not stored", err, store.ErrNotFound)

	_, err = s.GetSession(ctx, []byte("nope"))
	isErr(t, "missing", err, store.ErrNotFound)
	_, err = s.GetSessionBySID(ctx, "nope")
	isErr(t, "missing sid", err, store.ErrNotFound)
}

func testSessionUpdate(t *testing.T, s Store) {
	ctx := context.Background()
	x := newSession("s1", "555000000001", t0)
	other := newSession("s2", "555000000001", t0)
	noErr(t, "create", s.CreateSession(ctx, x))
	noErr(t, "create other", s.CreateSession(ctx, other))

	want := x
	want.LastSeenAt = t0.Add(10 * time.Minute)
	want.SelectedRoleID = "555000000456"
	want.AAL = 2
	want.AMR = []string{"swk", "mfa"}
	got, err := s.UpdateSession(ctx, x.IDHash, func(y *authn.Session) error {
		y.IDHash = []byte("ignored")
		y.LastSeenAt = want.LastSeenAt
		y.SelectedRoleID = want.SelectedRoleID
		y.AAL = want.AAL
		y.AMR = want.AMR
		return nil
	})
	noErr(t, "update", err)
	equal(t, "returned", got, want)

	want.EndedAt = t0.Add(time.Hour)
	want.EndReason = "logout"
	got, err = s.UpdateSession(ctx, x.IDHash, func(y *authn.Session) error {
		y.EndedAt = want.EndedAt
		y.EndReason = want.EndReason
		return nil
	})
	noErr(t, "end", err)
	equal(t, "ended", got, want)
	stored, err := s.GetSessionBySID(ctx, x.SID)
	noErr(t, "get ended session", err)
	equal(t, "stored ended session", stored, want)

	_, err = s.UpdateSession(ctx, x.IDHash, func(y *authn.Session) error {
		y.SID = other.SID
		return nil
	})
	isErr(t, "sid taken by another session", err, store.ErrExists)

	_, err = s.UpdateSession(ctx, x.IDHash, func(y *authn.Session) error { y.IP = "x"; return errAbort })
	isErr(t, "aborted", err, errAbort)
	stored, err = s.GetSession(ctx, x.IDHash)
	noErr(t, "get", err)
	equal(t, "stored after failed updates", stored, want)

	_, err = s.UpdateSession(ctx, []byte("nope"), func(*authn.Session) error { return nil })
	isErr(t, "update missing", err, store.ErrNotFound)
}

func testSessionList(t *testing.T, s Store) {
	ctx := context.Background()
	const person = "555000000001"
	older := newSession("older", person, t0)
	newer := newSession("newer", person, t0.Add(time.Hour))
	ended := newSession("ended", person, t0.Add(2*time.Hour))
	ended.EndedAt = t0.Add(3 * time.Hour)
	ended.EndReason = "ra"
	other := newSession("other", "555000000002", t0)
	for _, x := range []authn.Session{older, ended, newer, other} {
		noErr(t, "create", s.CreateSession(ctx, x))
	}
	got, err := s.ListSessions(ctx, person)
	noErr(t, "list", err)
	equal(t, "live sessions, newest first", got, []authn.Session{newer, older})

	none, err := s.ListSessions(ctx, "555000000000")
	noErr(t, "list none", err)
	if len(none) != 0 {
		t.Fatalf("listed %d sessions for a person without any", len(none))
	}
}

func newFlow(id string) authn.Flow {
	return authn.Flow{
		ID:          id,
		BindingHash: []byte("binding-" + id),
		Kind:        "oidc",
		ClientID:    "client-1",
		Request:     "client_id=client-1&response_type=code&scope=openid",
		RequestedAt: t0.Truncate(time.Second),
		MinAAL:      3,
		ForceLogin:  true,
		LoginHint:   "ada@example.nhs.uk",
		ResumeURL:   "/oauth2/authorize?flow=" + id,
		ExpiresAt:   t0.Add(10 * time.Minute),
	}
}

func testFlowRoundTrip(t *testing.T, s Store) {
	ctx := context.Background()
	f := newFlow("f1")
	noErr(t, "create", s.CreateFlow(ctx, f))
	got, err := s.GetFlow(ctx, f.ID, t0)
	noErr(t, "get", err)
	equal(t, "flow", got, f)

	isErr(t, "duplicate", s.CreateFlow(ctx, newFlow("f1")), store.ErrExists)
	_, err = s.GetFlow(ctx, "nope", t0)
	isErr(t, "missing", err, store.ErrNotFound)
}

func testFlowExpiry(t *testing.T, s Store) {
	ctx := context.Background()
	f := newFlow("f1")
	noErr(t, "create", s.CreateFlow(ctx, f))
	tests := []struct {
		name    string
		now     time.Time
		wantErr error
	}{
		{name: "before expiry", now: f.ExpiresAt.Add(-time.Microsecond)},
		{name: "at expiry", now: f.ExpiresAt, wantErr: store.ErrNotFound},
		{name: "after expiry", now: f.ExpiresAt.Add(time.Hour), wantErr: store.ErrNotFound},
		// The zero time means "do not filter on expiry": authn reads that
		// way to tell an expired flow from an unknown one.
		{name: "zero now ignores expiry", now: time.Time{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := s.GetFlow(ctx, f.ID, tt.now)
			if tt.wantErr == nil {
				noErr(t, "get", err)
				return
			}
			isErr(t, "get", err, tt.wantErr)
		})
	}
}

func testFlowUpdateDelete(t *testing.T, s Store) {
	ctx := context.Background()
	f := newFlow("f1")
	noErr(t, "create", s.CreateFlow(ctx, f))

	want := f
	want.SessionSID = "sid-1"
	want.AuthenticatedAt = t0.Add(time.Minute)
	want.SelectedRoleID = "555000000123"
	got, err := s.UpdateFlow(ctx, f.ID, func(x *authn.Flow) error {
		x.ID = "ignored"
		x.SessionSID = want.SessionSID
		x.AuthenticatedAt = want.AuthenticatedAt
		x.SelectedRoleID = want.SelectedRoleID
		return nil
	})
	noErr(t, "update", err)
	equal(t, "returned", got, want)
	stored, err := s.GetFlow(ctx, f.ID, t0)
	noErr(t, "get", err)
	equal(t, "stored", stored, want)

	// SpendFlowLogin changes only the session and its time (and the
	// login challenge, which this flow has none of).
	want.SessionSID, want.AuthenticatedAt = "sid-2", t0.Add(2*time.Minute)
	noErr(t, "spend login", s.SpendFlowLogin(ctx, f.ID, want.SessionSID, want.AuthenticatedAt))
	stored, err = s.GetFlow(ctx, f.ID, t0)
	noErr(t, "get", err)
	equal(t, "stored after spend", stored, want)
	noErr(t, "spend login of an absent flow", s.SpendFlowLogin(ctx, "nope", "sid-3", t0))
	if _, err := s.GetFlow(ctx, "nope", time.Time{}); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("spend login created a flow: %v", err)
	}

	_, err = s.UpdateFlow(ctx, f.ID, func(x *authn.Flow) error { x.Kind = "saml"; return errAbort })
	isErr(t, "aborted", err, errAbort)
	_, err = s.UpdateFlow(ctx, "nope", func(*authn.Flow) error { return nil })
	isErr(t, "update missing", err, store.ErrNotFound)

	noErr(t, "delete", s.DeleteFlow(ctx, f.ID))
	_, err = s.GetFlow(ctx, f.ID, t0)
	isErr(t, "get deleted", err, store.ErrNotFound)
	noErr(t, "delete again (idempotent)", s.DeleteFlow(ctx, f.ID))
}

// testFlowLoginChallenge: a flow keeps its login ceremony's state, set
// only for its own browser while it is unexpired; the sign-in spends it
// once per challenge set; a failed finish drops it; UpdateFlow leaves it.
func testFlowLoginChallenge(t *testing.T, s Store) {
	ctx := context.Background()
	f := newFlow("fc")
	noErr(t, "create", s.CreateFlow(ctx, f))
	exp := t0.Add(5 * time.Minute)

	_, err := s.SetFlowLoginChallenge(ctx, f.ID, []byte("another browser"), []byte("c1"), exp, t0)
	isErr(t, "set for another browser", err, store.ErrNotFound)
	_, err = s.SetFlowLoginChallenge(ctx, f.ID, f.BindingHash, []byte("c1"), exp, f.ExpiresAt)
	isErr(t, "set on an expired flow", err, store.ErrNotFound)
	_, err = s.SetFlowLoginChallenge(ctx, "nope", f.BindingHash, []byte("c1"), exp, t0)
	isErr(t, "set on an absent flow", err, store.ErrNotFound)
	stored, err := s.GetFlow(ctx, f.ID, t0)
	noErr(t, "get", err)
	equal(t, "flow after refused sets", stored, f)

	want := f
	want.LoginChallenge, want.LoginChallengeExpiresAt = []byte("c1"), exp
	got, err := s.SetFlowLoginChallenge(ctx, f.ID, f.BindingHash, []byte("c1"), exp, t0)
	noErr(t, "set", err)
	equal(t, "returned", got, want)
	stored, err = s.GetFlow(ctx, f.ID, t0)
	noErr(t, "get", err)
	equal(t, "stored", stored, want)

	got, err = s.UpdateFlow(ctx, f.ID, func(x *authn.Flow) error {
		x.SelectedRoleID = "role-1"
		x.LoginChallenge = []byte("ignored")
		return nil
	})
	noErr(t, "update", err)
	want.SelectedRoleID = "role-1"
	equal(t, "update leaves the challenge", got, want)

	noErr(t, "drop", s.DropFlowLoginChallenge(ctx, f.ID))
	want.LoginChallenge, want.LoginChallengeExpiresAt = nil, time.Time{}
	stored, err = s.GetFlow(ctx, f.ID, t0)
	noErr(t, "get", err)
	equal(t, "dropped", stored, want)
	noErr(t, "drop again", s.DropFlowLoginChallenge(ctx, f.ID))
	noErr(t, "drop on an absent flow", s.DropFlowLoginChallenge(ctx, "nope"))

	// Spent once per challenge set: a second spend (a replay) fails.
	_, err = s.SetFlowLoginChallenge(ctx, f.ID, f.BindingHash, []byte("c2"), exp, t0)
	noErr(t, "set again", err)
	noErr(t, "spend", s.SpendFlowLogin(ctx, f.ID, "sid-1", t0.Add(time.Minute)))
	want.SessionSID, want.AuthenticatedAt = "sid-1", t0.Add(time.Minute)
	stored, err = s.GetFlow(ctx, f.ID, t0)
	noErr(t, "get", err)
	equal(t, "spent", stored, want)
	isErr(t, "spend again", s.SpendFlowLogin(ctx, f.ID, "sid-2", t0.Add(2*time.Minute)), store.ErrConflict)
	stored, err = s.GetFlow(ctx, f.ID, t0)
	noErr(t, "get", err)
	equal(t, "after the refused spend", stored, want)
	// A new ceremony on the flow can be spent again.
	_, err = s.SetFlowLoginChallenge(ctx, f.ID, f.BindingHash, []byte("c3"), exp, t0)
	noErr(t, "set a third", err)
	noErr(t, "spend the third", s.SpendFlowLogin(ctx, f.ID, "sid-3", t0.Add(3*time.Minute)))

	// A flow ended in its finish reads as expired from then on, and a
	// finish that read it before still cannot spend it again.
	end := t0.Add(4 * time.Minute)
	noErr(t, "end", s.EndFlow(ctx, f.ID, end))
	_, err = s.GetFlow(ctx, f.ID, end)
	isErr(t, "get an ended flow", err, store.ErrNotFound)
	stored, err = s.GetFlow(ctx, f.ID, time.Time{})
	noErr(t, "get an ended flow at any time", err)
	want.SessionSID, want.AuthenticatedAt, want.ExpiresAt = "sid-3", t0.Add(3*time.Minute), end
	equal(t, "ended", stored, want)
	isErr(t, "spend an ended flow", s.SpendFlowLogin(ctx, f.ID, "sid-4", end), store.ErrConflict)
	_, err = s.SetFlowLoginChallenge(ctx, f.ID, f.BindingHash, []byte("c4"), exp, end)
	isErr(t, "a new ceremony on an ended flow", err, store.ErrNotFound)
	noErr(t, "end an absent flow", s.EndFlow(ctx, "nope", end))
}

// testFlowLoginChallengeMade: a flow created with its login challenge and
// request options keeps both until the challenge is set again, spent or
// dropped, each of which clears the options; UpdateFlow leaves them.
func testFlowLoginChallengeMade(t *testing.T, s Store) {
	ctx := context.Background()
	exp := t0.Add(5 * time.Minute)
	made := func(id string) authn.Flow {
		f := newFlow(id)
		f.LoginChallenge, f.LoginChallengeExpiresAt = []byte("c0"), exp
		f.LoginOptions = []byte(`{"publicKey":{"challenge":"c0"}}`)
		noErr(t, "create "+id, s.CreateFlow(ctx, f))
		stored, err := s.GetFlow(ctx, id, t0)
		noErr(t, "get "+id, err)
		equal(t, "created with its challenge", stored, f)
		return f
	}

	f := made("fm1")
	got, err := s.UpdateFlow(ctx, f.ID, func(x *authn.Flow) error {
		x.SelectedRoleID = "role-1"
		x.LoginOptions = []byte("ignored")
		return nil
	})
	noErr(t, "update", err)
	want := f
	want.SelectedRoleID = "role-1"
	equal(t, "update leaves the options", got, want)
	got, err = s.SetFlowLoginChallenge(ctx, f.ID, f.BindingHash, []byte("c1"), exp, t0)
	noErr(t, "set", err)
	want.LoginChallenge, want.LoginOptions = []byte("c1"), nil
	equal(t, "a new challenge clears the options", got, want)

	f = made("fm2")
	noErr(t, "spend", s.SpendFlowLogin(ctx, f.ID, "sid-1", t0.Add(time.Minute)))
	stored, err := s.GetFlow(ctx, f.ID, t0)
	noErr(t, "get", err)
	want = f
	want.SessionSID, want.AuthenticatedAt = "sid-1", t0.Add(time.Minute)
	want.LoginChallenge, want.LoginChallengeExpiresAt, want.LoginOptions = nil, time.Time{}, nil
	equal(t, "spent", stored, want)
	isErr(t, "spend again", s.SpendFlowLogin(ctx, f.ID, "sid-2", t0.Add(time.Minute)), store.ErrConflict)

	f = made("fm3")
	noErr(t, "drop", s.DropFlowLoginChallenge(ctx, f.ID))
	stored, err = s.GetFlow(ctx, f.ID, t0)
	noErr(t, "get", err)
	want = f
	want.LoginChallenge, want.LoginChallengeExpiresAt, want.LoginOptions = nil, time.Time{}, nil
	equal(t, "dropped", stored, want)
}

func testChallengeTake(t *testing.T, s Store) {
	ctx := context.Background()
	data := []byte(`{"challenge":"abc","user_id":"x"}`)
	noErr(t, "put", s.PutChallenge(ctx, "k1", data, t0.Add(5*time.Minute)))
	data[0] = '!' // the store must have copied it

	got, err := s.TakeChallenge(ctx, "k1", t0)
	noErr(t, "take", err)
	equal(t, "data", string(got), `{"challenge":"abc","user_id":"x"}`)
	_, err = s.TakeChallenge(ctx, "k1", t0)
	isErr(t, "second take", err, store.ErrNotFound)
	_, err = s.TakeChallenge(ctx, "nope", t0)
	isErr(t, "missing", err, store.ErrNotFound)

	noErr(t, "put", s.PutChallenge(ctx, "k2", []byte("first"), t0.Add(time.Minute)))
	noErr(t, "put again replaces", s.PutChallenge(ctx, "k2", []byte("second"), t0.Add(time.Minute)))
	got, err = s.TakeChallenge(ctx, "k2", t0)
	noErr(t, "take replaced", err)
	equal(t, "replaced data", string(got), "second")
}

func testChallengeExpiry(t *testing.T, s Store) {
	ctx := context.Background()
	exp := t0.Add(time.Minute)
	tests := []struct {
		name    string
		now     time.Time
		wantErr error
	}{
		{name: "before expiry", now: exp.Add(-time.Microsecond)},
		{name: "at expiry", now: exp, wantErr: store.ErrNotFound},
		{name: "after expiry", now: exp.Add(time.Hour), wantErr: store.ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key := "k-" + tt.name
			noErr(t, "put", s.PutChallenge(ctx, key, []byte("d"), exp))
			_, err := s.TakeChallenge(ctx, key, tt.now)
			if tt.wantErr == nil {
				noErr(t, "take", err)
			} else {
				isErr(t, "take", err, tt.wantErr)
			}
			_, err = s.TakeChallenge(ctx, key, exp.Add(-time.Hour))
			isErr(t, "a challenge is gone after one take, expired or not", err, store.ErrNotFound)
		})
	}
}

func testChallengeConcurrentTake(t *testing.T, s Store) {
	ctx := context.Background()
	noErr(t, "put", s.PutChallenge(ctx, "race", []byte("d"), t0.Add(time.Minute)))
	const n = 10
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Go(func() {
			_, err := s.TakeChallenge(ctx, "race", t0)
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	ok := 0
	for err := range errs {
		if err == nil {
			ok++
		} else if !errors.Is(err, store.ErrNotFound) {
			t.Errorf("unexpected error: %v", err)
		}
	}
	if ok != 1 {
		t.Fatalf("%d of %d concurrent takes succeeded, want 1", ok, n)
	}
}

func ptr[T any](v T) *T { return &v }
