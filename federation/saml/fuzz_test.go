package saml

import (
	"encoding/base64"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"testing/cryptotest"
	"time"
)

// FuzzAuthnRequest feeds arbitrary XML through the whole AuthnRequest
// path, both bindings: it must never panic or answer 5xx.
func FuzzAuthnRequest(f *testing.F) {
	rg := newRig(f)
	rg.clock = time.Now().UTC().Truncate(time.Second)
	ts := rg.addSP("https://sp.example.nhs.uk", false)
	signed := rg.addSP("https://signed.example.nhs.uk", true)
	_, el := ts.authnRequest(f, false)
	f.Add(docBytes(f, el))
	_, sel := signed.authnRequest(f, true)
	f.Add(docBytes(f, sel))
	f.Add([]byte(`<?xml version="1.0"?><!DOCTYPE a [<!ENTITY b "c">]><a>&b;</a>`))
	f.Add([]byte(`<samlp:AuthnRequest xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" ID="x" Version="2.0"><saml:Issuer xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion">https://sp.example.nhs.uk/saml/metadata</saml:Issuer></samlp:AuthnRequest>`))
	f.Add([]byte(`<samlp:AuthnRequest xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol"><ds:Signature xmlns:ds="http://www.w3.org/2000/09/xmldsig#"><ds:SignedInfo/></ds:Signature></samlp:AuthnRequest>`))
	f.Add([]byte("not xml"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, raw []byte) {
		// Each input runs from the same state, clock and randomness.
		// Otherwise the request-id replay cache, or the random ids and
		// signatures, send an input down another path the next time it
		// runs, and the fuzzer spends its time minimising "new" inputs
		// whose coverage never repeats (17 inputs a minute).
		rg.reset()
		cryptotest.SetGlobalRandom(t, 1)
		for _, w := range []interface{ Result() *http.Response }{
			rg.get(PathSSO + "?SAMLRequest=" + url.QueryEscape(deflateB64(t, raw)) + "&RelayState=r"),
			rg.post(PathSSO, url.Values{"SAMLRequest": {base64.StdEncoding.EncodeToString(raw)}}),
			rg.post(PathSLO, url.Values{"SAMLRequest": {base64.StdEncoding.EncodeToString(raw)}}),
		} {
			if code := w.Result().StatusCode; code >= 500 {
				t.Fatalf("status %d for %q", code, strings.ToValidUTF8(string(raw), "?"))
			}
		}
	})
}
