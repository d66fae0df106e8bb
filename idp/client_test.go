package idp

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"reflect"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v3"
)

func TestClientCloneSharesNothingMutable(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	c := &Client{
		ID: "c1", Name: "Ward app", RedirectURIs: []string{"https://rp/cb"},
		PostLogoutRedirectURIs: []string{"https://rp/out"}, GrantTypes: []string{"authorization_code"},
		ResponseTypes: []string{"code"}, Scope: "openid", Audience: []string{"api"},
		TokenEndpointAuthMethod: "private_key_jwt",
		JWKS: &jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &key.PublicKey, KeyID: "k1", Algorithm: "ES256",
			CertificateThumbprintSHA1: []byte{1}, CertificateThumbprintSHA256: []byte{2}}}},
		AllowedRoles: []string{"R8000"}, RequiredActivities: []string{"B0264"},
		SecretHash: []byte("hash"), RotatedSecretHashes: [][]byte{[]byte("old")},
		CreatedAt: time.Unix(1, 0), UpdatedAt: time.Unix(2, 0),
	}
	d := c.Clone()
	if !reflect.DeepEqual(c, d) {
		t.Fatalf("clone differs:\n%+v\n%+v", c, d)
	}
	// Every slice field of the clone must have its own backing array, so a
	// field added later without cloning fails here.
	cv, dv := reflect.ValueOf(c).Elem(), reflect.ValueOf(d).Elem()
	for i := 0; i < cv.NumField(); i++ {
		f := cv.Type().Field(i)
		if f.Type.Kind() == reflect.Slice && cv.Field(i).Len() > 0 {
			if cv.Field(i).Pointer() == dv.Field(i).Pointer() {
				t.Errorf("Clone shares the backing array of %s", f.Name)
			}
		}
		if f.Type.Kind() == reflect.Pointer && !cv.Field(i).IsNil() && cv.Field(i).Pointer() == dv.Field(i).Pointer() {
			t.Errorf("Clone shares the pointer %s", f.Name)
		}
		if f.Type.Kind() == reflect.Map {
			t.Errorf("Client gained map field %s: teach Clone to copy it", f.Name)
		}
	}
	d.RotatedSecretHashes[0][0] = 'X'
	d.SecretHash[0] = 'X'
	d.JWKS.Keys[0].KeyID = "changed"
	d.JWKS.Keys[0].CertificateThumbprintSHA1[0] = 9
	d.RedirectURIs[0] = "https://evil/cb"
	if string(c.RotatedSecretHashes[0]) != "old" || string(c.SecretHash) != "hash" || c.JWKS.Keys[0].KeyID != "k1" ||
		c.JWKS.Keys[0].CertificateThumbprintSHA1[0] != 1 || c.RedirectURIs[0] != "https://rp/cb" {
		t.Fatalf("changing the clone changed the original: %+v", c)
	}
	if (*Client)(nil).Clone() != nil {
		t.Fatal("nil clone")
	}
}
