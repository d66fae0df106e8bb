package e2e

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

// TestSignInCompletedInFinish: a sign-in that needs nothing more gets its
// code in the login finish, and the finish's redirect (an internal resume
// URL carrying the sealed result) sends only the browser that started the
// flow on to the client, until the code would have expired. The flow is
// over: its plain resume and a replayed finish are refused.
func TestSignInCompletedInFinish(t *testing.T) {
	for _, backend := range backends {
		t.Run(backend, func(t *testing.T) {
			e := newEnv(t, backend)
			uid, b, c := e.adaWithRP()

			state, nonce, verifier := randID(), randID(), oauth2.GenerateVerifier()
			loc := b.follow(c.conf.AuthCodeURL(state, oidc.Nonce(nonce), oauth2.S256ChallengeOption(verifier)))
			flow := loc.Query().Get("flow")
			st, raw, redirect := b.login(loc)
			if st != 200 {
				t.Fatalf("finish: %d %s", st, raw)
			}
			ru, err := url.Parse(redirect)
			if err != nil || ru.Path != "/oauth2/authorize/resume" || ru.Query().Get("flow") != flow || ru.Query().Get("result") == "" {
				t.Fatalf("finish redirect %q: want the resume URL of flow %s with a result", redirect, flow)
			}
			result := ru.Query().Get("result")

			// Another browser, a damaged result, or the result of another
			// flow: refused.
			thief := e.browser(b.dev)
			resp, body := thief.getRaw(redirect)
			mustEqual(t, "resume from another browser", decodeErr(resp.StatusCode, body).Code, "invalid_flow")
			flipped := []byte(result)
			flipped[len(flipped)/2] ^= 0x01
			resp, body = b.getRaw("/oauth2/authorize/resume?flow=" + url.QueryEscape(flow) + "&result=" + string(flipped))
			mustEqual(t, "damaged result", decodeErr(resp.StatusCode, body).Code, "invalid_flow")
			resp, body = b.getRaw("/oauth2/authorize/resume?flow=another&result=" + result)
			mustEqual(t, "result of another flow", decodeErr(resp.StatusCode, body).Code, "invalid_flow")
			resp, body = b.getRaw("/oauth2/authorize/resume?flow=" + url.QueryEscape(flow) + "&result=" + strings.Repeat("A", 9000))
			mustEqual(t, "oversized result", decodeErr(resp.StatusCode, body).Code, "invalid_flow")

			// The flow is over.
			resp, body = b.getRaw("/oauth2/authorize/resume?flow=" + url.QueryEscape(flow))
			mustEqual(t, "plain resume of a completed flow", decodeErr(resp.StatusCode, body).Code, "expired_flow")
			if st, _ := b.postJSON("/webauthn/login/finish?flow="+url.QueryEscape(flow), []byte(`{}`)); st < 400 {
				t.Fatalf("finish of a completed flow: %d", st)
			}

			// The browser that signed in goes on to the client, as often as
			// it asks, with one code that exchanges once.
			resp, _ = b.getRaw(redirect)
			if resp.StatusCode != http.StatusSeeOther {
				t.Fatalf("resume: %d, want 303", resp.StatusCode)
			}
			mustEqual(t, "resume caching", resp.Header.Get("Cache-Control"), "no-store")
			cb, err := url.Parse(resp.Header.Get("Location"))
			if err != nil || !strings.HasPrefix(cb.String(), c.conf.RedirectURL+"?") {
				t.Fatalf("resume went to %q, want the client's redirect URI", resp.Header.Get("Location"))
			}
			mustEqual(t, "state", cb.Query().Get("state"), state)
			mustEqual(t, "iss", cb.Query().Get("iss"), e.issuer)
			again, _ := b.getRaw(redirect)
			mustEqual(t, "resume again", again.Header.Get("Location"), cb.String())
			_, idt, _ := c.exchange(cb, state, verifier, nonce)
			mustEqual(t, "subject", idt.Subject, uid)
			if _, err := c.conf.Exchange(t.Context(), cb.Query().Get("code"), append(c.authOpts(), oauth2.VerifierOption(verifier))...); err == nil {
				t.Fatal("the code exchanged twice")
			}

			// After the code's lifetime the result is refused.
			e.clock.Advance(6 * time.Minute)
			resp, body = b.getRaw(redirect)
			mustEqual(t, "expired result", decodeErr(resp.StatusCode, body).Code, "expired_flow")
		})
	}
}
