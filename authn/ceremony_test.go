package authn_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/descope/virtualwebauthn"

	"github.com/nhsid/nhsid/authn"
	"github.com/nhsid/nhsid/policy"
)

func TestEnrolThenSignIn(t *testing.T) {
	tests := []struct {
		name     string
		attested bool
		wantAAL  float64
		wantAMR  string
	}{
		{name: "software self attestation is AAL2", attested: false, wantAAL: 2, wantAMR: "swk"},
		{name: "attested hardware key is AAL3", attested: true, wantAAL: 3, wantAMR: "hwk"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			b := h.browser()
			k := newKey(virtualwebauthn.AuthenticatorOptions{})
			code := h.invite(t)
			page := b.get(t, "/enrol?invite="+code)
			if page.status != 200 || page.header.Get("Referrer-Policy") != "no-referrer" {
				t.Fatalf("enrol page: %d referrer-policy %q", page.status, page.header.Get("Referrer-Policy"))
			}
			if !strings.Contains(string(page.body), `data-invite="`+code+`"`) || strings.Contains(string(page.body), "<script>") {
				t.Fatalf("enrol page lacks the invite data attribute or has inline script")
			}
			var r reply
			if tt.attested {
				r = b.enrolAttested(t, code, k)
			} else {
				r = b.enrol(t, code, k)
			}
			if r.status != 200 {
				t.Fatalf("register finish: %d %s", r.status, r.body)
			}
			got := r.json(t)
			if got["aal"] != tt.wantAAL || got["credential_id"] != base64.RawURLEncoding.EncodeToString(k.cred.ID) {
				t.Fatalf("register finish reply %v", got)
			}

			flow := b.startFlow(t, 2)
			if p := b.get(t, "/login?flow="+flow); p.status != 200 || !strings.Contains(string(p.body), `data-flow="`+flow+`"`) {
				t.Fatalf("login page: %d", p.status)
			}
			r = b.login(t, flow, k)
			if r.status != 200 {
				t.Fatalf("login finish: %d %s", r.status, r.body)
			}
			if red := r.json(t)["redirect"]; red != "/test/resume?flow="+flow {
				t.Fatalf("redirect = %v", red)
			}
			var cookie *http.Cookie
			for _, c := range (&http.Response{Header: r.header}).Cookies() {
				if c.Name == "nhsid_session" {
					cookie = c
				}
			}
			if cookie == nil || !cookie.HttpOnly || cookie.SameSite != http.SameSiteLaxMode || cookie.Path != "/" {
				t.Fatalf("session cookie %+v", cookie)
			}
			s := b.session(t)
			if s == nil || float64(s.AAL) != tt.wantAAL || s.PersonUID != testUID || len(s.AMR) != 2 || s.AMR[0] != tt.wantAMR {
				t.Fatalf("session %+v", s)
			}
			f, err := h.svc.LoadFlow(mustReq(b, "/"), flow)
			if err != nil || f.SessionSID != s.SID || f.AuthenticatedAt.IsZero() {
				t.Fatalf("flow after login %+v %v", f, err)
			}
			if err := h.svc.FinishFlow(context.Background(), flow); err != nil {
				t.Fatal(err)
			}
			if _, err := h.svc.LoadFlow(mustReq(b, "/"), flow); err == nil {
				t.Fatal("flow survives FinishFlow")
			}
		})
	}
}

// mustReq builds a request carrying the browser's cookies, for calling the
// service's Go API directly.
func mustReq(b *browser, path string) *http.Request {
	r, _ := http.NewRequest(http.MethodGet, b.h.srv.URL+path, nil)
	for _, c := range b.c.Jar.Cookies(r.URL) {
		r.AddCookie(c)
	}
	return r
}

func TestInviteRules(t *testing.T) {
	t.Run("expired invite", func(t *testing.T) {
		h := newHarness(t)
		b := h.browser()
		code := h.invite(t)
		h.clock.Advance(16 * time.Minute)
		if r, _ := b.registerBegin(t, code); r.status != 400 || r.errorCode(t) != "invalid_invite" {
			t.Fatalf("begin on expired invite: %d %s", r.status, r.body)
		}
		if p := b.get(t, "/enrol?invite="+code); p.status != 400 {
			t.Fatalf("enrol page on expired invite: %d", p.status)
		}
	})
	t.Run("expired between begin and finish", func(t *testing.T) {
		h := newHarness(t)
		b := h.browser()
		code := h.invite(t)
		k := newKey(virtualwebauthn.AuthenticatorOptions{})
		_, opts := b.registerBegin(t, code)
		h.clock.Advance(16 * time.Minute)
		r := b.postJSON(t, finishPath(code), virtualwebauthn.CreateAttestationResponse(h.rp, k.auth, k.cred, *opts))
		if r.status != 400 || r.errorCode(t) != "invalid_invite" {
			t.Fatalf("finish on expired invite: %d %s", r.status, r.body)
		}
	})
	t.Run("reused invite", func(t *testing.T) {
		h := newHarness(t)
		b := h.browser()
		code := h.invite(t)
		k1 := newKey(virtualwebauthn.AuthenticatorOptions{})
		k2 := newKey(virtualwebauthn.AuthenticatorOptions{})
		// Two begins before any finish: begin does not consume the invite.
		_, opts1 := b.registerBegin(t, code)
		if r := b.postJSON(t, finishPath(code), virtualwebauthn.CreateAttestationResponse(h.rp, k1.auth, k1.cred, *opts1)); r.status != 200 {
			t.Fatalf("first finish: %d %s", r.status, r.body)
		}
		r := b.postJSON(t, finishPath(code), virtualwebauthn.CreateAttestationResponse(h.rp, k2.auth, k2.cred, *opts1))
		if r.status != 400 || r.errorCode(t) != "invalid_invite" {
			t.Fatalf("second finish: %d %s", r.status, r.body)
		}
		if r, _ := b.registerBegin(t, code); r.status != 400 || r.errorCode(t) != "invalid_invite" {
			t.Fatalf("begin on used invite: %d %s", r.status, r.body)
		}
		creds, _ := h.store.ListCredentials(context.Background(), testUID)
		if len(creds) != 1 {
			t.Fatalf("%d credentials after a reused invite", len(creds))
		}
	})
	t.Run("unknown invite", func(t *testing.T) {
		h := newHarness(t)
		b := h.browser()
		if r, _ := b.registerBegin(t, "bm90LWFuLWludml0ZQ"); r.status != 400 || r.errorCode(t) != "invalid_invite" {
			t.Fatalf("unknown invite: %d %s", r.status, r.body)
		}
	})
	t.Run("issue for unknown person", func(t *testing.T) {
		h := newHarness(t)
		if _, _, _, err := h.svc.IssueInvite(context.Background(), "999999999999", "ra"); err == nil {
			t.Fatal("invite issued for an unknown person")
		}
	})
	t.Run("invite code is long and only its hash is stored", func(t *testing.T) {
		h := newHarness(t)
		code := h.invite(t)
		raw, err := base64.RawURLEncoding.DecodeString(code)
		if err != nil || len(raw) < 16 {
			t.Fatalf("invite code %q", code)
		}
		if _, err := h.store.GetInvite(context.Background(), []byte(code)); err == nil {
			t.Fatal("invite stored under its plain code")
		}
	})
}

// enrolled returns a harness with the test person holding k (AAL2).
func enrolled(t *testing.T, opts virtualwebauthn.AuthenticatorOptions) (*harness, *browser, *key) {
	t.Helper()
	h := newHarness(t)
	b := h.browser()
	k := newKey(opts)
	if r := b.enrol(t, h.invite(t), k); r.status != 200 {
		t.Fatalf("enrol: %d %s", r.status, r.body)
	}
	return h, b, k
}

func TestLoginRefusals(t *testing.T) {
	t.Run("wrong origin", func(t *testing.T) {
		h, b, k := enrolled(t, virtualwebauthn.AuthenticatorOptions{})
		h.rp.Origin = "https://evil.example"
		if r := b.login(t, b.startFlow(t, 2), k); r.status != 400 || r.errorCode(t) != "invalid_credential" {
			t.Fatalf("wrong origin: %d %s", r.status, r.body)
		}
	})
	t.Run("tampered signature", func(t *testing.T) {
		_, b, k := enrolled(t, virtualwebauthn.AuthenticatorOptions{})
		flow := b.startFlow(t, 2)
		_, opts := b.loginBegin(t, flow)
		var a map[string]any
		_ = json.Unmarshal([]byte(b.assertion(k, opts)), &a)
		resp := a["response"].(map[string]any)
		sig, _ := base64.RawURLEncoding.DecodeString(resp["signature"].(string))
		sig[len(sig)-3] ^= 0x55
		resp["signature"] = base64.RawURLEncoding.EncodeToString(sig)
		if r := b.postJSON(t, "/webauthn/login/finish?flow="+flow, a); r.status != 400 || r.errorCode(t) != "invalid_credential" {
			t.Fatalf("tampered: %d %s", r.status, r.body)
		}
		if s := b.session(t); s != nil {
			t.Fatal("session after a tampered assertion")
		}
		// The failed attempt used the challenge up: even the right
		// assertion for it is refused, and a new ceremony works.
		if r := b.postJSON(t, "/webauthn/login/finish?flow="+flow, b.assertion(k, opts)); r.status != 400 || r.errorCode(t) != "invalid_request" {
			t.Fatalf("finish after a failed attempt: %d %s", r.status, r.body)
		}
		if r := b.login(t, flow, k); r.status != 200 {
			t.Fatalf("new ceremony: %d %s", r.status, r.body)
		}
	})
	t.Run("expired challenge", func(t *testing.T) {
		h, b, k := enrolled(t, virtualwebauthn.AuthenticatorOptions{})
		flow := b.startFlow(t, 2)
		_, opts := b.loginBegin(t, flow)
		h.clock.Advance(authn.DefaultChallengeTTL)
		if r := b.postJSON(t, "/webauthn/login/finish?flow="+flow, b.assertion(k, opts)); r.status != 400 || r.errorCode(t) != "invalid_request" {
			t.Fatalf("expired challenge: %d %s", r.status, r.body)
		}
	})
	t.Run("replayed assertion", func(t *testing.T) {
		h, b, k := enrolled(t, virtualwebauthn.AuthenticatorOptions{})
		flow := b.startFlow(t, 2)
		_, opts := b.loginBegin(t, flow)
		k.cred.Counter = 1
		a := b.assertion(k, opts)
		if r := b.postJSON(t, "/webauthn/login/finish?flow="+flow, a); r.status != 200 {
			t.Fatalf("first: %d %s", r.status, r.body)
		}
		r := b.postJSON(t, "/webauthn/login/finish?flow="+flow, a)
		if r.status != 400 {
			t.Fatalf("replay: %d %s", r.status, r.body)
		}
		sessions, _ := h.store.ListSessions(context.Background(), testUID)
		if len(sessions) != 1 {
			t.Fatalf("%d sessions after a replay", len(sessions))
		}
	})
	t.Run("user verification missing", func(t *testing.T) {
		_, b, k := enrolled(t, virtualwebauthn.AuthenticatorOptions{})
		k.auth.Options.UserNotVerified = true
		if r := b.login(t, b.startFlow(t, 2), k); r.status != 400 || r.errorCode(t) != "user_verification_required" {
			t.Fatalf("no UV: %d %s", r.status, r.body)
		}
	})
	t.Run("user verification missing at enrolment", func(t *testing.T) {
		h := newHarness(t)
		b := h.browser()
		k := newKey(virtualwebauthn.AuthenticatorOptions{UserNotVerified: true})
		if r := b.enrol(t, h.invite(t), k); r.status != 400 || r.errorCode(t) != "user_verification_required" {
			t.Fatalf("no UV: %d %s", r.status, r.body)
		}
	})
	t.Run("sign counter regression", func(t *testing.T) {
		h := newHarness(t)
		b := h.browser()
		k := newKey(virtualwebauthn.AuthenticatorOptions{})
		k.cred.Counter = 5
		if r := b.enrol(t, h.invite(t), k); r.status != 200 {
			t.Fatalf("enrol: %d %s", r.status, r.body)
		}
		k.cred.Counter = 6
		if r := b.login(t, b.startFlow(t, 2), k); r.status != 200 {
			t.Fatalf("advancing counter: %d %s", r.status, r.body)
		}
		for _, c := range []uint32{6, 2} {
			k.cred.Counter = c
			if r := b.login(t, b.startFlow(t, 2), k); r.status != 400 || r.errorCode(t) != "invalid_credential" {
				t.Fatalf("counter %d after 6: %d %s", c, r.status, r.body)
			}
		}
		stored, _ := h.store.GetCredential(context.Background(), k.cred.ID)
		if stored.SignCount != 6 || stored.LastUsedAt.IsZero() {
			t.Fatalf("stored counter %d last used %v", stored.SignCount, stored.LastUsedAt)
		}
	})
	t.Run("flow bound to another browser", func(t *testing.T) {
		h, b, k := enrolled(t, virtualwebauthn.AuthenticatorOptions{})
		flow := b.startFlow(t, 2)
		other := h.browser()
		if r, _ := other.loginBegin(t, flow); r.status != 400 || r.errorCode(t) != "invalid_flow" {
			t.Fatalf("begin from another browser: %d %s", r.status, r.body)
		}
		_, opts := b.loginBegin(t, flow)
		if r := other.postJSON(t, "/webauthn/login/finish?flow="+flow, b.assertion(k, opts)); r.status != 400 || r.errorCode(t) != "invalid_flow" {
			t.Fatalf("finish from another browser: %d %s", r.status, r.body)
		}
		if p := other.get(t, "/login?flow="+flow); p.status != 400 {
			t.Fatalf("login page from another browser: %d", p.status)
		}
	})
	t.Run("expired flow", func(t *testing.T) {
		h, b, _ := enrolled(t, virtualwebauthn.AuthenticatorOptions{})
		flow := b.startFlow(t, 2)
		h.clock.Advance(16 * time.Minute)
		if r, _ := b.loginBegin(t, flow); r.status != 400 || r.errorCode(t) != "expired_flow" {
			t.Fatalf("expired flow: %d %s", r.status, r.body)
		}
	})
	t.Run("revoked credential", func(t *testing.T) {
		h, b, k := enrolled(t, virtualwebauthn.AuthenticatorOptions{})
		_, _ = h.store.UpdateCredential(context.Background(), k.cred.ID, func(c *authn.Credential) error {
			c.RevokedAt = h.clock.Now()
			return nil
		})
		if r := b.login(t, b.startFlow(t, 2), k); r.status != 400 || r.errorCode(t) != "invalid_credential" {
			t.Fatalf("revoked: %d %s", r.status, r.body)
		}
	})
	t.Run("closed person", func(t *testing.T) {
		h, b, k := enrolled(t, virtualwebauthn.AuthenticatorOptions{})
		_, _ = h.store.UpdatePerson(context.Background(), testUID, func(p *policy.Person) error {
			p.Status = policy.StatusClosed
			return nil
		})
		if r := b.login(t, b.startFlow(t, 2), k); r.status != 403 || r.errorCode(t) != "invalid_credential" {
			t.Fatalf("closed: %d %s", r.status, r.body)
		}
	})
	t.Run("AAL2 key for an AAL3 flow", func(t *testing.T) {
		_, b, k := enrolled(t, virtualwebauthn.AuthenticatorOptions{})
		if r := b.login(t, b.startFlow(t, 3), k); r.status != 403 || r.errorCode(t) != "authenticator_not_allowed" {
			t.Fatalf("aal2 key, aal3 flow: %d %s", r.status, r.body)
		}
	})
}

func TestStepUp(t *testing.T) {
	h := newHarness(t)
	b := h.browser()
	soft := newKey(virtualwebauthn.AuthenticatorOptions{})
	hard := newKey(virtualwebauthn.AuthenticatorOptions{})
	if r := b.enrol(t, h.invite(t), soft); r.status != 200 {
		t.Fatalf("enrol soft: %d %s", r.status, r.body)
	}
	if r := b.enrolAttested(t, h.invite(t), hard); r.status != 200 || r.json(t)["aal"] != float64(3) {
		t.Fatalf("enrol hard: %d %s", r.status, r.body)
	}
	if r := b.login(t, b.startFlow(t, 2), soft); r.status != 200 {
		t.Fatalf("aal2 login: %d %s", r.status, r.body)
	}
	first := b.session(t)
	flow := b.startFlow(t, 3)
	r, opts := b.loginBegin(t, flow)
	if r.status != 200 {
		t.Fatalf("step-up begin: %d %s", r.status, r.body)
	}
	want := base64.RawURLEncoding.EncodeToString(hard.cred.ID)
	if len(opts.AllowCredentials) != 1 || opts.AllowCredentials[0] != want {
		t.Fatalf("allowCredentials = %v, want only the AAL3 key %s", opts.AllowCredentials, want)
	}
	if r := b.postJSON(t, "/webauthn/login/finish?flow="+flow, b.assertion(hard, opts)); r.status != 200 {
		t.Fatalf("step-up finish: %d %s", r.status, r.body)
	}
	second := b.session(t)
	// The SSO session goes on under the same sid (its tokens and apps stay
	// tied to it); the previous cookie's session row is ended.
	if second.AAL != 3 || second.SID != first.SID || string(second.IDHash) == string(first.IDHash) {
		t.Fatalf("after step-up: %+v", second)
	}
	old, err := h.store.GetSession(context.Background(), first.IDHash)
	if err != nil || old.EndedAt.IsZero() || old.SID == first.SID {
		t.Fatalf("previous session not ended: %+v %v", old, err)
	}
}

func TestAddDevice(t *testing.T) {
	h := newHarness(t)
	b := h.browser()
	hard := newKey(virtualwebauthn.AuthenticatorOptions{})
	soft := newKey(virtualwebauthn.AuthenticatorOptions{})
	if r := b.enrolAttested(t, h.invite(t), hard); r.status != 200 {
		t.Fatalf("enrol: %d %s", r.status, r.body)
	}
	if r := b.enrol(t, h.invite(t), soft); r.status != 200 {
		t.Fatalf("enrol: %d %s", r.status, r.body)
	}
	tablet := newKey(virtualwebauthn.AuthenticatorOptions{BackupEligible: true, BackupState: true})

	if r, _ := b.registerBegin(t, ""); r.status != 401 {
		t.Fatalf("add device signed out: %d %s", r.status, r.body)
	}
	if r := b.login(t, b.startFlow(t, 2), soft); r.status != 200 {
		t.Fatalf("login: %d", r.status)
	}
	if r, _ := b.registerBegin(t, ""); r.status != 403 || r.errorCode(t) != "reauthentication_required" {
		t.Fatalf("add device at AAL2: %d %s", r.status, r.body)
	}
	if r := b.login(t, b.startFlow(t, 3), hard); r.status != 200 {
		t.Fatalf("aal3 login: %d %s", r.status, r.body)
	}
	h.clock.Advance(6 * time.Minute)
	if r, _ := b.registerBegin(t, ""); r.status != 403 || r.errorCode(t) != "reauthentication_required" {
		t.Fatalf("add device 6 minutes after sign-in: %d %s", r.status, r.body)
	}
	if r := b.login(t, b.startFlow(t, 3), hard); r.status != 200 {
		t.Fatalf("aal3 login: %d %s", r.status, r.body)
	}
	r, opts := b.registerBegin(t, "")
	if r.status != 200 {
		t.Fatalf("add device begin: %d %s", r.status, r.body)
	}
	if len(opts.ExcludeCredentials) != 2 {
		t.Fatalf("excludeCredentials = %v", opts.ExcludeCredentials)
	}
	r = b.postJSON(t, finishPath(""), virtualwebauthn.CreateAttestationResponse(h.rp, tablet.auth, tablet.cred, *opts))
	if r.status != 200 || r.json(t)["aal"] != float64(2) {
		t.Fatalf("add device finish: %d %s", r.status, r.body)
	}
	creds, _ := h.store.ListCredentials(context.Background(), testUID)
	if len(creds) != 3 {
		t.Fatalf("%d credentials", len(creds))
	}
	tablet.auth.AddCredential(tablet.cred)
	if r := b.login(t, b.startFlow(t, 2), tablet); r.status != 200 {
		t.Fatalf("login with the new device: %d %s", r.status, r.body)
	}
	if s := b.session(t); s.AAL != 2 || s.AMR[0] != "swk" {
		t.Fatalf("synced passkey session %+v", s)
	}
}

func TestSessionLifetimes(t *testing.T) {
	tests := []struct {
		name     string
		attested bool
		idle     time.Duration
	}{
		{name: "AAL2 idles out after 30 minutes", attested: false, idle: 30 * time.Minute},
		{name: "AAL3 idles out after 15 minutes", attested: true, idle: 15 * time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			b := h.browser()
			k := newKey(virtualwebauthn.AuthenticatorOptions{})
			if tt.attested {
				b.enrolAttested(t, h.invite(t), k)
			} else {
				b.enrol(t, h.invite(t), k)
			}
			if r := b.login(t, b.startFlow(t, 2), k); r.status != 200 {
				t.Fatalf("login: %d %s", r.status, r.body)
			}
			s := b.session(t)
			if !h.svc.Usable(s, h.clock.Now()) || h.svc.Usable(s, h.clock.Now().Add(tt.idle)) || !h.svc.Usable(s, h.clock.Now().Add(tt.idle-time.Second)) {
				t.Fatal("idle timeout wrong")
			}
			if !s.ExpiresAt.Equal(h.clock.Now().Add(12 * time.Hour)) {
				t.Fatalf("absolute expiry %v", s.ExpiresAt)
			}
			h.clock.Advance(12 * time.Hour)
			if s := b.session(t); s != nil {
				t.Fatal("session returned after absolute expiry")
			}
		})
	}
}

func TestLogout(t *testing.T) {
	_, b, k := enrolled(t, virtualwebauthn.AuthenticatorOptions{})
	if r := b.login(t, b.startFlow(t, 2), k); r.status != 200 {
		t.Fatalf("login: %d", r.status)
	}
	if r := b.postJSON(t, "/logout", ""); r.status != 200 {
		t.Fatalf("logout: %d", r.status)
	}
	if s := b.session(t); s != nil {
		t.Fatal("session after logout")
	}
}
