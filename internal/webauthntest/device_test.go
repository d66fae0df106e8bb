package webauthntest

import (
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"testing"

	"github.com/fxamacker/cbor/v2"
)

func TestAttestProducesVerifiableChain(t *testing.T) {
	ca, err := NewCA()
	if err != nil {
		t.Fatal(err)
	}
	d := NewDevice("localhost", "http://localhost:8080", ca)
	opts := `{"publicKey":{"challenge":"` + base64.RawURLEncoding.EncodeToString([]byte("0123456789abcdef")) +
		`","rp":{"id":"localhost","name":"x"},"user":{"id":"` + base64.RawURLEncoding.EncodeToString([]byte("user-1")) + `","name":"u","displayName":"U"}}}`
	resp, err := d.Register([]byte(opts))
	if err != nil {
		t.Fatal(err)
	}
	var r struct {
		Response struct{ AttestationObject, ClientDataJSON string } `json:"response"`
	}
	if err := json.Unmarshal(resp, &r); err != nil {
		t.Fatal(err)
	}
	obj, _ := base64.RawURLEncoding.DecodeString(r.Response.AttestationObject)
	cdj, _ := base64.RawURLEncoding.DecodeString(r.Response.ClientDataJSON)
	var ao struct {
		Fmt     string `cbor:"fmt"`
		AttStmt struct {
			Alg int      `cbor:"alg"`
			Sig []byte   `cbor:"sig"`
			X5c [][]byte `cbor:"x5c"`
		} `cbor:"attStmt"`
		AuthData []byte `cbor:"authData"`
	}
	if err := cbor.Unmarshal(obj, &ao); err != nil {
		t.Fatal(err)
	}
	if ao.Fmt != "packed" || len(ao.AttStmt.X5c) != 1 || ao.AttStmt.Alg != -7 {
		t.Fatalf("unexpected statement: fmt=%s x5c=%d alg=%d", ao.Fmt, len(ao.AttStmt.X5c), ao.AttStmt.Alg)
	}
	leaf, err := x509.ParseCertificate(ao.AttStmt.X5c[0])
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		t.Fatalf("chain: %v", err)
	}
	cdh := sha256.Sum256(cdj)
	digest := sha256.Sum256(append(append([]byte{}, ao.AuthData...), cdh[:]...))
	if !ecdsa.VerifyASN1(leaf.PublicKey.(*ecdsa.PublicKey), digest[:], ao.AttStmt.Sig) {
		t.Fatal("attestation signature does not verify")
	}
	if string(d.Auth.Options.UserHandle) != "user-1" {
		t.Fatalf("user handle = %q", d.Auth.Options.UserHandle)
	}
}
