package storetest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v3"
	"github.com/ory/fosite"

	"github.com/nhsid/nhsid/idp"
	"github.com/nhsid/nhsid/store"
)

func idpTests() []suiteTest {
	return []suiteTest{
		{"Client/RoundTrip", testClientRoundTrip},
		{"Client/Update", testClientUpdate},
		{"Client/List", testClientList},
		{"Key/RoundTrip", testKeyRoundTrip},
		{"Key/Update", testKeyUpdate},
	}
}

func newClient(t *testing.T, id string) *idp.Client {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	noErr(t, "generate key", err)
	return &idp.Client{
		ID:                               id,
		Name:                             "Client " + id,
		RedirectURIs:                     []string{"https://rp.example/cb", "https://rp.example/cb2"},
		PostLogoutRedirectURIs:           []string{"https://rp.example/bye"},
		GrantTypes:                       []string{"authorization_code", "refresh_token"},
		ResponseTypes:                    []string{"code"},
		Scope:                            "openid profile nationalrbacaccess",
		Audience:                         []string{"https://api.example"},
		TokenEndpointAuthMethod:          "private_key_jwt",
		TokenEndpointAuthSigningAlg:      "ES256",
		JWKS:                             &jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &priv.PublicKey, KeyID: "rp-1", Algorithm: "ES256", Use: "sig"}}},
		IDTokenSignedResponseAlg:         "RS256",
		RequirePAR:                       true,
		BackchannelLogoutURI:             "https://rp.example/bcl",
		BackchannelLogoutSessionRequired: true,
		AccessTokenFormat:                "jwt",
		RequiredAAL:                      3,
		AllowedRoles:                     []string{"S8000:G8000:R8000"},
		RequiredActivities:               []string{"B0825"},
		Environment:                      "sandbox",
		SecretHash:                       []byte("current-secret-hash"),
		RotatedSecretHashes:              [][]byte{[]byte("old-1"), []byte("old-2")},
		CreatedAt:                        t0,
		UpdatedAt:                        t0.Add(time.Minute),
	}
}

// sameClient compares clients through their JSON form (as jose keys do not
// compare with reflect) plus the fields JSON leaves out.
func sameClient(t *testing.T, what string, got fosite.Client, want *idp.Client) {
	t.Helper()
	c, ok := got.(*idp.Client)
	if !ok {
		t.Fatalf("%s: got %T, want *idp.Client", what, got)
	}
	gj, err := json.Marshal(c)
	noErr(t, what+": encode got", err)
	wj, err := json.Marshal(want)
	noErr(t, what+": encode want", err)
	equal(t, what+" (metadata)", string(gj), string(wj))
	equal(t, what+" (secret hash)", c.SecretHash, want.SecretHash)
	equal(t, what+" (rotated hashes)", c.RotatedSecretHashes, want.RotatedSecretHashes)
	equal(t, what+" (disabled)", c.Disabled, want.Disabled)
	equal(t, what+" (created)", c.CreatedAt, want.CreatedAt)
	equal(t, what+" (updated)", c.UpdatedAt, want.UpdatedAt)
}

func testClientRoundTrip(t *testing.T, s Store) {
	ctx := context.Background()
	c := newClient(t, "client-1")
	noErr(t, "create", s.CreateClient(ctx, c))
	want := newClient(t, "client-1")
	want.JWKS = &jose.JSONWebKeySet{Keys: slices.Clone(c.JWKS.Keys)}

	// The store must have copied everything.
	c.RedirectURIs[0] = "https://evil.example/cb"
	c.SecretHash[0] = 'X'
	c.RotatedSecretHashes[0][0] = 'X'
	c.JWKS.Keys[0].KeyID = "changed"

	got, err := s.GetClient(ctx, "client-1")
	noErr(t, "get", err)
	sameClient(t, "client", got, want)

	gc := got.(*idp.Client)
	gc.RedirectURIs[0] = "https://evil.example/cb"
	gc.JWKS.Keys[0].KeyID = "changed"
	gc.JWKS.Keys = nil
	gc.RotatedSecretHashes[0][0] = 'X'
	again, err := s.GetClient(ctx, "client-1")
	noErr(t, "get again", err)
	sameClient(t, "client after mutating a returned copy", again, want)

	minimal := &idp.Client{ID: "client-2", TokenEndpointAuthMethod: "none", RedirectURIs: []string{"http://localhost/cb"}}
	noErr(t, "create minimal", s.CreateClient(ctx, minimal))
	got, err = s.GetClient(ctx, "client-2")
	noErr(t, "get minimal", err)
	sameClient(t, "minimal client", got, minimal)

	isErr(t, "duplicate", s.CreateClient(ctx, newClient(t, "client-1")), store.ErrExists)

	_, err = s.GetClient(ctx, "nope")
	isErr(t, "missing client is fosite.ErrNotFound", err, fosite.ErrNotFound)
	isErr(t, "missing client is store.ErrNotFound", err, store.ErrNotFound)
}

func testClientUpdate(t *testing.T, s Store) {
	ctx := context.Background()
	c := newClient(t, "client-1")
	noErr(t, "create", s.CreateClient(ctx, c))

	want := newClient(t, "client-1")
	want.JWKS = c.JWKS
	want.SecretHash = []byte("new-secret-hash")
	want.RotatedSecretHashes = [][]byte{[]byte("current-secret-hash")}
	want.Disabled = true
	want.RedirectURIs = []string{"https://rp.example/new"}
	want.UpdatedAt = t0.Add(time.Hour)
	got, err := s.UpdateClient(ctx, "client-1", func(x *idp.Client) error {
		sameClient(t, "updater sees current", x, c)
		x.ID = "ignored"
		x.SecretHash = want.SecretHash
		x.RotatedSecretHashes = want.RotatedSecretHashes
		x.Disabled = true
		x.RedirectURIs = want.RedirectURIs
		x.UpdatedAt = want.UpdatedAt
		return nil
	})
	noErr(t, "update", err)
	sameClient(t, "returned", got, want)
	stored, err := s.GetClient(ctx, "client-1")
	noErr(t, "get", err)
	sameClient(t, "stored", stored, want)

	_, err = s.UpdateClient(ctx, "client-1", func(x *idp.Client) error { x.Disabled = false; return errAbort })
	isErr(t, "aborted", err, errAbort)
	stored, err = s.GetClient(ctx, "client-1")
	noErr(t, "get after abort", err)
	sameClient(t, "stored after abort", stored, want)

	_, err = s.UpdateClient(ctx, "nope", func(*idp.Client) error { return nil })
	isErr(t, "update missing", err, store.ErrNotFound)
}

func testClientList(t *testing.T, s Store) {
	ctx := context.Background()
	for _, id := range []string{"c", "a", "d", "b"} {
		noErr(t, "create", s.CreateClient(ctx, newClient(t, id)))
	}
	tests := []struct {
		name  string
		after string
		limit int
		want  []string
	}{
		{name: "first page", limit: 3, want: []string{"a", "b", "c"}},
		{name: "next page", after: "c", limit: 3, want: []string{"d"}},
		{name: "end", after: "d", limit: 3},
		{name: "no limit", want: []string{"a", "b", "c", "d"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cs, err := s.ListClients(ctx, tt.after, tt.limit)
			noErr(t, "list", err)
			var ids []string
			for _, c := range cs {
				if c.JWKS == nil || len(c.JWKS.Keys) != 1 || len(c.RotatedSecretHashes) != 2 {
					t.Fatalf("listed client incomplete: %+v", c)
				}
				ids = append(ids, c.ID)
			}
			equal(t, "ids", ids, tt.want)
		})
	}
}

func newKey(kid string, created time.Time) idp.SigningKey {
	return idp.SigningKey{
		KID:              kid,
		Alg:              "RS256",
		PrivateEncrypted: []byte("sealed-" + kid),
		PublicJWK:        []byte(`{"kty":"RSA","kid":"` + kid + `","n":"xyz","e":"AQAB"}`),
		CreatedAt:        created,
		ActiveAt:         created.Add(time.Hour),
	}
}

func testKeyRoundTrip(t *testing.T, s Store) {
	ctx := context.Background()
	k2 := newKey("k2", t0.Add(time.Hour))
	k1 := newKey("k1", t0)
	k3 := newKey("k0", t0.Add(2*time.Hour))
	k3.Alg = "ES256"
	for _, k := range []idp.SigningKey{k2, k1, k3} {
		noErr(t, "create", s.CreateKey(ctx, k))
	}
	got, err := s.ListKeys(ctx)
	noErr(t, "list", err)
	equal(t, "keys oldest first", got, []idp.SigningKey{k1, k2, k3})

	got[0].PublicJWK[0] = '!'
	again, err := s.ListKeys(ctx)
	noErr(t, "list again", err)
	equal(t, "keys after mutating a returned copy", again[0], k1)

	isErr(t, "duplicate kid", s.CreateKey(ctx, newKey("k1", t0)), store.ErrExists)
}

func testKeyUpdate(t *testing.T, s Store) {
	ctx := context.Background()
	none, err := s.ListKeys(ctx)
	noErr(t, "list empty", err)
	if len(none) != 0 {
		t.Fatalf("new store lists %d keys", len(none))
	}
	k := newKey("k1", t0)
	noErr(t, "create", s.CreateKey(ctx, k))
	want := k
	want.RetiredAt = t0.Add(24 * time.Hour)
	want.ExpiresAt = t0.Add(48 * time.Hour)
	got, err := s.UpdateKey(ctx, "k1", func(x *idp.SigningKey) error {
		equal(t, "updater sees current", *x, k)
		x.KID = "ignored"
		x.RetiredAt = want.RetiredAt
		x.ExpiresAt = want.ExpiresAt
		return nil
	})
	noErr(t, "update", err)
	equal(t, "returned", got, want)

	_, err = s.UpdateKey(ctx, "k1", func(x *idp.SigningKey) error { x.RevokedAt = t0; return errAbort })
	isErr(t, "aborted", err, errAbort)
	list, err := s.ListKeys(ctx)
	noErr(t, "list", err)
	equal(t, "stored", list, []idp.SigningKey{want})

	_, err = s.UpdateKey(ctx, "nope", func(*idp.SigningKey) error { return nil })
	isErr(t, "update missing", err, store.ErrNotFound)
}
