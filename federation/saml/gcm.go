package saml

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/beevik/etree"
	"github.com/crewjam/saml/xmlenc"
)

// aes128GCM is AES-128-GCM content encryption as XML Encryption 1.1
// defines it: the CipherValue is the 12-byte IV, the ciphertext and the
// 16-byte tag. crewjam's xmlenc decrypts that (its AES128GCM) but cannot
// encrypt it: in v0.5.1 its Encrypt seals a zero buffer under a nil
// nonce. So nhsid encrypts with this and leaves decryption to crewjam.
type aes128GCM struct{}

var _ xmlenc.BlockCipher = aes128GCM{}

func (aes128GCM) KeySize() int      { return 16 }
func (aes128GCM) Algorithm() string { return xmlenc.AES128GCM.Algorithm() }

func (aes128GCM) Decrypt(key any, el *etree.Element) ([]byte, error) {
	return xmlenc.AES128GCM.Decrypt(key, el)
}

// Encrypt returns the EncryptedData element for plaintext under key (16
// bytes); the nonce argument is ignored: every call draws a fresh IV.
func (aes128GCM) Encrypt(key any, plaintext []byte, _ []byte) (*etree.Element, error) {
	k, ok := key.([]byte)
	if !ok || len(k) != 16 {
		return nil, errors.New("aes-128-gcm: the key must be 16 bytes")
	}
	block, err := aes.NewCipher(k)
	if err != nil {
		return nil, fmt.Errorf("aes-128-gcm: %w", err)
	}
	g, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("aes-128-gcm: %w", err)
	}
	var id [16]byte
	nonce := make([]byte, g.NonceSize(), g.NonceSize()+len(plaintext)+g.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	if _, err := rand.Read(id[:]); err != nil {
		return nil, err
	}
	sealed := g.Seal(nonce, nonce, plaintext, nil) // IV ‖ ciphertext ‖ tag

	el := etree.NewElement("xenc:EncryptedData")
	el.CreateAttr("xmlns:xenc", "http://www.w3.org/2001/04/xmlenc#")
	el.CreateAttr("Id", "_"+hex.EncodeToString(id[:]))
	em := el.CreateElement("xenc:EncryptionMethod")
	em.CreateAttr("Algorithm", xmlenc.AES128GCM.Algorithm())
	cd := el.CreateElement("xenc:CipherData")
	cd.CreateElement("xenc:CipherValue").SetText(base64.StdEncoding.EncodeToString(sealed))
	return el, nil
}
