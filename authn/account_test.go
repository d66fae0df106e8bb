package authn_test

import (
	"context"
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/descope/virtualwebauthn"

	"github.com/nhsid/nhsid/authn"
	"github.com/nhsid/nhsid/store/memory"
)

var csrfField = regexp.MustCompile(`name="csrf_token" value="([^"]+)"`)

func TestAccount(t *testing.T) {
	h, b, k := enrolled(t, virtualwebauthn.AuthenticatorOptions{})

	// nhsid's root leads to the account page, and nothing else under it
	// does.
	if r := b.get(t, "/"); r.status != http.StatusFound || r.header.Get("Location") != "/account" {
		t.Fatalf("root: %d %q", r.status, r.header.Get("Location"))
	}
	if r := b.get(t, "/nothing-here"); r.status != http.StatusNotFound {
		t.Fatalf("unknown page: %d", r.status)
	}

	// Signed out: the account page starts a sign-in that comes back.
	r := b.get(t, "/account")
	if r.status != http.StatusSeeOther || !strings.HasPrefix(r.header.Get("Location"), "/login?flow=") {
		t.Fatalf("signed-out account: %d %q", r.status, r.header.Get("Location"))
	}
	flow := strings.TrimPrefix(r.header.Get("Location"), "/login?flow=")
	r = b.login(t, flow, k)
	if r.status != 200 || r.json(t)["redirect"] != "/account?flow="+flow {
		t.Fatalf("account sign-in: %d %s", r.status, r.body)
	}
	r = b.get(t, "/account?flow="+flow)
	if r.status != 200 || !strings.Contains(string(r.body), "Security key") {
		t.Fatalf("account page: %d %s", r.status, r.body)
	}
	m := csrfField.FindSubmatch(r.body)
	if m == nil {
		t.Fatal("no csrf field on the account page")
	}
	csrf := string(m[1])
	id := base64.RawURLEncoding.EncodeToString(k.cred.ID)

	tests := []struct {
		name       string
		path       string
		form       url.Values
		wantStatus int
		wantText   string
	}{
		{name: "rename without csrf", path: "/account/credentials/" + id + "/name", form: url.Values{"name": {"Blue key"}}, wantStatus: 403},
		{name: "rename with a wrong csrf", path: "/account/credentials/" + id + "/name", form: url.Values{"name": {"Blue key"}, "csrf_token": {"x" + csrf}}, wantStatus: 403},
		{name: "rename to empty", path: "/account/credentials/" + id + "/name", form: url.Values{"name": {"  "}, "csrf_token": {csrf}}, wantStatus: 400, wantText: "Enter a name"},
		{name: "rename", path: "/account/credentials/" + id + "/name", form: url.Values{"name": {"Blue key"}, "csrf_token": {csrf}}, wantStatus: 303},
		{name: "rename someone else's key", path: "/account/credentials/AAAA/name", form: url.Values{"name": {"x"}, "csrf_token": {csrf}}, wantStatus: 404},
		{name: "revoke the only key", path: "/account/credentials/" + id + "/revoke", form: url.Values{"csrf_token": {csrf}}, wantStatus: 400, wantText: "cannot remove your only security key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := b.postForm(t, tt.path, tt.form)
			if r.status != tt.wantStatus || !strings.Contains(string(r.body), tt.wantText) {
				t.Fatalf("%d %s", r.status, r.body)
			}
		})
	}
	c, _ := h.store.GetCredential(context.Background(), k.cred.ID)
	if c.Name != "Blue key" || !c.RevokedAt.IsZero() {
		t.Fatalf("credential after account actions: %q revoked %v", c.Name, c.RevokedAt)
	}

	// With a second key, the first can be revoked.
	k2 := newKey(virtualwebauthn.AuthenticatorOptions{})
	if r := b.enrol(t, h.invite(t), k2); r.status != 200 {
		t.Fatalf("second key: %d", r.status)
	}
	if r := b.postForm(t, "/account/credentials/"+id+"/revoke", url.Values{"csrf_token": {csrf}}); r.status != 303 {
		t.Fatalf("revoke: %d %s", r.status, r.body)
	}
	if c, _ := h.store.GetCredential(context.Background(), k.cred.ID); c.RevokedAt.IsZero() {
		t.Fatal("not revoked")
	}
	if r := b.login(t, b.startFlow(t, 2), k); r.status != 400 || r.errorCode(t) != "invalid_credential" {
		t.Fatalf("revoked key signs in: %d %s", r.status, r.body)
	}
	// Another browser's form token does not work here.
	other := h.browser()
	if r := other.postForm(t, "/account/credentials/"+id+"/name", url.Values{"name": {"x"}, "csrf_token": {csrf}}); r.status != 401 {
		t.Fatalf("signed-out rename: %d", r.status)
	}
}

func TestAddDevicePageNeedsFreshAAL3(t *testing.T) {
	_, b, k := enrolled(t, virtualwebauthn.AuthenticatorOptions{})
	if r := b.login(t, b.startFlow(t, 2), k); r.status != 200 {
		t.Fatalf("login: %d", r.status)
	}
	r := b.get(t, "/account/add-device")
	if r.status != http.StatusSeeOther || !strings.HasPrefix(r.header.Get("Location"), "/login?flow=") {
		t.Fatalf("add-device at AAL2: %d %q", r.status, r.header.Get("Location"))
	}
	flow := strings.TrimPrefix(r.header.Get("Location"), "/login?flow=")
	if p := b.get(t, "/login?flow="+flow); !strings.Contains(string(p.body), "high-assurance") {
		t.Fatal("step-up login page does not say a high-assurance key is needed")
	}
}

func TestAllowListedSelfAttestationStaysAAL2(t *testing.T) {
	// The Keycloak bypass (CVE-2025-12150 / CVE-2026-6856): a software
	// authenticator that claims an allow-listed AAGUID must not get AAL3.
	k := newKey(virtualwebauthn.AuthenticatorOptions{})
	aaguid := k.auth.Aaguid
	h := newHarness(t, func(c *authn.Config) {
		c.AAGUIDAllowList = []string{formatUUID(aaguid)}
	})
	b := h.browser()
	r := b.enrol(t, h.invite(t), k)
	if r.status != 200 || r.json(t)["aal"] != float64(2) {
		t.Fatalf("allow-listed self attestation: %d %s", r.status, r.body)
	}
	// The same model with a trusted chain does reach AAL3.
	k2 := newKey(virtualwebauthn.AuthenticatorOptions{})
	k2.auth.Aaguid = aaguid
	if r := b.enrolAttested(t, h.invite(t), k2); r.status != 200 || r.json(t)["aal"] != float64(3) {
		t.Fatalf("allow-listed attested: %d %s", r.status, r.body)
	}
	// A trusted chain for a model off the list stays AAL2.
	k3 := newKey(virtualwebauthn.AuthenticatorOptions{})
	if r := b.enrolAttested(t, h.invite(t), k3); r.status != 200 || r.json(t)["aal"] != float64(2) {
		t.Fatalf("attested off the list: %d %s", r.status, r.body)
	}
}

func formatUUID(b [16]byte) string {
	const hexdigits = "0123456789abcdef"
	var out []byte
	for i, x := range b {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			out = append(out, '-')
		}
		out = append(out, hexdigits[x>>4], hexdigits[x&15])
	}
	return string(out)
}

func TestSecureCookieNames(t *testing.T) {
	st := memory.New()
	svc, err := authn.New(authn.Config{PublicURL: "https://id.example.nhs.uk", SecureCookies: true}, authn.Deps{Store: st, People: st})
	if err != nil {
		t.Fatal(err)
	}
	w := httptest.NewRecorder()
	if _, err := svc.StartFlow(w, httptest.NewRequest("GET", "https://id.example.nhs.uk/oauth2/authorize", nil), authn.Flow{ResumeURL: "/x"}); err != nil {
		t.Fatal(err)
	}
	cookies := w.Result().Cookies()
	if len(cookies) != 1 || cookies[0].Name != "__Host-nhsid_bind" || !cookies[0].Secure || !cookies[0].HttpOnly || cookies[0].Path != "/" || cookies[0].Domain != "" {
		t.Fatalf("cookies %+v", cookies)
	}
}

func TestPagesAreSafe(t *testing.T) {
	h, b, _ := enrolled(t, virtualwebauthn.AuthenticatorOptions{})
	flow := b.startFlow(t, 2)
	for _, path := range []string{"/login?flow=" + flow, "/enrol?invite=" + h.invite(t), "/login?flow=nope"} {
		r := b.get(t, path)
		csp := r.header.Get("Content-Security-Policy")
		if !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe-inline") {
			t.Fatalf("%s: CSP %q", path, csp)
		}
		if regexp.MustCompile(`<script(\s[^>]*)?>\s*[^<\s]`).Match(r.body) {
			t.Fatalf("%s has inline script", path)
		}
		if !strings.Contains(string(r.body), `/static/nhsuk-frontend.min.css`) {
			t.Fatalf("%s lacks the NHS.UK stylesheet", path)
		}
	}
	for _, asset := range []string{"/static/webauthn.js", "/static/nhsuk-frontend.min.css"} {
		if r := b.get(t, asset); r.status != 200 || len(r.body) < 100 {
			t.Fatalf("%s: %d", asset, r.status)
		}
	}
}
