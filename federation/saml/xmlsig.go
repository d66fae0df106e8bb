package saml

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/beevik/etree"
	xrv "github.com/mattermost/xml-roundtrip-validator"
	dsig "github.com/russellhaering/goxmldsig"
)

// MaxXMLBytes bounds a protocol message (after base64 and inflation).
const MaxXMLBytes = 64 << 10

const (
	nsProtocol  = "urn:oasis:names:tc:SAML:2.0:protocol"
	nsAssertion = "urn:oasis:names:tc:SAML:2.0:assertion"
	nsDSig      = "http://www.w3.org/2000/09/xmldsig#"
)

// parseXML checks the size, refuses DTDs and entity declarations and XML
// that does not survive a round trip (namespace tricks), then parses it.
func parseXML(raw []byte) (*etree.Document, error) {
	if len(raw) > MaxXMLBytes*4 {
		return nil, errors.New("xml too large")
	}
	if bytes.Contains(raw, []byte("<!")) && (bytes.Contains(bytes.ToUpper(raw), []byte("<!DOCTYPE")) || bytes.Contains(bytes.ToUpper(raw), []byte("<!ENTITY"))) {
		return nil, errors.New("xml with a DTD is refused")
	}
	if err := xrv.Validate(bytes.NewReader(raw)); err != nil {
		return nil, fmt.Errorf("xml does not round-trip: %w", err)
	}
	doc := etree.NewDocument()
	doc.ReadSettings.Permissive = false
	if err := doc.ReadFromBytes(raw); err != nil {
		return nil, fmt.Errorf("parse xml: %w", err)
	}
	if doc.Root() == nil {
		return nil, errors.New("xml has no root element")
	}
	for _, tok := range doc.Child {
		if _, ok := tok.(*etree.Directive); ok {
			return nil, errors.New("xml with a directive is refused")
		}
	}
	return doc, nil
}

// signatureChildren returns the ds:Signature elements that are direct
// children of el, and the count of ds:Signature elements anywhere below.
func signatureChildren(el *etree.Element) (direct []*etree.Element, all int) {
	for _, c := range el.ChildElements() {
		if c.Tag == "Signature" && c.NamespaceURI() == nsDSig {
			direct = append(direct, c)
		}
	}
	var walk func(*etree.Element)
	walk = func(e *etree.Element) {
		for _, c := range e.ChildElements() {
			if c.Tag == "Signature" && c.NamespaceURI() == nsDSig {
				all++
			}
			walk(c)
		}
	}
	walk(el)
	return direct, all
}

// verifyEnveloped verifies the enveloped signature on root against certs
// and returns the element the signature covers. Exactly one ds:Signature
// may appear in the whole message, as a direct child of the root, with one
// Reference to "#" + the root's ID. Anything else — a signature moved into
// another element, a second signed element, no signature, a key not in
// certs — is an error.
func verifyEnveloped(root *etree.Element, certs []*x509.Certificate, now time.Time) (*etree.Element, error) {
	direct, all := signatureChildren(root)
	if len(direct) == 0 && all == 0 {
		return nil, errUnsigned
	}
	if len(direct) != 1 || all != 1 {
		return nil, fmt.Errorf("want one signature, a child of the root: found %d direct, %d in all", len(direct), all)
	}
	id := root.SelectAttrValue("ID", "")
	if id == "" {
		return nil, errors.New("signed element has no ID")
	}
	refs := direct[0].FindElements("./SignedInfo/Reference")
	if len(refs) != 1 || refs[0].SelectAttrValue("URI", "") != "#"+id {
		return nil, errors.New("signature must have one Reference to the root element")
	}
	if len(certs) == 0 {
		return nil, errors.New("no certificate to verify with")
	}
	vc := dsig.NewDefaultValidationContext(&dsig.MemoryX509CertificateStore{Roots: certs})
	vc.Clock = dsig.NewFakeClockAt(now)
	vc.IdAttribute = "ID"
	signed, err := vc.Validate(root)
	if err != nil {
		return nil, fmt.Errorf("verify signature: %w", err)
	}
	if signed.Tag != root.Tag || signed.SelectAttrValue("ID", "") != id {
		return nil, errors.New("signature covers another element")
	}
	return signed, nil
}

var errUnsigned = errors.New("message is not signed")

// redirectParams are the raw (still URL-encoded) query parameters of a
// HTTP-Redirect binding message, as the signature covers them.
type redirectParams struct {
	msgName, msg, relayState, sigAlg, signature string
	hasRelay                                    bool
}

// rawRedirectParams splits a raw query without decoding it: the signature
// is over the bytes as sent. Duplicate parameters are refused.
func rawRedirectParams(rawQuery, msgName string) (redirectParams, error) {
	p := redirectParams{msgName: msgName}
	seen := map[string]bool{}
	for _, part := range strings.Split(rawQuery, "&") {
		k, v, _ := strings.Cut(part, "=")
		switch k {
		case msgName, "RelayState", "SigAlg", "Signature":
		default:
			continue
		}
		if seen[k] {
			return p, fmt.Errorf("duplicate %s parameter", k)
		}
		seen[k] = true
		switch k {
		case msgName:
			p.msg = v
		case "RelayState":
			p.relayState, p.hasRelay = v, true
		case "SigAlg":
			p.sigAlg = v
		case "Signature":
			p.signature = v
		}
	}
	return p, nil
}

// signedString is the octet string the Redirect binding signs.
func (p redirectParams) signedString() string {
	s := p.msgName + "=" + p.msg
	if p.hasRelay {
		s += "&RelayState=" + p.relayState
	}
	return s + "&SigAlg=" + p.sigAlg
}

// verifyRedirect checks the Redirect binding signature with one of certs.
// SHA-1 algorithms are refused.
func verifyRedirect(p redirectParams, sigAlg string, sig []byte, certs []*x509.Certificate, now time.Time) error {
	var h crypto.Hash
	switch sigAlg {
	case dsig.RSASHA256SignatureMethod, dsig.ECDSASHA256SignatureMethod:
		h = crypto.SHA256
	case dsig.RSASHA384SignatureMethod, dsig.ECDSASHA384SignatureMethod:
		h = crypto.SHA384
	case dsig.RSASHA512SignatureMethod, dsig.ECDSASHA512SignatureMethod:
		h = crypto.SHA512
	default:
		return fmt.Errorf("signature algorithm %q not accepted", sigAlg)
	}
	var digest []byte
	switch h {
	case crypto.SHA256:
		d := sha256.Sum256([]byte(p.signedString()))
		digest = d[:]
	case crypto.SHA384:
		d := sha512.Sum384([]byte(p.signedString()))
		digest = d[:]
	default:
		d := sha512.Sum512([]byte(p.signedString()))
		digest = d[:]
	}
	if len(certs) == 0 {
		return errors.New("no certificate to verify with")
	}
	isEC := strings.Contains(sigAlg, "ecdsa")
	for _, c := range certs {
		if now.Before(c.NotBefore) || now.After(c.NotAfter) {
			continue
		}
		switch pub := c.PublicKey.(type) {
		case *rsa.PublicKey:
			if !isEC && rsa.VerifyPKCS1v15(pub, h, digest, sig) == nil {
				return nil
			}
		case *ecdsa.PublicKey:
			if isEC && ecdsa.VerifyASN1(pub, digest, sig) {
				return nil
			}
		}
	}
	return errors.New("redirect binding signature does not verify")
}

// decodeB64 decodes standard base64, tolerating whitespace.
func decodeB64(s string) ([]byte, error) {
	s = strings.Join(strings.Fields(s), "")
	if len(s) > MaxXMLBytes*2 {
		return nil, errors.New("message too large")
	}
	return base64.StdEncoding.DecodeString(s)
}
