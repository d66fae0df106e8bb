package authn

import (
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
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/go-webauthn/webauthn/metadata"
	"github.com/google/uuid"

	"github.com/nhsid/nhsid/internal/apierror"
)

// certPair is a certificate and its key.
type certPair struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

// issue makes a certificate for subject signed by parent (self-signed when
// parent is nil).
func issue(t *testing.T, subject pkix.Name, ca bool, parent *certPair) certPair {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: subject,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(48 * time.Hour),
		BasicConstraintsValid: true, IsCA: ca,
	}
	if ca {
		tmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature
	} else {
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	}
	signer, signerKey := tmpl, key
	if parent != nil {
		signer, signerKey = parent.cert, parent.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signer, &key.PublicKey, signerKey)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return certPair{cert: c, key: key}
}

func attestationSubject(cn string) pkix.Name {
	return pkix.Name{Country: []string{"GB"}, Organization: []string{"Test Vendor"},
		OrganizationalUnit: []string{"Authenticator Attestation"}, CommonName: cn}
}

func TestAALDecision(t *testing.T) {
	root := issue(t, pkix.Name{CommonName: "Vendor Root"}, true, nil)
	leaf := issue(t, attestationSubject("Key batch 1"), false, &root)
	rogueRoot := issue(t, pkix.Name{CommonName: "Rogue Root"}, true, nil)
	rogueLeaf := issue(t, attestationSubject("Key batch 1"), false, &rogueRoot)
	mdsRoot := issue(t, pkix.Name{CommonName: "MDS listed root"}, true, nil)
	mdsLeaf := issue(t, attestationSubject("MDS key"), false, &mdsRoot)

	anchors := x509.NewCertPool()
	anchors.AddCert(root.cert)
	listed := uuid.MustParse("11111111-2222-3333-4444-555555555555")
	other := uuid.MustParse("99999999-8888-7777-6666-555555555555")
	mdsModel := uuid.MustParse("aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee")
	revokedModel := uuid.MustParse("aaaaaaaa-bbbb-cccc-dddd-000000000001")
	compromised := uuid.MustParse("aaaaaaaa-bbbb-cccc-dddd-000000000002")
	entry := func(id uuid.UUID, status metadata.AuthenticatorStatus) *metadata.Entry {
		e := &metadata.Entry{AaGUID: id, StatusReports: []metadata.StatusReport{{Status: status}}}
		e.MetadataStatement.Description = "Test FIDO2 key"
		e.MetadataStatement.AttestationRootCertificates = []*x509.Certificate{mdsRoot.cert}
		return e
	}
	mds := map[uuid.UUID]*metadata.Entry{
		mdsModel:     entry(mdsModel, metadata.FidoCertifiedL1),
		revokedModel: entry(revokedModel, metadata.Revoked),
		compromised:  entry(compromised, metadata.AttestationKeyCompromise),
	}
	open := &assurancePolicy{anchors: anchors, mds: mds}
	allowList := &assurancePolicy{anchors: anchors, mds: mds, allow: map[uuid.UUID]bool{listed: true}}

	packed := func(id uuid.UUID, chain ...certPair) attestation {
		a := attestation{Format: "packed", Type: string(metadata.BasicFull), AAGUID: id[:], UV: true}
		for _, c := range chain {
			a.X5C = append(a.X5C, c.cert.Raw)
		}
		return a
	}
	self := func(id uuid.UUID) attestation {
		return attestation{Format: "packed", Type: string(metadata.BasicSurrogate), AAGUID: id[:], UV: true}
	}
	none := func(id uuid.UUID) attestation {
		return attestation{Format: "none", Type: string(metadata.None), AAGUID: id[:], UV: true}
	}
	with := func(a attestation, f func(*attestation)) attestation { f(&a); return a }

	tests := []struct {
		name     string
		policy   *assurancePolicy
		att      attestation
		wantAAL  int
		wantCode string
	}{
		{name: "x5c to trust anchor, UV, device-bound", policy: open, att: packed(other, leaf), wantAAL: 3},
		{name: "x5c to trust anchor but backup-eligible", policy: open, att: with(packed(other, leaf), func(a *attestation) { a.BE = true }), wantAAL: 2},
		{name: "UV missing is refused", policy: open, att: with(packed(other, leaf), func(a *attestation) { a.UV = false }), wantCode: "user_verification_required"},
		{name: "UV missing with self attestation is refused", policy: open, att: with(self(other), func(a *attestation) { a.UV = false }), wantCode: "user_verification_required"},
		{name: "self attestation", policy: open, att: self(other), wantAAL: 2},
		{name: "none attestation", policy: open, att: none(other), wantAAL: 2},
		{name: "x5c to an untrusted root", policy: open, att: packed(other, rogueLeaf), wantAAL: 2},
		{name: "x5c that is only the root itself", policy: open, att: packed(other, rogueRoot), wantAAL: 2},
		{name: "garbage certificate", policy: open, att: attestation{Format: "packed", Type: "basic_full", X5C: [][]byte{{1, 2, 3}}, AAGUID: other[:], UV: true}, wantAAL: 2},
		// CVE-2025-12150 / CVE-2026-6856: an allow-listed AAGUID is only a
		// claim unless an attestation chain proves it.
		{name: "allow-listed AAGUID with self attestation stays AAL2", policy: allowList, att: self(listed), wantAAL: 2},
		{name: "allow-listed AAGUID with none attestation stays AAL2", policy: allowList, att: none(listed), wantAAL: 2},
		{name: "allow-listed AAGUID with an untrusted chain stays AAL2", policy: allowList, att: packed(listed, rogueLeaf), wantAAL: 2},
		{name: "allow-listed AAGUID with a self type but a stray x5c stays AAL2", policy: allowList, att: with(packed(listed, leaf), func(a *attestation) { a.Type = string(metadata.BasicSurrogate) }), wantAAL: 2},
		{name: "allow-listed AAGUID with trusted chain", policy: allowList, att: packed(listed, leaf), wantAAL: 3},
		{name: "trusted chain but AAGUID not on the allow-list", policy: allowList, att: packed(other, leaf), wantAAL: 2},
		{name: "MDS entry roots verify the chain", policy: open, att: packed(mdsModel, mdsLeaf), wantAAL: 3},
		{name: "MDS roots of one model do not vouch for another", policy: open, att: packed(other, mdsLeaf), wantAAL: 2},
		{name: "MDS status REVOKED is refused", policy: open, att: packed(revokedModel, mdsLeaf), wantCode: "authenticator_not_allowed"},
		{name: "MDS status ATTESTATION_KEY_COMPROMISE is AAL2", policy: open, att: packed(compromised, mdsLeaf), wantAAL: 2},
		{name: "MDS-listed model with self attestation", policy: open, att: self(mdsModel), wantAAL: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := tt.policy.decide(tt.att, time.Now())
			if tt.wantCode != "" {
				var e *apierror.Error
				if !errors.As(err, &e) || e.Code != tt.wantCode {
					t.Fatalf("err = %v, want code %s", err, tt.wantCode)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if d.AAL != tt.wantAAL {
				t.Fatalf("AAL = %d (%s), want %d", d.AAL, d.Reason, tt.wantAAL)
			}
			if d.DeviceBound != (d.AAL == 3) {
				t.Fatalf("device-bound %v at AAL %d", d.DeviceBound, d.AAL)
			}
		})
	}
}

func TestAMR(t *testing.T) {
	if got := amrFor(Credential{AAL: 3}); got[0] != "hwk" || got[1] != "mfa" {
		t.Fatalf("AAL3 amr %v", got)
	}
	if got := amrFor(Credential{AAL: 2}); got[0] != "swk" || got[1] != "mfa" {
		t.Fatalf("AAL2 amr %v", got)
	}
}

// mdsBlob builds an MDS3 blob (a JWT signed ES256 by the MDS root, no x5c
// header) listing entries.
func mdsBlob(t *testing.T, signer certPair, entries []map[string]any) []byte {
	t.Helper()
	header, _ := json.Marshal(map[string]string{"alg": "ES256", "typ": "JWT"})
	payload, _ := json.Marshal(map[string]any{
		"legalHeader": "test", "no": 1, "nextUpdate": time.Now().Add(30 * 24 * time.Hour).Format(time.DateOnly),
		"entries": entries,
	})
	signing := base64.RawURLEncoding.EncodeToString(header) + "." + base64.RawURLEncoding.EncodeToString(payload)
	digest := sha256.Sum256([]byte(signing))
	r, s, err := ecdsa.Sign(rand.Reader, signer.key, digest[:])
	if err != nil {
		t.Fatal(err)
	}
	sig := make([]byte, 64)
	r.FillBytes(sig[:32])
	s.FillBytes(sig[32:])
	return []byte(signing + "." + base64.RawURLEncoding.EncodeToString(sig))
}

func mdsEntry(id uuid.UUID, status string, roots ...certPair) map[string]any {
	var rs []string
	for _, r := range roots {
		rs = append(rs, base64.StdEncoding.EncodeToString(r.cert.Raw))
	}
	return map[string]any{
		"aaguid": id.String(),
		"metadataStatement": map[string]any{
			"description": "Test Security Key 5", "aaguid": id.String(), "protocolFamily": "fido2", "schema": 3,
			"attestationTypes": []string{"basic_full"}, "attestationRootCertificates": rs,
		},
		"statusReports":          []map[string]any{{"status": status, "effectiveDate": "2024-01-01"}},
		"timeOfLastStatusChange": "2024-01-01",
	}
}

func writePEM(t *testing.T, dir, name string, c *x509.Certificate) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestMDSBlob(t *testing.T) {
	dir := t.TempDir()
	mdsSigner := issue(t, pkix.Name{CommonName: "Test MDS Root"}, true, nil)
	vendorRoot := issue(t, pkix.Name{CommonName: "Vendor Root"}, true, nil)
	leaf := issue(t, attestationSubject("Vendor key"), false, &vendorRoot)
	good := uuid.MustParse("0bb43545-fd2c-4185-87dd-feb0b2916ace")
	revoked := uuid.MustParse("0bb43545-fd2c-4185-87dd-000000000bad")
	blob := mdsBlob(t, mdsSigner, []map[string]any{
		mdsEntry(good, "FIDO_CERTIFIED_L2", vendorRoot),
		mdsEntry(revoked, "REVOKED", vendorRoot),
	})
	blobPath := filepath.Join(dir, "blob.jwt")
	if err := os.WriteFile(blobPath, blob, 0o600); err != nil {
		t.Fatal(err)
	}
	rootPath := writePEM(t, dir, "mdsroot.pem", mdsSigner.cert)

	p, err := loadAssurancePolicy(Config{MDSFile: blobPath, MDSRootCert: rootPath})
	if err != nil {
		t.Fatalf("load MDS: %v", err)
	}
	att := attestation{Format: "packed", Type: "basic_full", X5C: [][]byte{leaf.cert.Raw}, AAGUID: good[:], UV: true}
	d, err := p.decide(att, time.Now())
	if err != nil || d.AAL != 3 || d.Model != "Test Security Key 5" {
		t.Fatalf("MDS-listed key: %+v %v", d, err)
	}
	att.AAGUID = revoked[:]
	if _, err := p.decide(att, time.Now()); err == nil {
		t.Fatal("revoked model accepted")
	}

	t.Run("blob signed by another root is refused", func(t *testing.T) {
		otherRoot := issue(t, pkix.Name{CommonName: "Not the MDS root"}, true, nil)
		if _, err := loadAssurancePolicy(Config{MDSFile: blobPath, MDSRootCert: writePEM(t, dir, "other.pem", otherRoot.cert)}); err == nil {
			t.Fatal("blob accepted under the wrong root")
		}
	})
	t.Run("tampered blob is refused", func(t *testing.T) {
		tampered := append([]byte(nil), blob...)
		tampered[len(tampered)/2] ^= 1
		path := filepath.Join(dir, "tampered.jwt")
		_ = os.WriteFile(path, tampered, 0o600)
		if _, err := loadAssurancePolicy(Config{MDSFile: path, MDSRootCert: rootPath}); err == nil {
			t.Fatal("tampered blob accepted")
		}
	})
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name    string
		cfg     Config
		wantErr bool
	}{
		{name: "dev defaults", cfg: Config{PublicURL: "http://localhost:8080"}},
		{name: "production", cfg: Config{PublicURL: "https://id.example.nhs.uk", SecureCookies: true}},
		{name: "missing public url", cfg: Config{}, wantErr: true},
		{name: "secure cookies over http", cfg: Config{PublicURL: "http://localhost:8080", SecureCookies: true}, wantErr: true},
		{name: "bad allow-list entry", cfg: Config{PublicURL: "http://localhost", AAGUIDAllowList: []string{"yubikey"}}, wantErr: true},
		{name: "idle longer than absolute", cfg: Config{PublicURL: "http://localhost", AAL3Idle: 13 * time.Hour}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := tt.cfg.WithDefaults()
			err := c.Validate()
			if (err != nil) != tt.wantErr {
				t.Fatalf("Validate() = %v, wantErr %v", err, tt.wantErr)
			}
			if err == nil && (c.RPID == "" || c.InviteTTL != 15*time.Minute || c.AAL3Idle != 15*time.Minute || c.AAL2Idle != 30*time.Minute) {
				t.Fatalf("defaults not applied: %+v", c)
			}
		})
	}
}
