package authn

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/go-webauthn/webauthn/metadata"
	"github.com/google/uuid"

	"github.com/nhsid/nhsid/internal/apierror"
)

// Authenticator assurance levels.
const (
	AAL2 = 2
	AAL3 = 3
)

// attestation is what the AAL decision looks at, taken from a verified
// registration response.
type attestation struct {
	// Format is the attestation statement format ("packed", "tpm", "none", …).
	Format string
	// Type is go-webauthn's attestation type ("basic_full", "attca",
	// "self"/"basic_surrogate", "none").
	Type string
	// X5C is the certificate chain of the statement, leaf first (DER).
	X5C [][]byte
	// AAGUID of the authenticator model (16 bytes).
	AAGUID []byte
	// UV and BE are the user-verified and backup-eligible flags of the
	// registration's authenticator data.
	UV, BE bool
}

// decision is the outcome of the AAL decision.
type decision struct {
	AAL int
	// DeviceBound attested hardware: amr "hwk" rather than "swk".
	DeviceBound bool
	// Reason explains the level for the log.
	Reason string
	// Model is the authenticator's name from the metadata, if known.
	Model string
}

// assurancePolicy decides the AAL of a new credential. It trusts only
// attestation chains that verify to a root it holds: the roots of the
// authenticator's own MDS3 entry, or the configured trust anchors. The
// AAGUID in authenticator data is a claim of the authenticator itself, so it
// never raises the level on its own: an allow-listed AAGUID with self or
// none attestation stays at AAL2.
type assurancePolicy struct {
	anchors *x509.CertPool // configured trust anchors; nil when none
	mds     map[uuid.UUID]*metadata.Entry
	allow   map[uuid.UUID]bool // empty: every attested model may reach AAL3
}

// errUVRequired is returned when the authenticator did not verify the user.
func errUVRequired() *apierror.Error {
	return apierror.New(http.StatusBadRequest, "user_verification_required",
		"Your security key must check your PIN or fingerprint. Set a PIN on the key and try again.", nil)
}

// decide returns the AAL of a credential with the attestation a at now.
func (p *assurancePolicy) decide(a attestation, now time.Time) (decision, error) {
	if !a.UV {
		return decision{}, errUVRequired()
	}
	d := decision{AAL: AAL2}
	var aaguid uuid.UUID
	if len(a.AAGUID) == 16 {
		copy(aaguid[:], a.AAGUID)
	}
	entry := p.mds[aaguid]
	if entry != nil {
		d.Model = entry.MetadataStatement.Description
		if cur := metadata.CurrentStatusReportAt(entry.StatusReports, now); cur != nil {
			if cur.Status == metadata.Revoked {
				return decision{}, apierror.New(http.StatusForbidden, "authenticator_not_allowed",
					"This model of security key has been withdrawn and cannot be used. Contact your Registration Authority.", nil)
			}
			if metadata.IsUndesiredAuthenticatorStatus(cur.Status) {
				d.Reason = "metadata status " + string(cur.Status)
				return d, nil
			}
		}
	}
	switch {
	case a.BE:
		d.Reason = "backup-eligible (synced) credential"
		return d, nil
	case len(a.X5C) == 0 || a.Format == "none" || a.Type == string(metadata.None) || a.Type == string(metadata.BasicSurrogate) || a.Type == "self":
		d.Reason = "no attestation certificate chain (" + a.Format + ")"
		return d, nil
	}
	chain := make([]*x509.Certificate, 0, len(a.X5C))
	for _, der := range a.X5C {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			d.Reason = "unparseable attestation certificate"
			return d, nil
		}
		chain = append(chain, c)
	}
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	verifies := func(roots *x509.CertPool) bool {
		if roots == nil {
			return false
		}
		_, err := chain[0].Verify(x509.VerifyOptions{
			Roots: roots, Intermediates: inter, CurrentTime: now,
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
		})
		return err == nil
	}
	trusted := ""
	if entry != nil && len(entry.MetadataStatement.AttestationRootCertificates) > 0 {
		roots := x509.NewCertPool()
		for _, c := range entry.MetadataStatement.AttestationRootCertificates {
			roots.AddCert(c)
		}
		if verifies(roots) {
			trusted = "metadata"
		}
	}
	if trusted == "" && verifies(p.anchors) {
		trusted = "trust anchor"
	}
	if trusted == "" {
		d.Reason = "attestation chain not trusted"
		return d, nil
	}
	if len(p.allow) > 0 && !p.allow[aaguid] {
		d.Reason = "authenticator model not on the allow-list"
		return d, nil
	}
	return decision{AAL: AAL3, DeviceBound: true, Reason: "attested by " + trusted, Model: d.Model}, nil
}

// loadAssurancePolicy reads the trust anchors and the MDS blob named in cfg.
func loadAssurancePolicy(cfg Config) (*assurancePolicy, error) {
	p := &assurancePolicy{mds: map[uuid.UUID]*metadata.Entry{}, allow: map[uuid.UUID]bool{}}
	for _, a := range cfg.AAGUIDAllowList {
		id, err := uuid.Parse(a)
		if err != nil {
			return nil, fmt.Errorf("aaguid allow-list: %w", err)
		}
		p.allow[id] = true
	}
	for _, path := range cfg.TrustAnchors {
		certs, err := readPEMCertificates(path)
		if err != nil {
			return nil, fmt.Errorf("trust anchor: %w", err)
		}
		if p.anchors == nil {
			p.anchors = x509.NewCertPool()
		}
		for _, c := range certs {
			p.anchors.AddCert(c)
		}
	}
	if cfg.MDSFile != "" {
		var opts []metadata.DecoderOption
		opts = append(opts, metadata.WithIgnoreEntryParsingErrors())
		if cfg.MDSRootCert != "" {
			certs, err := readPEMCertificates(cfg.MDSRootCert)
			if err != nil {
				return nil, fmt.Errorf("mds root: %w", err)
			}
			// The decoder takes the root as base64 DER, like the x5c header.
			opts = append(opts, metadata.WithRootCertificate(b64std(certs[0].Raw)))
		}
		blob, err := os.ReadFile(cfg.MDSFile)
		if err != nil {
			return nil, fmt.Errorf("read mds: %w", err)
		}
		entries, err := parseMDS(blob, opts...)
		if err != nil {
			return nil, err
		}
		p.mds = entries
	}
	return p, nil
}

// parseMDS verifies and decodes an MDS3 blob.
func parseMDS(blob []byte, opts ...metadata.DecoderOption) (map[uuid.UUID]*metadata.Entry, error) {
	dec, err := metadata.NewDecoder(opts...)
	if err != nil {
		return nil, fmt.Errorf("mds decoder: %w", err)
	}
	payload, err := dec.DecodeBytes(bytes.TrimSpace(blob))
	if err != nil {
		return nil, fmt.Errorf("decode mds: %w", err)
	}
	md, err := dec.Parse(payload)
	if err != nil {
		return nil, fmt.Errorf("parse mds: %w", err)
	}
	return md.ToMap(), nil
}

func readPEMCertificates(path string) ([]*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	var certs []*x509.Certificate
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parse %s: %w", path, err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, fmt.Errorf("%s: %w", path, errors.New("no PEM certificate found"))
	}
	return certs, nil
}

// amrFor returns the RFC 8176 amr values for a credential.
func amrFor(c Credential) []string {
	if c.AAL >= AAL3 {
		return []string{"hwk", "mfa"}
	}
	return []string{"swk", "mfa"}
}

func aaguidString(b []byte) string {
	if len(b) != 16 {
		return ""
	}
	var id uuid.UUID
	copy(id[:], b)
	return strings.ToLower(id.String())
}
