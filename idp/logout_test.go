package idp_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v3"
	josejwt "github.com/go-jose/go-jose/v3/jwt"

	"github.com/nhsid/nhsid/authn"
	"github.com/nhsid/nhsid/idp"
)

// enderAuthn adds RP-initiated logout's needs (idp.SessionEnder) to fakeAuthn.
type enderAuthn struct {
	*fakeAuthn
	mu    sync.Mutex
	ended []string
}

func (a *enderAuthn) EndSession(_ context.Context, sid, reason string) error {
	a.mu.Lock()
	a.ended = append(a.ended, sid+":"+reason)
	a.mu.Unlock()
	return nil
}
func (a *enderAuthn) ClearSessionCookie(w http.ResponseWriter) {}
func (a *enderAuthn) CSRFToken(*http.Request) string           { return "csrf-ok" }
func (a *enderAuthn) CheckCSRF(r *http.Request) bool {
	return r.PostFormValue("csrf_token") == "csrf-ok"
}
func (a *enderAuthn) endedSessions() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.ended...)
}

func TestRPInitiatedLogout(t *testing.T) {
	const bye = "https://rp.example/bye"
	ctx := context.Background()
	type fixture struct {
		e      *env
		a      *enderAuthn
		client string
		other  string
	}
	setup := func(t *testing.T, withSession bool) fixture {
		ea := &enderAuthn{fakeAuthn: newFakeAuthn()}
		e := newEnv(t, func(_ *idp.Config, d *idp.Deps) { d.Authn = ea })
		if withSession {
			ea.setSession(&authn.Session{SID: "sid-live", PersonUID: "555000000001", AAL: 3,
				AuthTime: time.Now(), LastSeenAt: time.Now(), ExpiresAt: time.Now().Add(time.Hour)})
		}
		c, _ := e.webClient(func(c *idp.Client) { c.PostLogoutRedirectURIs = []string{bye} })
		o, _ := e.webClient(nil)
		return fixture{e: e, a: ea, client: c.ID, other: o.ID}
	}
	hint := func(t *testing.T, f fixture, sid, iss string, exp time.Time) string {
		tok, err := f.e.p.SignForTest(ctx, map[string]any{"iss": iss, "sub": "555000000001", "aud": []string{f.client},
			"sid": sid, "iat": exp.Add(-time.Hour).Unix(), "exp": exp.Unix()}, idp.AlgRS256)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	forged := func(t *testing.T, f fixture) string {
		k, _ := rsa.GenerateKey(rand.Reader, 2048)
		sig, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: k}, (&jose.SignerOptions{}).WithHeader("kid", "forged"))
		tok, _ := josejwt.Signed(sig).Claims(map[string]any{"iss": f.e.issuer, "aud": f.client, "sid": "sid-live", "sub": "555000000001"}).CompactSerialize()
		return tok
	}
	tests := []struct {
		name       string
		noSession  bool
		query      func(t *testing.T, f fixture) url.Values
		status     int
		location   string
		confirm    bool
		wantEnded  bool
		bodySubstr string
	}{
		{name: "tied by hint: ended, redirected with state",
			query: func(t *testing.T, f fixture) url.Values {
				return url.Values{"id_token_hint": {hint(t, f, "sid-live", f.e.issuer, time.Now().Add(time.Hour))}, "post_logout_redirect_uri": {bye}, "state": {"s-1"}}
			}, status: http.StatusFound, location: bye + "?state=s-1", wantEnded: true},
		{name: "expired hint still ties",
			query: func(t *testing.T, f fixture) url.Values {
				return url.Values{"id_token_hint": {hint(t, f, "sid-live", f.e.issuer, time.Now().Add(-48*time.Hour))}, "post_logout_redirect_uri": {bye}}
			}, status: http.StatusFound, location: bye, wantEnded: true},
		{name: "hint for another session asks to confirm",
			query: func(t *testing.T, f fixture) url.Values {
				return url.Values{"id_token_hint": {hint(t, f, "sid-other", f.e.issuer, time.Now().Add(time.Hour))}, "post_logout_redirect_uri": {bye}}
			}, status: http.StatusOK, confirm: true},
		{name: "hint from another issuer asks to confirm",
			query: func(t *testing.T, f fixture) url.Values {
				return url.Values{"id_token_hint": {hint(t, f, "sid-live", "https://evil.example", time.Now().Add(time.Hour))}}
			}, status: http.StatusOK, confirm: true},
		{name: "forged hint asks to confirm",
			query: func(t *testing.T, f fixture) url.Values {
				return url.Values{"id_token_hint": {forged(t, f)}, "client_id": {f.client}}
			}, status: http.StatusOK, confirm: true},
		{name: "no hint asks to confirm",
			query:  func(t *testing.T, f fixture) url.Values { return url.Values{"client_id": {f.client}} },
			status: http.StatusOK, confirm: true},
		{name: "unregistered post_logout_redirect_uri refused",
			query: func(t *testing.T, f fixture) url.Values {
				return url.Values{"id_token_hint": {hint(t, f, "sid-live", f.e.issuer, time.Now().Add(time.Hour))}, "post_logout_redirect_uri": {"https://evil.example/"}}
			}, status: http.StatusBadRequest},
		{name: "redirect without a client refused",
			query:  func(t *testing.T, f fixture) url.Values { return url.Values{"post_logout_redirect_uri": {bye}} },
			status: http.StatusBadRequest},
		{name: "client_id not in the hint's audience refused",
			query: func(t *testing.T, f fixture) url.Values {
				return url.Values{"id_token_hint": {hint(t, f, "sid-live", f.e.issuer, time.Now().Add(time.Hour))}, "client_id": {f.other}}
			}, status: http.StatusBadRequest},
		{name: "no session: straight to the redirect", noSession: true,
			query: func(t *testing.T, f fixture) url.Values {
				return url.Values{"client_id": {f.client}, "post_logout_redirect_uri": {bye}}
			},
			status: http.StatusFound, location: bye},
		{name: "no session and no redirect: signed-out page", noSession: true,
			query:  func(t *testing.T, f fixture) url.Values { return url.Values{} },
			status: http.StatusOK, bodySubstr: "You have signed out"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := setup(t, !tt.noSession)
			resp, err := f.e.http.Get(f.e.srv.URL + idp.PathLogout + "?" + tt.query(t, f).Encode())
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tt.status, body)
			}
			if tt.location != "" && resp.Header.Get("Location") != tt.location {
				t.Fatalf("Location %q, want %q", resp.Header.Get("Location"), tt.location)
			}
			if tt.confirm != strings.Contains(string(body), `name="confirm"`) {
				t.Fatalf("confirmation page shown = %v, want %v", !tt.confirm, tt.confirm)
			}
			if tt.bodySubstr != "" && !strings.Contains(string(body), tt.bodySubstr) {
				t.Fatalf("body lacks %q", tt.bodySubstr)
			}
			ended := f.a.endedSessions()
			if tt.wantEnded != (len(ended) == 1 && ended[0] == "sid-live:"+authn.EndRPLogout) {
				t.Fatalf("ended %v, want ended=%v", ended, tt.wantEnded)
			}
		})
	}

	t.Run("confirmation POST needs csrf", func(t *testing.T) {
		f := setup(t, true)
		post := func(form url.Values) *http.Response {
			resp, err := f.e.http.PostForm(f.e.srv.URL+idp.PathLogout, form)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			return resp
		}
		if r := post(url.Values{"confirm": {"1"}, "client_id": {f.client}, "post_logout_redirect_uri": {bye}}); r.StatusCode != http.StatusForbidden {
			t.Fatalf("without csrf: %d", r.StatusCode)
		}
		if len(f.a.endedSessions()) != 0 {
			t.Fatal("ended without csrf")
		}
		r := post(url.Values{"confirm": {"1"}, "csrf_token": {"csrf-ok"}, "client_id": {f.client}, "post_logout_redirect_uri": {bye}, "state": {"s-2"}})
		if r.StatusCode != http.StatusSeeOther || r.Header.Get("Location") != bye+"?state=s-2" {
			t.Fatalf("confirmed: %d %q", r.StatusCode, r.Header.Get("Location"))
		}
		if got := f.a.endedSessions(); len(got) != 1 {
			t.Fatalf("ended %v", got)
		}
	})
	t.Run("RP form POST continues as a same-site GET", func(t *testing.T) {
		f := setup(t, true)
		resp, err := f.e.http.PostForm(f.e.srv.URL+idp.PathLogout, url.Values{"client_id": {f.client}, "state": {"s-3"}})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		loc := resp.Header.Get("Location")
		if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(loc, idp.PathLogout+"?") || !strings.Contains(loc, "state=s-3") {
			t.Fatalf("POST: %d %q", resp.StatusCode, loc)
		}
	})
}
