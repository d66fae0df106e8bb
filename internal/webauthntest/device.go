// Package webauthntest is a software authenticator for nhsid's tests: it
// wraps github.com/descope/virtualwebauthn (which only produces packed
// self-attestation) and can re-issue the attestation as full packed
// attestation with an x5c chain from a test CA, so tests can reach AAL3
// through the same trust checks a real security key passes. Test code only.
package webauthntest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"time"

	"github.com/descope/virtualwebauthn"
	"github.com/fxamacker/cbor/v2"
)

// CA is a test attestation root that issues packed attestation certificates.
type CA struct {
	Cert *x509.Certificate
	Key  *ecdsa.PrivateKey
	// PEM is the root certificate, for nhsid's webauthn.trust_anchors.
	PEM []byte

	leaf    *x509.Certificate
	leafKey *ecdsa.PrivateKey
}

// NewCA makes a root and one attestation leaf certificate under it.
func NewCA() (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "nhsid test attestation root", Organization: []string{"nhsid tests"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	root, _ := x509.ParseCertificate(der)
	leafKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	leafTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		// Packed attestation certificate requirements (WebAuthn §8.2.1).
		Subject: pkix.Name{Country: []string{"GB"}, Organization: []string{"nhsid tests"},
			OrganizationalUnit: []string{"Authenticator Attestation"}, CommonName: "nhsid test key"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		BasicConstraintsValid: true,
		IsCA:                  false,
		KeyUsage:              x509.KeyUsageDigitalSignature,
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, root, &leafKey.PublicKey, key)
	if err != nil {
		return nil, err
	}
	leaf, _ := x509.ParseCertificate(leafDER)
	return &CA{Cert: root, Key: key, PEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), leaf: leaf, leafKey: leafKey}, nil
}

type attObject struct {
	Fmt      string         `cbor:"fmt"`
	AttStmt  map[string]any `cbor:"attStmt"`
	AuthData []byte         `cbor:"authData"`
}

// Attest rewrites a packed self-attestation response (as virtualwebauthn
// makes it) into full packed attestation signed by the CA's leaf.
func (ca *CA) Attest(response []byte) ([]byte, error) {
	var r map[string]any
	if err := json.Unmarshal(response, &r); err != nil {
		return nil, err
	}
	resp, _ := r["response"].(map[string]any)
	if resp == nil {
		return nil, errors.New("no response member")
	}
	objB64, _ := resp["attestationObject"].(string)
	cdjB64, _ := resp["clientDataJSON"].(string)
	obj, err := base64.RawURLEncoding.DecodeString(objB64)
	if err != nil {
		return nil, err
	}
	cdj, err := base64.RawURLEncoding.DecodeString(cdjB64)
	if err != nil {
		return nil, err
	}
	var ao attObject
	if err := cbor.Unmarshal(obj, &ao); err != nil {
		return nil, fmt.Errorf("decode attestation object: %w", err)
	}
	cdh := sha256.Sum256(cdj)
	digest := sha256.Sum256(append(append([]byte{}, ao.AuthData...), cdh[:]...))
	sig, err := ca.leafKey.Sign(rand.Reader, digest[:], crypto.SHA256)
	if err != nil {
		return nil, err
	}
	ao.Fmt = "packed"
	ao.AttStmt = map[string]any{"alg": -7, "sig": sig, "x5c": []any{ca.leaf.Raw}}
	enc, err := cbor.CTAP2EncOptions().EncMode()
	if err != nil {
		return nil, err
	}
	out, err := enc.Marshal(ao)
	if err != nil {
		return nil, err
	}
	resp["attestationObject"] = base64.RawURLEncoding.EncodeToString(out)
	return json.Marshal(r)
}

// Device is one software authenticator holding one credential.
type Device struct {
	RP   virtualwebauthn.RelyingParty
	Auth virtualwebauthn.Authenticator
	Cred virtualwebauthn.Credential
	// CA, when set, makes registrations carry full attestation (AAL3 when
	// nhsid trusts CA.PEM); nil means packed self-attestation (AAL2).
	CA *CA
}

// NewDevice makes an authenticator for rpID/origin with user verification.
func NewDevice(rpID, origin string, ca *CA) *Device {
	return &Device{
		RP:   virtualwebauthn.RelyingParty{Name: "nhsid", ID: rpID, Origin: origin},
		Auth: virtualwebauthn.NewAuthenticator(),
		Cred: NewCredential(),
		CA:   ca,
	}
}

// NewCredential returns a P-256 credential whose coordinates are full
// length: virtualwebauthn encodes them without left padding, which a
// verifier rightly refuses about once in 64 keys.
func NewCredential() virtualwebauthn.Credential {
	for {
		pk, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			panic(err)
		}
		if len(pk.X.Bytes()) != 32 || len(pk.Y.Bytes()) != 32 {
			continue
		}
		der, err := x509.MarshalPKCS8PrivateKey(pk)
		if err != nil {
			panic(err)
		}
		return virtualwebauthn.NewCredentialWithImportedKey(virtualwebauthn.KeyTypeEC2, der)
	}
}

// Register answers creation options ({"publicKey":{…}} or bare) with an
// attestation in the browser's toJSON() shape.
func (d *Device) Register(options []byte) ([]byte, error) {
	opts, err := virtualwebauthn.ParseAttestationOptions(string(options))
	if err != nil {
		return nil, fmt.Errorf("parse creation options: %w", err)
	}
	var raw struct {
		PublicKey struct {
			User struct {
				ID string `json:"id"`
			} `json:"user"`
		} `json:"publicKey"`
	}
	_ = json.Unmarshal(options, &raw)
	if h, err := base64.RawURLEncoding.DecodeString(raw.PublicKey.User.ID); err == nil && len(h) > 0 {
		d.Auth.Options.UserHandle = h
	}
	resp := []byte(virtualwebauthn.CreateAttestationResponse(d.RP, d.Auth, d.Cred, *opts))
	if d.CA != nil {
		if resp, err = d.CA.Attest(resp); err != nil {
			return nil, err
		}
	}
	d.Auth.AddCredential(d.Cred)
	return resp, nil
}

// Assert answers request options with an assertion, advancing the counter.
func (d *Device) Assert(options []byte) ([]byte, error) {
	opts, err := virtualwebauthn.ParseAssertionOptions(string(options))
	if err != nil {
		return nil, fmt.Errorf("parse request options: %w", err)
	}
	d.Cred.Counter++
	return []byte(virtualwebauthn.CreateAssertionResponse(d.RP, d.Auth, d.Cred, *opts)), nil
}

// CredentialID is the credential id, base64url.
func (d *Device) CredentialID() string { return base64.RawURLEncoding.EncodeToString(d.Cred.ID) }
