package saml

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"testing"

	"github.com/crewjam/saml/xmlenc"
)

// TestAES128GCM: what nhsid encrypts, crewjam's decrypter opens; every
// encryption draws a fresh IV; a changed byte or another key fails.
func TestAES128GCM(t *testing.T) {
	key := make([]byte, 16)
	_, _ = rand.Read(key)
	plain := []byte("<saml:Assertion>Lovelace</saml:Assertion>")
	el, err := aes128GCM{}.Encrypt(key, plain, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := xmlenc.AES128GCM.Decrypt(key, el); err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("crewjam's decryption: %q, %v", got, err)
	}
	el2, _ := aes128GCM{}.Encrypt(key, plain, nil)
	cv := el.FindElement(".//CipherValue")
	if cv == nil || cv.Text() == el2.FindElement(".//CipherValue").Text() {
		t.Fatal("two encryptions of one plaintext are equal (IV reused)")
	}
	raw, _ := base64.StdEncoding.DecodeString(cv.Text())
	if len(raw) != 12+len(plain)+16 || bytes.Contains(raw, []byte("Lovelace")) {
		t.Fatalf("CipherValue of %d bytes, want IV ‖ ciphertext ‖ tag (%d)", len(raw), 12+len(plain)+16)
	}
	raw[len(raw)-1] ^= 1
	cv.SetText(base64.StdEncoding.EncodeToString(raw))
	if _, err := xmlenc.AES128GCM.Decrypt(key, el); err == nil {
		t.Fatal("a changed byte decrypted")
	}
	other := make([]byte, 16)
	if _, err := xmlenc.AES128GCM.Decrypt(other, el2); err == nil {
		t.Fatal("another key decrypted")
	}
	if _, err := (aes128GCM{}).Encrypt([]byte("short"), plain, nil); err == nil {
		t.Fatal("a short key was accepted")
	}
}
