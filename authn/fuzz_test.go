package authn_test

import (
	"testing"

	"github.com/descope/virtualwebauthn"
)

// The ceremony handlers take untrusted JSON from anyone: whatever arrives,
// they answer with a 4xx error or success, never a 5xx.

var junkSeeds = []string{
	"", "{}", "null", "[]", `"x"`, "{", `{"id":1}`,
	`{"id":"","rawId":"","type":"public-key","response":{}}`,
	`{"id":"AAAA","rawId":"AAAA","type":"public-key","response":{"clientDataJSON":"e30","authenticatorData":"AAAA","signature":"AAAA","userHandle":"MTAwMDAwMDAwMDAx"}}`,
	`{"id":"AAAA","rawId":"AAAA","type":"public-key","response":{"clientDataJSON":"!!","attestationObject":"oA"}}`,
	`{"id":"AAAA","rawId":"AAAA","type":"public-key","response":{"clientDataJSON":"eyJ0eXBlIjoid2ViYXV0aG4uY3JlYXRlIn0","attestationObject":"o2NmbXRkbm9uZWdhdHRTdG10oGhhdXRoRGF0YUA"}}`,
}

func FuzzLoginFinish(f *testing.F) {
	h := newHarness(f)
	seedBrowser := h.browser()
	k := newKey(virtualwebauthn.AuthenticatorOptions{})
	if r := seedBrowser.enrol(f, h.invite(f), k); r.status != 200 {
		f.Fatalf("enrol: %d %s", r.status, r.body)
	}
	_, opts := seedBrowser.loginBegin(f, seedBrowser.startFlow(f, 2))
	f.Add(seedBrowser.assertion(k, opts))
	for _, s := range junkSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		b := h.browser()
		flow := b.startFlow(t, 2)
		if r, _ := b.loginBegin(t, flow); r.status != 200 {
			t.Fatalf("begin: %d", r.status)
		}
		r := b.postJSON(t, "/webauthn/login/finish?flow="+flow, body)
		if r.status >= 500 {
			t.Fatalf("finish answered %d: %s", r.status, r.body)
		}
		if r.status != 200 && r.errorCode(t) == "" {
			t.Fatalf("error without a code: %d %s", r.status, r.body)
		}
	})
}

func FuzzRegisterFinish(f *testing.F) {
	h := newHarness(f)
	seedBrowser := h.browser()
	k := newKey(virtualwebauthn.AuthenticatorOptions{})
	_, opts := seedBrowser.registerBegin(f, h.invite(f))
	f.Add(virtualwebauthn.CreateAttestationResponse(h.rp, k.auth, k.cred, *opts))
	f.Add(h.ca.attest(f, h.rp, k, *opts))
	for _, s := range junkSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		b := h.browser()
		code := h.invite(t)
		if r, _ := b.registerBegin(t, code); r.status != 200 {
			t.Fatalf("begin: %d", r.status)
		}
		r := b.postJSON(t, finishPath(code), body)
		if r.status >= 500 {
			t.Fatalf("finish answered %d: %s", r.status, r.body)
		}
		if r.status != 200 && r.errorCode(t) == "" {
			t.Fatalf("error without a code: %d %s", r.status, r.body)
		}
	})
}

func FuzzCeremonyBegin(f *testing.F) {
	h := newHarness(f)
	for _, s := range append(junkSeeds, `{"flow":"x"}`, `{"invite":"x"}`, `{"flow":123}`, `{"invite":null}`) {
		f.Add(s, true)
		f.Add(s, false)
	}
	f.Fuzz(func(t *testing.T, body string, login bool) {
		b := h.browser()
		path := "/webauthn/register/begin"
		if login {
			path = "/webauthn/login/begin"
		}
		r := b.postJSON(t, path, body)
		if r.status >= 500 {
			t.Fatalf("%s answered %d: %s", path, r.status, r.body)
		}
	})
}
