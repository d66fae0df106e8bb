package idp_test

import (
	"bytes"
	"context"
	"crypto/rsa"
	"net/url"
	"testing"
	"time"
)

// TestSAMLSigning: the SAML certificate is made deterministically from the
// current RS256 key, and during a rotation both certificates are
// published while the old key keeps signing until the new one activates.
func TestSAMLSigning(t *testing.T) {
	e := newEnv(t)
	signer, cert, all, err := e.p.SAMLSigning()
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(e.issuer)
	if cert.Subject.CommonName != u.Hostname() {
		t.Fatalf("CN %q, want %q", cert.Subject.CommonName, u.Hostname())
	}
	if !signer.Public().(*rsa.PublicKey).Equal(cert.PublicKey) {
		t.Fatal("certificate is not for the signing key")
	}
	if len(all) != 1 || !bytes.Equal(all[0].Raw, cert.Raw) {
		t.Fatalf("%d published certificates, want the one", len(all))
	}
	if cert.NotAfter.Sub(cert.NotBefore) < 9*365*24*time.Hour {
		t.Fatalf("validity %s – %s", cert.NotBefore, cert.NotAfter)
	}
	_, again, _, err := e.p.SAMLSigning()
	if err != nil || !bytes.Equal(again.Raw, cert.Raw) {
		t.Fatalf("certificate not deterministic (err %v)", err)
	}

	if err := e.p.RotateKeys(context.Background()); err != nil {
		t.Fatal(err)
	}
	_, cur, all, err := e.p.SAMLSigning()
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 2 {
		t.Fatalf("%d certificates during rotation, want 2", len(all))
	}
	if !bytes.Equal(cur.Raw, cert.Raw) {
		t.Fatal("the pre-published key signs SAML before it is active")
	}
	e.clock.Add(time.Hour + time.Second)
	_, cur, all, err = e.p.SAMLSigning()
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(cur.Raw, cert.Raw) || len(all) != 2 || !bytes.Equal(all[0].Raw, cur.Raw) {
		t.Fatal("new key not signing (or not listed first) after activation")
	}
}
