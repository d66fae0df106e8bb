package loadgen

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/mail"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/ory/fosite"

	"github.com/nhsid/nhsid/idp"
	"github.com/nhsid/nhsid/internal/testdb"
	"github.com/nhsid/nhsid/policy"
	"github.com/nhsid/nhsid/store/postgres"
)

// TestCheckDatabaseLoopback: the seeder only writes to local databases.
func TestCheckDatabaseLoopback(t *testing.T) {
	for _, tc := range []struct {
		url string
		ok  bool
	}{
		{"postgres://postgres@127.0.0.1:5432/nhsid?sslmode=disable", true},
		{"postgres://postgres@localhost/nhsid", true},
		{"postgres://postgres@[::1]:5432/nhsid", true},
		{"postgres:///nhsid?host=/var/run/postgresql", true},
		{"host=127.0.0.1 dbname=nhsid user=postgres", true},
		{"postgres://postgres@10.1.2.3:5432/nhsid", false},
		{"postgres://postgres@db.example.nhs.uk/nhsid", false},
		{"postgres://postgres@127.0.0.1,10.1.2.3/nhsid", false},
		{"host=192.168.0.5 dbname=nhsid", false},
		{"", false},
	} {
		err := CheckDatabaseLoopback(tc.url)
		if (err == nil) != tc.ok {
			t.Errorf("CheckDatabaseLoopback(%q) = %v, want ok=%v", tc.url, err, tc.ok)
		}
	}
}

// TestSeedBounds: out-of-bounds counts are refused before connecting.
func TestSeedBounds(t *testing.T) {
	db := "postgres://postgres@127.0.0.1:1/none"
	for _, tc := range []struct {
		o    SeedOptions
		want string
	}{
		{SeedOptions{DatabaseURL: db, Persons: MaxSeedPersons + 1}, "persons must be"},
		{SeedOptions{DatabaseURL: db, Tokens: MaxSeedTokens + 1}, "tokens must be"},
		{SeedOptions{DatabaseURL: db, Persons: -1}, "persons must be"},
		{SeedOptions{DatabaseURL: db, Orgs: MaxSeedOrgs + 1}, "orgs must be"},
		{SeedOptions{DatabaseURL: "postgres://postgres@10.0.0.1/x", Persons: 1}, "not a loopback"},
	} {
		_, err := Seed(context.Background(), tc.o)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Seed(%+v) = %v, want %q", tc.o, err, tc.want)
		}
	}
}

// TestSessionTemplate: a filled template is the same JSON document as
// marshalling the session, and decodes into nhsid's session type.
func TestSessionTemplate(t *testing.T) {
	auth := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	x := sessionValues{subject: "359701966904", sid: "oRqLX66anOa83F3ePSjEYg", role: "123456789012", ial: 3,
		authTime: auth, rat: auth.Add(time.Minute), expCode: auth.Add(6*time.Minute + 123456789),
		expAccess: auth.Add(time.Hour), expRefresh: auth.Add(12 * time.Hour)}
	const client = `rp-"quoted"-client`
	for _, exp := range []sessionExp{expCode, expAccess, expRefresh} {
		for _, aal3 := range []bool{false, true} {
			for _, role := range []bool{false, true} {
				v := sessionVariant{exp: exp, aal3: aal3, role: role}
				tmpl, err := newSessionTemplate(client, v)
				if err != nil {
					t.Fatal(err)
				}
				got := tmpl.fill(nil, x)
				want, err := json.Marshal(seedSession(client, v, x))
				if err != nil {
					t.Fatal(err)
				}
				var g, w any
				if err := json.Unmarshal(got, &g); err != nil {
					t.Fatalf("%+v: filled template is not JSON: %v\n%s", v, err, got)
				}
				if err := json.Unmarshal(want, &w); err != nil {
					t.Fatal(err)
				}
				if !reflect.DeepEqual(g, w) {
					t.Fatalf("%+v: template\n%s\nwant\n%s", v, got, want)
				}
				s := idp.NewSession()
				if err := json.Unmarshal(got, s); err != nil {
					t.Fatalf("%+v: decode into idp.Session: %v", v, err)
				}
				if s.Subject != x.subject || s.SID != x.sid || s.ClientID != client || s.IDTokenClaims().Subject != x.subject ||
					!s.GetExpiresAt(fosite.AuthorizeCode).Equal(x.expCode) {
					t.Fatalf("%+v: decoded session %+v", v, s)
				}
				if role != (s.SelectedRoleID == x.role) {
					t.Fatalf("%+v: selected role %q", v, s.SelectedRoleID)
				}
			}
		}
	}
}

// TestSeed seeds a small database next to real rows and checks that
// nhsid's store reads the seeded rows, that every row is well-formed, that
// a second run adds nothing and that --clean removes exactly the seeded
// rows.
func TestSeed(t *testing.T) {
	ctx := context.Background()
	dbURL := testdb.URL(t)
	pool, err := pgxpool.New(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	st := postgres.New(pool)

	// Without a client, a token seed fails before writing anything.
	_, err = Seed(ctx, SeedOptions{DatabaseURL: dbURL, Persons: 10, Tokens: 10})
	if err == nil || !strings.Contains(err.Error(), "no clients") {
		t.Fatalf("seed without clients: %v", err)
	}
	if n := seedCount(t, pool, `SELECT count(*) FROM people`); n != 0 {
		t.Fatalf("failed seed wrote %d people", n)
	}

	// Real rows, which the seed must leave alone.
	if err := st.PutCatalogue(ctx, policy.SampleCatalogue()); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	seedMust(t, st.CreateOrganisation(ctx, policy.Organisation{Code: "RX1", Name: "Real Trust", CreatedAt: now}))
	real := policy.Person{UID: "123456789012", GivenName: "Real", FamilyName: "Person", Email: "real@example.nhs.uk",
		IDAssuranceLevel: 3, Status: policy.StatusActive, CreatedAt: now, UpdatedAt: now}
	seedMust(t, st.CreatePerson(ctx, real))
	orgID, err := st.EnsurePersonOrgID(ctx, real.UID, "RX1", "223456789012")
	seedMust(t, err)
	seedMust(t, st.CreatePosition(ctx, policy.Position{RoleID: "323456789012", OrgID: orgID, PersonUID: real.UID, OrgCode: "RX1",
		RoleCode: policy.SampleClinicalRole, CreatedBy: "test", CreatedAt: now}))
	client := &idp.Client{ID: "seed-test-rp", Name: "Seed test RP", RedirectURIs: []string{"https://rp.example/cb"},
		GrantTypes: []string{"authorization_code", "refresh_token"}, ResponseTypes: []string{"code"},
		Scope: "openid profile offline_access", TokenEndpointAuthMethod: "none", CreatedAt: now, UpdatedAt: now}
	seedMust(t, st.CreateClient(ctx, client))
	realReq := fosite.NewRequest()
	realReq.ID, realReq.RequestedAt, realReq.Client = "real-request", now, client
	realSess := idp.NewSession()
	realSess.Subject, realSess.SID = real.UID, "real-sid"
	realSess.SetExpiresAt(fosite.AccessToken, now.Add(time.Hour))
	realReq.Session = realSess
	seedMust(t, st.CreateAccessTokenSession(ctx, "real-signature", realReq))

	// Seed in small batches, so grants and people cross batch boundaries.
	const persons, tokens, orgs = 2000, 10000, 50
	sigs := map[string][]string{}
	res, err := Seed(ctx, SeedOptions{DatabaseURL: dbURL, Persons: persons, Tokens: tokens, Orgs: orgs, BatchSize: 777,
		onToken: func(kind, sig string) { sigs[kind] = append(sigs[kind], sig) }})
	if err != nil {
		t.Fatal(err)
	}
	t.Log(res)
	if res.Persons != persons || res.Positions != persons || res.Orgs != orgs || res.Tokens != tokens || res.ClientID != client.ID {
		t.Fatalf("result %+v", res)
	}
	sum := 0
	for _, k := range seedKinds {
		if res.TokensByKind[k] == 0 {
			t.Errorf("no %s rows seeded: %v", k, res.TokensByKind)
		}
		if n := seedCount(t, pool, `SELECT count(*) FROM oauth_tokens WHERE kind = $1 AND request_id LIKE 'seed-%'`, k); n != res.TokensByKind[k] {
			t.Errorf("%s: %d rows, result says %d", k, n, res.TokensByKind[k])
		}
		sum += res.TokensByKind[k]
	}
	if sum != tokens {
		t.Errorf("kinds add up to %d", sum)
	}
	if res.TokensByKind["access"]+res.TokensByKind["refresh"] < tokens*3/4 {
		t.Errorf("access and refresh should dominate: %v", res.TokensByKind)
	}
	for q, want := range map[string]int{
		`SELECT count(*) FROM people`:        persons + 1,
		`SELECT count(*) FROM person_orgs`:   persons + 1,
		`SELECT count(*) FROM positions`:     persons + 1,
		`SELECT count(*) FROM organisations`: orgs + 1,
		`SELECT count(*) FROM oauth_tokens`:  tokens + 1,
	} {
		if n := seedCount(t, pool, q); n != want {
			t.Errorf("%s = %d, want %d", q, n, want)
		}
	}
	if n := seedCount(t, pool, `SELECT count(DISTINCT subject) FROM oauth_tokens`); n < persons/2 {
		t.Errorf("token subjects cover only %d people", n)
	}

	// Seeded people, positions and organisations read back through the
	// store look like real ones.
	people, err := st.ListPeople(ctx, "", 0)
	seedMust(t, err)
	if len(people) != persons+1 {
		t.Fatalf("ListPeople: %d", len(people))
	}
	regKinds := map[string]bool{"gmc": true, "nmc": true, "gphc": true}
	for _, p := range people {
		if p.UID == real.UID {
			continue
		}
		if len(p.UID) != 12 || p.UID[0] == '0' || strings.Trim(p.UID, "0123456789") != "" {
			t.Fatalf("uid %q", p.UID)
		}
		a, err := mail.ParseAddress(p.Email)
		if err != nil || a.Address != p.Email || !strings.HasSuffix(p.Email, "@"+SeedEmailDomain) {
			t.Fatalf("email %q: %v", p.Email, err)
		}
		if p.GivenName == "" || p.FamilyName == "" || p.DisplayName == "" || p.IDAssuranceLevel < 1 || p.IDAssuranceLevel > 3 ||
			(p.Status != policy.StatusActive && p.Status != policy.StatusClosed) || p.CreatedAt.IsZero() || p.UpdatedAt.Before(p.CreatedAt) {
			t.Fatalf("person %+v", p)
		}
		for k := range p.Registrations {
			if !regKinds[k] {
				t.Fatalf("registration %q", k)
			}
		}
	}
	idx := policy.NewIndex(policy.SampleCatalogue())
	for _, i := range []int{0, 1, 776, 777, persons - 1} {
		uid := SeedPersonUID(i)
		p, err := st.GetPerson(ctx, uid)
		seedMust(t, err)
		pos, err := st.ListPositions(ctx, uid)
		seedMust(t, err)
		if len(pos) != 1 {
			t.Fatalf("person %s: %d positions", uid, len(pos))
		}
		role, ok := idx.Roles[pos[0].RoleCode]
		if !ok || role.RALevel != "" || !strings.HasPrefix(pos[0].OrgCode, SeedOrgPrefix) || pos[0].OrgName == "" ||
			pos[0].CreatedBy != SeedActor || (p.Status == policy.StatusClosed) != !pos[0].EndedAt.IsZero() {
			t.Fatalf("person %s position %+v", uid, pos[0])
		}
		if _, err := st.GetOrganisation(ctx, pos[0].OrgCode); err != nil {
			t.Fatal(err)
		}
	}

	// Every seeded position has its person_orgs row, in an organisation.
	if n := seedCount(t, pool, `SELECT count(*) FROM positions p WHERE p.created_by = $1 AND NOT EXISTS (
		SELECT 1 FROM person_orgs po JOIN organisations o ON o.code = po.org_code
		WHERE po.person_orgid = p.person_orgid AND po.person_uid = p.person_uid AND po.org_code = p.org_code)`, SeedActor); n != 0 {
		t.Fatalf("%d seeded positions without a matching person_orgs row", n)
	}

	// A quarter of the rows are client_credentials tokens, and most of
	// them went into the room left in the grants' pages, not at the heap's
	// end (see seedTokens).
	if res.ServiceTokens != tokens/seedServiceShare || len(sigs[SeedServiceKind]) != res.ServiceTokens {
		t.Fatalf("%d service tokens (%d signatures), want %d", res.ServiceTokens, len(sigs[SeedServiceKind]), tokens/seedServiceShare)
	}
	service := seedCount(t, pool, `SELECT count(*) FROM oauth_tokens WHERE request_id LIKE 'seed-%' AND form_data = 'grant_type=client_credentials'`)
	if service != res.ServiceTokens {
		t.Fatalf("%d service token rows, result says %d", service, res.ServiceTokens)
	}
	shared := seedCount(t, pool, `SELECT count(*) FROM oauth_tokens s WHERE s.request_id LIKE 'seed-%'
		AND s.form_data = 'grant_type=client_credentials' AND EXISTS (SELECT 1 FROM oauth_tokens g
		WHERE (g.ctid::text::point)[0] = (s.ctid::text::point)[0] AND g.request_id LIKE 'seed-%' AND g.sid <> '')`)
	if shared < service/2 {
		t.Errorf("only %d of %d service tokens share a page with a grant's rows", shared, service)
	}

	// Every seeded token row is well-formed.
	if n := seedCount(t, pool, `SELECT count(*) FROM oauth_tokens t,
		LATERAL (SELECT convert_from(t.session, 'UTF8')::jsonb AS session) j
		WHERE t.request_id LIKE 'seed-%' AND NOT (t.form_data = 'grant_type=client_credentials' AND
		t.kind = 'access' AND t.client_id = $1 AND t.subject = $1 AND t.sid = '' AND t.active
		AND length(t.signature_hash) = 32 AND length(t.request_id) = 41 AND cardinality(t.scopes) = 0
		AND j.session->>'subject' = t.subject AND j.session->>'client_id' = t.client_id
		AND j.session->'accessToken'->'Extra'->>'client_id' = t.client_id
		AND (j.session->'expires_at'->>'access_token')::timestamptz = t.expires_at
		AND NOT j.session->'expires_at' ? 'authorize_code' AND t.access_signature_hash IS NULL
		AND t.created_at >= t.requested_at) AND NOT (
		t.client_id = $1 AND length(t.signature_hash) = 32 AND length(t.request_id) = 41
		AND EXISTS (SELECT 1 FROM people p WHERE p.uid = t.subject AND p.email LIKE '%@seed.nhsid.invalid')
		AND t.sid <> '' AND j.session->>'subject' = t.subject AND j.session->>'sid' = t.sid
		AND j.session->>'client_id' = t.client_id AND j.session->'id_token_claims'->'ext'->>'sid' = t.sid
		AND j.session->'expires_at' ? 'authorize_code' AND t.expires_at IS NOT NULL
		AND cardinality(t.scopes) > 0 AND t.scopes = t.granted_scopes AND t.form_data LIKE 'client_id=' || t.client_id || '&%'
		AND t.created_at >= t.requested_at
		AND (t.kind <> 'access' OR (j.session->'expires_at'->>'access_token')::timestamptz = t.expires_at)
		AND (t.kind <> 'refresh' OR ((j.session->'expires_at'->>'refresh_token')::timestamptz = t.expires_at
			AND EXISTS (SELECT 1 FROM oauth_tokens a WHERE a.kind = 'access' AND a.signature_hash = t.access_signature_hash
				AND a.request_id = t.request_id)))
		AND (t.kind = 'refresh' OR t.access_signature_hash IS NULL)
		AND (t.kind IN ('access', 'refresh') OR (j.session->'expires_at'->>'authorize_code')::timestamptz = t.expires_at))`,
		client.ID); n != 0 {
		t.Fatalf("%d malformed seeded token rows", n)
	}
	for q, name := range map[string]string{
		`SELECT count(*) FROM oauth_tokens WHERE kind = 'access' AND expires_at > now()`:                                             "live access tokens",
		`SELECT count(*) FROM oauth_tokens WHERE kind = 'access' AND expires_at <= now()`:                                            "expired access tokens",
		`SELECT count(*) FROM oauth_tokens WHERE kind = 'refresh' AND active AND expires_at > now()`:                                 "live refresh tokens",
		`SELECT count(*) FROM oauth_tokens WHERE kind = 'refresh' AND NOT active`:                                                    "rotated or revoked refresh tokens",
		`SELECT count(*) FROM oauth_tokens WHERE kind = 'authorize_code' AND NOT active`:                                             "used codes",
		`SELECT count(*) FROM oauth_tokens WHERE convert_from(session, 'UTF8')::jsonb->'id_token_claims'->'ext' ? 'selected_roleid'`: "sessions with a role",
	} {
		if seedCount(t, pool, q) == 0 {
			t.Errorf("no %s", name)
		}
	}

	// The store reads seeded tokens by signature, and each answer matches
	// the row's state.
	const sample = 200
	checkRead := func(kind string, get func(sig string) (fosite.Requester, error)) {
		t.Helper()
		ok := 0
		for _, sig := range sigs[kind][:min(sample, len(sigs[kind]))] {
			req, err := get(sig)
			switch {
			case err == nil:
				ok++
				s, _ := req.GetSession().(*idp.Session)
				if s == nil || s.SID == "" || req.GetClient().GetID() != client.ID || !strings.HasPrefix(req.GetID(), SeedRequestPrefix) {
					t.Fatalf("%s: request %+v", kind, req)
				}
				if _, err := st.GetPerson(ctx, s.Subject); err != nil {
					t.Fatalf("%s subject: %v", kind, err)
				}
			case errors.Is(err, fosite.ErrNotFound), errors.Is(err, fosite.ErrInactiveToken),
				errors.Is(err, fosite.ErrInvalidatedAuthorizeCode):
			default:
				t.Fatalf("%s: %v", kind, err)
			}
		}
		if ok == 0 && kind != "pkce" && kind != "oidc" && kind != "authorize_code" {
			t.Errorf("%s: no live rows among %d read", kind, sample)
		}
	}
	checkRead("access", func(sig string) (fosite.Requester, error) {
		return st.GetAccessTokenSession(ctx, sig, idp.NewSession())
	})
	checkRead("refresh", func(sig string) (fosite.Requester, error) {
		return st.GetRefreshTokenSession(ctx, sig, idp.NewSession())
	})
	checkRead("authorize_code", func(sig string) (fosite.Requester, error) {
		return st.GetAuthorizeCodeSession(ctx, sig, idp.NewSession())
	})
	checkRead("pkce", func(sig string) (fosite.Requester, error) {
		return st.GetPKCERequestSession(ctx, sig, idp.NewSession())
	})
	checkRead("oidc", func(sig string) (fosite.Requester, error) {
		return st.GetOpenIDConnectSession(ctx, sig, &fosite.Request{Session: idp.NewSession()})
	})

	live := 0
	for _, sig := range sigs[SeedServiceKind][:min(sample, len(sigs[SeedServiceKind]))] {
		req, err := st.GetAccessTokenSession(ctx, sig, idp.NewSession())
		switch {
		case err == nil:
			live++
			s, _ := req.GetSession().(*idp.Session)
			if s == nil || s.Subject != client.ID || s.SID != "" || req.GetClient().GetID() != client.ID ||
				req.GetRequestForm().Get("grant_type") != "client_credentials" {
				t.Fatalf("service token: request %+v", req)
			}
		case errors.Is(err, fosite.ErrNotFound), errors.Is(err, fosite.ErrInactiveToken):
		default:
			t.Fatalf("service token: %v", err)
		}
	}
	if live == 0 {
		t.Errorf("no live service tokens among %d read", sample)
	}

	// Running again tops up: nothing is missing, so nothing is added.
	again, err := Seed(ctx, SeedOptions{DatabaseURL: dbURL, Persons: persons, Tokens: tokens, Orgs: orgs})
	seedMust(t, err)
	if again.Persons != 0 || again.Tokens != 0 || again.ExistingPersons != persons || again.ExistingTokens != tokens {
		t.Fatalf("second run: %+v", again)
	}

	// Clean removes exactly the seeded rows.
	cr, err := CleanSeed(ctx, dbURL, nil)
	seedMust(t, err)
	if cr.Persons != persons || cr.Tokens != tokens || cr.Positions != persons || cr.PersonOrgs != persons || cr.Orgs != orgs {
		t.Fatalf("clean: %+v", cr)
	}
	for _, tbl := range []string{"people", "person_orgs", "positions", "organisations", "oauth_tokens"} {
		if n := seedCount(t, pool, `SELECT count(*) FROM `+tbl); n != 1 {
			t.Errorf("after clean %s holds %d rows, want the real one", tbl, n)
		}
	}
	if _, err := st.GetPerson(ctx, real.UID); err != nil {
		t.Fatal(err)
	}
	if pos, err := st.ListPositions(ctx, real.UID); err != nil || len(pos) != 1 {
		t.Fatalf("real positions after clean: %v %v", pos, err)
	}
	if _, err := st.GetAccessTokenSession(ctx, "real-signature", idp.NewSession()); err != nil {
		t.Fatalf("real token after clean: %v", err)
	}
}

func seedCount(t *testing.T, pool *pgxpool.Pool, q string, args ...any) int {
	t.Helper()
	var n int
	if err := pool.QueryRow(context.Background(), q, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return n
}

func seedMust(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(fmt.Errorf("unexpected: %w", err))
	}
}
