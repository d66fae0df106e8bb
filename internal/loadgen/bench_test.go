package loadgen

// Microbenchmarks of nhsid's hot paths, benchstat-friendly:
//
//	go test ./internal/loadgen -run '^$' -bench . -count 6 | tee new.txt
//	benchstat old.txt new.txt
//
// Auditing has its own benchmark (internal/e2e BenchmarkTokenAudit, on and
// off on both stores); it is not repeated here.

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"fmt"
	"net/url"
	"reflect"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v3"
	"github.com/go-jose/go-jose/v3/jwt"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/ory/fosite"
	"github.com/ory/fosite/handler/openid"

	"github.com/nhsid/nhsid/authn"
	"github.com/nhsid/nhsid/idp"
	"github.com/nhsid/nhsid/internal/testdb"
	"github.com/nhsid/nhsid/policy"
	"github.com/nhsid/nhsid/store/memory"
	"github.com/nhsid/nhsid/store/postgres"
)

// BenchmarkSign signs a typical ID token the way idp's key signer does
// (go-jose, RSA-2048 for RS256, P-256 for ES256).
func BenchmarkSign(b *testing.B) {
	rk, _ := rsa.GenerateKey(rand.Reader, 2048)
	ek, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	for _, tc := range []struct {
		alg jose.SignatureAlgorithm
		key any
	}{{jose.RS256, rk}, {jose.ES256, ek}} {
		b.Run(string(tc.alg), func(b *testing.B) {
			sig, err := jose.NewSigner(jose.SigningKey{Algorithm: tc.alg, Key: tc.key}, (&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", "k1"))
			if err != nil {
				b.Fatal(err)
			}
			now := time.Now()
			claims := map[string]any{"iss": "http://localhost:8080", "sub": "555000000001", "aud": []string{"client"},
				"exp": now.Add(time.Hour).Unix(), "iat": now.Unix(), "auth_time": now.Unix(), "nonce": "n-0S6_WzA2Mj",
				"acr": "AAL3_ANY", "amr": []string{"hwk", "mfa"}, "sid": "8Hc3xv2bAq", "at_hash": "x8Jd0-3kq", "nhsid_useruid": "555000000001",
				"id_assurance_level": "3", "authentication_assurance_level": "3"}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := jwt.Signed(sig).Claims(claims).CompactSerialize(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// roleStore is what the role-claim and session benchmarks need.
type roleStore interface {
	policy.Store
	policy.RBACStore
	authn.SessionStore
}

func benchStores(b *testing.B) map[string]func() roleStore {
	return map[string]func() roleStore{
		"memory": func() roleStore { return memory.New() },
		"postgres": func() roleStore {
			pool, err := pgxpool.New(context.Background(), testdb.URL(b))
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(pool.Close)
			return postgres.New(pool)
		},
	}
}

// BenchmarkRoleClaims builds the national RBAC claims (roles,
// organisations, memberships) of a person with many active positions.
func BenchmarkRoleClaims(b *testing.B) {
	for _, backend := range []string{"memory", "postgres"} {
		for _, n := range []int{1, 50} {
			b.Run(fmt.Sprintf("%s/positions=%d", backend, n), func(b *testing.B) {
				ctx := context.Background()
				st := benchStores(b)[backend]()
				svc := &policy.Service{Store: st, Now: time.Now, Rand: rand.Reader}
				if err := st.PutCatalogue(ctx, policy.SampleCatalogue()); err != nil {
					b.Fatal(err)
				}
				p, err := svc.CreatePerson(ctx, policy.Person{GivenName: "Ada", FamilyName: "Lovelace"})
				if err != nil {
					b.Fatal(err)
				}
				op := policy.OperatorActor("operator:bench")
				roles := []string{policy.SampleClinicalRole, policy.SampleAdminRole, policy.SampleNurseRole, policy.SamplePharmacist}
				for i := 0; i < n; i++ {
					code := fmt.Sprintf("B%04d", i)
					if i%5 == 0 || i == n-1 {
						if _, err := svc.CreateOrganisation(ctx, policy.Organisation{Code: code, Name: "Organisation " + code}); err != nil {
							b.Fatal(err)
						}
					} else {
						code = fmt.Sprintf("B%04d", i-i%5)
					}
					in := policy.PositionInput{OrgCode: code, RoleCode: roles[i%len(roles)]}
					if roles[i%len(roles)] == policy.SampleClinicalRole {
						in.ActivityCodes = []string{"B0068", "B0825"}
						in.WorkgroupCodes = []string{"W100001"}
						in.AreaOfWorkCodes = []string{"P0010:Q0100:T1000"}
					}
					if _, err := svc.AssignPosition(ctx, op, p.UID, in); err != nil {
						b.Fatal(err)
					}
				}
				src := idp.RoleClaims{Roles: svc}
				scopes := fosite.Arguments{"openid", "nationalrbacaccess", "associatedorgs", "organisationalmemberships"}
				b.ReportAllocs()
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					out, err := src.Claims(ctx, p, scopes, nil)
					if err != nil {
						b.Fatal(err)
					}
					if i == 0 && reflect.ValueOf(out["nhsid_nrbac_roles"]).Len() != n {
						b.Fatalf("roles: %v", out["nhsid_nrbac_roles"])
					}
				}
			})
		}
	}
}

// BenchmarkSessionLookup reads an SSO session by its cookie hash, as every
// authorize request with a session does.
func BenchmarkSessionLookup(b *testing.B) {
	for _, backend := range []string{"memory", "postgres"} {
		b.Run(backend, func(b *testing.B) {
			ctx := context.Background()
			st := benchStores(b)[backend]()
			svc := &policy.Service{Store: st, Now: time.Now, Rand: rand.Reader}
			p, err := svc.CreatePerson(ctx, policy.Person{GivenName: "Ada", FamilyName: "Lovelace"})
			if err != nil {
				b.Fatal(err)
			}
			now := time.Now().UTC().Truncate(time.Microsecond)
			hashes := make([][]byte, 1000)
			for i := range hashes {
				h := sha256.Sum256([]byte(randString(32)))
				hashes[i] = h[:]
				err := st.CreateSession(ctx, authn.Session{IDHash: h[:], SID: randString(16), PersonUID: p.UID, AAL: 3,
					AMR: []string{"hwk", "mfa"}, AuthTime: now, LastSeenAt: now, IdleTimeout: 15 * time.Minute, ExpiresAt: now.Add(12 * time.Hour)})
				if err != nil {
					b.Fatal(err)
				}
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := st.GetSession(ctx, hashes[i%len(hashes)]); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkFositeStore times the PostgreSQL store calls fosite makes per
// token request: create an access token, read one (introspection), and a
// refresh rotation (read, rotate, create access and refresh).
func BenchmarkFositeStore(b *testing.B) {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, testdb.URL(b))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(pool.Close)
	st := postgres.New(pool)
	c := &idp.Client{ID: "bench-client", Name: "bench", RedirectURIs: []string{"https://rp.example/cb"},
		GrantTypes: []string{"authorization_code", "refresh_token"}, ResponseTypes: []string{"code"},
		Scope: "openid profile offline_access", TokenEndpointAuthMethod: "client_secret_basic", SecretHash: []byte("h"),
		CreatedAt: time.Now().UTC().Truncate(time.Microsecond), UpdatedAt: time.Now().UTC().Truncate(time.Microsecond)}
	if err := st.CreateClient(ctx, c); err != nil {
		b.Fatal(err)
	}
	request := func() *fosite.Request {
		now := time.Now().UTC()
		sess := openid.NewDefaultSession()
		sess.Subject, sess.Claims.Subject = "555000000001", "555000000001"
		sess.Claims.AuthTime = now.Truncate(time.Second)
		sess.Claims.Extra = map[string]any{"sid": "sid-bench"}
		for _, tt := range []fosite.TokenType{fosite.AccessToken, fosite.RefreshToken} {
			sess.SetExpiresAt(tt, now.Add(time.Hour))
		}
		r := fosite.NewRequest()
		r.ID = randString(12)
		r.RequestedAt = now
		r.Client = c
		r.RequestedScope = fosite.Arguments{"openid", "profile", "offline_access"}
		r.GrantedScope = fosite.Arguments{"openid", "offline_access"}
		r.Form = url.Values{"client_id": {c.ID}, "scope": {"openid profile offline_access"}}
		r.Session = sess
		return r
	}
	b.Run("CreateAccessTokenSession", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if err := st.CreateAccessTokenSession(ctx, randString(32), request()); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("GetAccessTokenSession", func(b *testing.B) {
		sigs := make([]string, 200)
		for i := range sigs {
			sigs[i] = randString(32)
			if err := st.CreateAccessTokenSession(ctx, sigs[i], request()); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if _, err := st.GetAccessTokenSession(ctx, sigs[i%len(sigs)], openid.NewDefaultSession()); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("RefreshRotation", func(b *testing.B) {
		r := request()
		acc, ref := randString(32), randString(32)
		if err := st.CreateAccessTokenSession(ctx, acc, r); err != nil {
			b.Fatal(err)
		}
		if err := st.CreateRefreshTokenSession(ctx, ref, acc, r); err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			got, err := st.GetRefreshTokenSession(ctx, ref, openid.NewDefaultSession())
			if err != nil {
				b.Fatal(err)
			}
			if err := st.RotateRefreshToken(ctx, got.GetID(), ref); err != nil {
				b.Fatal(err)
			}
			acc, ref = randString(32), randString(32)
			if err := st.CreateAccessTokenSession(ctx, acc, got); err != nil {
				b.Fatal(err)
			}
			if err := st.CreateRefreshTokenSession(ctx, ref, acc, got); err != nil {
				b.Fatal(err)
			}
		}
	})
}
