package saml

import (
	"bytes"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"encoding/xml"
	"flag"
	"math/big"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	crewjam "github.com/crewjam/saml"
)

var update = flag.Bool("update", false, "rewrite golden files")

// goldenCert makes a fixed certificate for the testdata key.
func goldenCert(t *testing.T, serial int64, created time.Time) *x509.Certificate {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("testdata", "idp-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(raw)
	key, err := x509.ParsePKCS1PrivateKey(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "id.example.nhs.uk"},
		Issuer: pkix.Name{CommonName: "id.example.nhs.uk"}, NotBefore: created, NotAfter: created.AddDate(10, 0, 0),
		KeyUsage: x509.KeyUsageDigitalSignature, BasicConstraintsValid: true, SignatureAlgorithm: x509.SHA256WithRSA}
	// PKCS #1 v1.5 is deterministic: no randomness needed.
	der, err := x509.CreateCertificate(nil, tmpl, tmpl, &key.PublicKey, (*rsa.PrivateKey)(key))
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestMetadataGolden: the IdP metadata, with two signing certificates as
// during a key rotation, the persistent NameID format, SSO over Redirect
// and POST, and SLO; the time is injected.
func TestMetadataGolden(t *testing.T) {
	now := time.Date(2026, 3, 2, 9, 30, 0, 0, time.UTC)
	certs := []*x509.Certificate{goldenCert(t, 2, now.Add(-time.Hour)), goldenCert(t, 1, now.AddDate(0, -1, 0))}
	got, err := BuildMetadata(testIssuer, certs, now, 48*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join("testdata", "metadata.golden.xml")
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("metadata differs from %s (run with -update):\n%s", path, got)
	}
	// crewjam's SP reads it: both certificates, the endpoints.
	var ed crewjam.EntityDescriptor
	if _, err := parseXML(got); err != nil {
		t.Fatal(err)
	}
	sp := crewjam.ServiceProvider{IDPMetadata: &ed}
	if err := xmlUnmarshal(got, &ed); err != nil {
		t.Fatal(err)
	}
	if sp.GetSSOBindingLocation(crewjam.HTTPRedirectBinding) != testIssuer+PathSSO ||
		sp.GetSSOBindingLocation(crewjam.HTTPPostBinding) != testIssuer+PathSSO {
		t.Fatal("SSO endpoints")
	}
	if n := len(ed.IDPSSODescriptors[0].KeyDescriptors); n != 2 {
		t.Fatalf("%d signing keys, want 2", n)
	}
	if !strings.Contains(string(got), NameIDPersistent) || strings.Contains(string(got), "nameid-format:transient") {
		t.Fatal("NameID format")
	}
}

// TestGoxmldsigVersion guards the signature-bypass fix (CVE-2026-33487,
// fixed in goxmldsig v1.6.0): crewjam/saml v0.5.1 asks for v1.4.0, so a
// go.mod that lost nhsid's explicit requirement would silently downgrade.
// The build picks the highest version required, so go.mod's line is the
// floor.
func TestGoxmldsigVersion(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("..", "..", "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(raw), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 || f[0] != "github.com/russellhaering/goxmldsig" {
			continue
		}
		parts := strings.SplitN(strings.TrimPrefix(f[1], "v"), ".", 3)
		major, _ := strconv.Atoi(parts[0])
		minor := 0
		if len(parts) > 1 {
			minor, _ = strconv.Atoi(parts[1])
		}
		if major < 1 || (major == 1 && minor < 6) {
			t.Fatalf("go.mod requires goxmldsig %s, which has the signature-bypass advisory; require >= v1.6.0", f[1])
		}
		return
	}
	t.Fatal("go.mod does not require goxmldsig >= v1.6.0 explicitly")
}

func xmlUnmarshal(raw []byte, v any) error { return xml.Unmarshal(raw, v) }
