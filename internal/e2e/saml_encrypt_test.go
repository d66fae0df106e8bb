package e2e

import (
	"bytes"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"net/http"
	"strings"
	"testing"
)

// TestSAMLEncryptedAssertion: an SP set to encrypt gets its
// assertion as an EncryptedAssertion (RSA-OAEP, AES-128-GCM) that only
// its key opens: nothing about the person is readable in the response,
// and crewjam's SP decrypts and accepts it. An SP whose metadata has no
// encryption certificate cannot be set to it.
func TestSAMLEncryptedAssertion(t *testing.T) {
	for _, backend := range backends {
		t.Run(backend, func(t *testing.T) {
			e := newEnv(t, backend)
			uid := e.newPerson("Ada", "Lovelace")
			b := e.newBrowserFor(uid)
			sp := e.newSP(true)

			var out struct {
				Settings struct {
					EncryptAssertions bool `json:"encrypt"`
				} `json:"settings"`
			}
			e.admin("PATCH", "/admin/v1/saml/providers/"+sp.id, map[string]any{"encrypt": true}, 200, &out)
			if !out.Settings.EncryptAssertions {
				t.Fatal("setting not kept")
			}
			f := b.spStart(sp, true)
			raw, err := base64.StdEncoding.DecodeString(f.Value)
			if err != nil {
				t.Fatal(err)
			}
			for _, want := range []string{"EncryptedAssertion", "http://www.w3.org/2009/xmlenc11#aes128-gcm", "http://www.w3.org/2001/04/xmlenc#rsa-oaep-mgf1p"} {
				if !bytes.Contains(raw, []byte(want)) {
					t.Fatalf("response lacks %s:\n%s", want, raw)
				}
			}
			for _, secret := range []string{"Lovelace", uid, "<saml:Assertion", "AttributeStatement"} {
				if bytes.Contains(raw, []byte(secret)) {
					t.Fatalf("response shows %q in the clear:\n%s", secret, raw)
				}
			}
			attrs := b.spFinish(sp, f)
			if got := attrs["sn"]; len(got) != 1 || got[0] != "Lovelace" {
				t.Fatalf("attributes after decryption: %v", attrs)
			}

			// Metadata with a signing certificate only.
			_, cert := selfSigned(t, "noenc.test")
			pemCert := strings.Join(strings.Split(strings.TrimSpace(string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}))), "\n")[1:], "")
			pemCert = strings.TrimSuffix(pemCert, "-----END CERTIFICATE-----")
			meta := fmt.Sprintf(`<EntityDescriptor xmlns="urn:oasis:names:tc:SAML:2.0:metadata" entityID="https://noenc.example/sp">
  <SPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">
    <KeyDescriptor use="signing"><KeyInfo xmlns="http://www.w3.org/2000/09/xmldsig#"><X509Data><X509Certificate>%s</X509Certificate></X509Data></KeyInfo></KeyDescriptor>
    <AssertionConsumerService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST" Location="https://noenc.example/acs" index="1"/>
  </SPSSODescriptor>
</EntityDescriptor>`, pemCert)
			var reg struct {
				ID string `json:"id"`
			}
			e.adminRaw("POST", "/admin/v1/saml/providers", "application/samlmetadata+xml", []byte(meta), 201, &reg)
			if status, code := e.adminStatus("PATCH", "/admin/v1/saml/providers/"+reg.ID, `{"encrypt":true}`); status != http.StatusBadRequest || code != "invalid_request" {
				t.Fatalf("encrypt without an encryption certificate: %d %s", status, code)
			}
		})
	}
}
