package idp

import (
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"net/url"
	"sort"
	"time"
)

// SAMLSigning returns the key that signs SAML messages now (the current
// RS256 key), its certificate, and the certificates of every RS256 key
// still published (the latest to sign first), so that SAML metadata carries both the
// old and the new certificate while keys rotate. federation/saml calls it.
//
// The certificates are self-signed and made deterministically from the
// key: serial from the key's kid, subject CN the issuer's host, valid from
// an hour before the key was created (SP clock skew) to ten years after
// it; the key leaves metadata when it leaves JWKS. PKCS #1 v1.5 signatures
// are deterministic, so every replica renders the same bytes.
func (p *Provider) SAMLSigning() (crypto.Signer, *x509.Certificate, []*x509.Certificate, error) {
	cur, err := p.signingKey(AlgRS256)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("saml signing: %w", err)
	}
	p.keys.mu.RLock()
	var published []*loadedKey
	for _, k := range p.keys.keys {
		if k.Alg == AlgRS256 {
			published = append(published, k)
		}
	}
	p.keys.mu.RUnlock()
	sort.SliceStable(published, func(i, j int) bool {
		a, b := published[i], published[j]
		if !a.ActiveAt.Equal(b.ActiveAt) {
			return a.ActiveAt.After(b.ActiveAt)
		}
		if !a.CreatedAt.Equal(b.CreatedAt) {
			return a.CreatedAt.After(b.CreatedAt)
		}
		return a.KID < b.KID
	})
	var curCert *x509.Certificate
	all := make([]*x509.Certificate, 0, len(published))
	for _, k := range published {
		c, err := p.samlCertificate(k)
		if err != nil {
			return nil, nil, nil, err
		}
		all = append(all, c)
		if k.KID == cur.KID {
			curCert = c
		}
	}
	if curCert == nil {
		return nil, nil, nil, errors.New("saml signing: current key is not published")
	}
	return cur.priv, curCert, all, nil
}

// samlCertificate makes (deterministically) the certificate for k.
func (p *Provider) samlCertificate(k *loadedKey) (*x509.Certificate, error) {
	host := p.cfg.Issuer
	if u, err := url.Parse(p.cfg.Issuer); err == nil && u.Hostname() != "" {
		host = u.Hostname()
	}
	sum := sha256.Sum256([]byte(k.KID))
	serial := new(big.Int).SetBytes(sum[:16])
	notBefore := k.CreatedAt.UTC().Truncate(time.Second).Add(-time.Hour)
	// Not ExpiresAt: rotation sets it on the old key, and a certificate
	// that changed mid-life would no longer match the copy SPs took from
	// metadata (they compare the KeyInfo certificate byte for byte).
	notAfter := k.CreatedAt.UTC().Truncate(time.Second).AddDate(10, 0, 0)
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: host},
		Issuer:                pkix.Name{CommonName: host},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		SignatureAlgorithm:    x509.SHA256WithRSA,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, k.priv.Public(), k.priv)
	if err != nil {
		return nil, fmt.Errorf("saml certificate for %s: %w", k.KID, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("saml certificate for %s: %w", k.KID, err)
	}
	return cert, nil
}
