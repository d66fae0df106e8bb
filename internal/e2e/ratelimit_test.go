package e2e

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/nhsid/nhsid/audit"
	"github.com/nhsid/nhsid/internal/config"
	"github.com/nhsid/nhsid/internal/ratelimit"
	"github.com/nhsid/nhsid/policy"
)

// TestLockoutAndUnlock: failed sign-ins of one person bring a progressive
// delay (429 rate_limited with Retry-After), then a lockout (403 locked)
// that even the right key cannot pass, until an RA unlocks the person
// through the admin API. On both stores, so the state lives where every
// replica sees it.
func TestLockoutAndUnlock(t *testing.T) {
	for _, backend := range backends {
		t.Run(backend, func(t *testing.T) {
			e := newEnv(t, backend, func(c *config.Config) {
				c.RateLimits.PersonFailures = ratelimit.Failures{DelayAfter: 2, BaseDelay: 10 * time.Second,
					MaxDelay: 10 * time.Second, LockAfter: 3, Lockout: 30 * time.Minute, Window: time.Hour}
			})
			uid := e.newPerson("Ada", "Lovelace")
			b := e.newBrowserFor(uid)
			c := e.client(e.newRP("private_key_jwt", nil))

			attempt := func(tamper bool) (int, apiErr, string) { return signinAttempt(t, b, c, tamper) }
			steps := []struct {
				name    string
				advance time.Duration
				tamper  bool
				status  int
				code    string
				retry   bool
			}{
				{name: "failure 1", tamper: true, status: 400, code: "invalid_credential"},
				{name: "failure 2 starts the delay", tamper: true, status: 400, code: "invalid_credential"},
				{name: "right key too soon", status: 429, code: "rate_limited", retry: true},
				{name: "failure 3 after the delay locks", advance: 11 * time.Second, tamper: true, status: 400, code: "invalid_credential"},
				{name: "right key while locked", status: 403, code: "locked", retry: true},
			}
			for _, s := range steps {
				e.clock.Advance(s.advance)
				st, ae, retry := attempt(s.tamper)
				if st != s.status || ae.Code != s.code || (retry != "") != s.retry {
					t.Fatalf("%s: got %d %q Retry-After %q, want %d %q", s.name, st, ae.Code, retry, s.status, s.code)
				}
			}
			var lo struct {
				Locked bool `json:"locked"`
			}
			e.admin("GET", "/admin/v1/people/"+uid+"/lockout", nil, 200, &lo)
			mustEqual(t, "locked", lo.Locked, true)
			e.admin("POST", "/admin/v1/people/"+uid+"/unlock", nil, 200, nil)
			e.admin("GET", "/admin/v1/people/"+uid+"/lockout", nil, 200, &lo)
			mustEqual(t, "locked after unlock", lo.Locked, false)
			if st, ae, _ := attempt(false); st != 200 {
				t.Fatalf("after unlock: %d %+v", st, ae)
			}
		})
	}
}

// signinAttempt starts a flow for c and finishes it with a good or a
// tampered assertion; it returns the finish's status, error and
// Retry-After.
func signinAttempt(t *testing.T, b *browser, c *oidcClient, tamper bool) (int, apiErr, string) {
	t.Helper()
	loc := b.follow(c.conf.AuthCodeURL(randID(), oauth2.S256ChallengeOption(oauth2.GenerateVerifier())))
	flow := loc.Query().Get("flow")
	st, opts := b.postJSON("/webauthn/login/begin", map[string]string{"flow": flow})
	if st != 200 {
		t.Fatalf("login begin: %d %s", st, opts)
	}
	as, err := b.dev.Assert(opts)
	if err != nil {
		t.Fatal(err)
	}
	if tamper {
		var a map[string]any
		_ = json.Unmarshal(as, &a)
		resp := a["response"].(map[string]any)
		sig, _ := base64.RawURLEncoding.DecodeString(resp["signature"].(string))
		sig[len(sig)-3] ^= 0x55
		resp["signature"] = base64.RawURLEncoding.EncodeToString(sig)
		as, _ = json.Marshal(a)
	}
	req, _ := http.NewRequest("POST", b.e.issuer+"/webauthn/login/finish?flow="+url.QueryEscape(flow), strings.NewReader(string(as)))
	req.Header.Set("Content-Type", "application/json")
	resp, err := b.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var raw json.RawMessage
	_ = json.NewDecoder(resp.Body).Decode(&raw)
	return resp.StatusCode, decodeErr(resp.StatusCode, raw), resp.Header.Get("Retry-After")
}

// TestFailuresBeforeSuccess: failed sign-ins just before a successful one
// are a risk signal of that sign-in (from the lockout counter), and the
// success forgets them, so the next sign-in carries no such signal.
func TestFailuresBeforeSuccess(t *testing.T) {
	for _, backend := range backends {
		t.Run(backend, func(t *testing.T) {
			e := newEnv(t, backend, func(c *config.Config) {
				c.RateLimits.PersonFailures = ratelimit.Failures{DelayAfter: 10, BaseDelay: time.Second,
					MaxDelay: time.Second, LockAfter: 20, Lockout: time.Minute, Window: time.Hour}
			})
			uid := e.newPerson("Mary", "Seacole")
			b := e.newBrowserFor(uid)
			c := e.client(e.newRP("private_key_jwt", nil))
			successes := func() []audit.Event {
				var out []audit.Event
				for _, ev := range e.personEvents(uid) {
					if ev.Type == audit.SigninSuccess {
						out = append(out, ev)
					}
				}
				return out
			}
			// Each attempt from a new browser with the same key, so none
			// rides on an earlier session.
			try := func(tamper bool) (int, apiErr) {
				st, ae, _ := signinAttempt(t, e.browser(b.dev), c, tamper)
				return st, ae
			}
			burst := func(ev audit.Event) bool {
				return strings.Contains(fmt.Sprint(ev.Detail["risk_signals"]), policy.SignalFailureBurst)
			}
			if st, ae := try(false); st != 200 {
				t.Fatalf("first sign-in: %d %+v", st, ae)
			}
			for i := range 3 {
				if st, ae := try(true); st != 400 || ae.Code != "invalid_credential" {
					t.Fatalf("failure %d: %d %+v", i+1, st, ae)
				}
			}
			if st, ae := try(false); st != 200 {
				t.Fatalf("sign-in after failures: %d %+v", st, ae)
			}
			if st, ae := try(false); st != 200 {
				t.Fatalf("next sign-in: %d %+v", st, ae)
			}
			got := successes()
			if len(got) != 3 {
				t.Fatalf("%d sign-in successes audited, want 3", len(got))
			}
			if burst(got[0]) || !burst(got[1]) || burst(got[2]) {
				t.Fatalf("failures_before_success signals: %v, %v, %v; want only on the second",
					got[0].Detail["risk_signals"], got[1].Detail["risk_signals"], got[2].Detail["risk_signals"])
			}
		})
	}
}

// TestIPRateLimit: a source IP over its token endpoint rate gets 429
// rate_limited with Retry-After; an exempt CIDR is never limited.
func TestIPRateLimit(t *testing.T) {
	tests := []struct {
		name    string
		exempt  []string
		limited bool
	}{
		{name: "limited", limited: true},
		{name: "exempt loopback", exempt: []string{"127.0.0.0/8", "::1/128"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, "memory", func(c *config.Config) {
				c.RateLimits.Token = ratelimit.Rate{Limit: 3, Window: time.Minute}
				c.RateLimits.Exempt = tt.exempt
			})
			var last *http.Response
			for i := 0; i < 4; i++ {
				resp, err := http.PostForm(e.issuer+"/oauth2/token", url.Values{"grant_type": {"client_credentials"}})
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				last = resp
			}
			if got := last.StatusCode == http.StatusTooManyRequests; got != tt.limited {
				t.Fatalf("4th request: %d, limited=%v want %v", last.StatusCode, got, tt.limited)
			}
			if tt.limited && last.Header.Get("Retry-After") == "" {
				t.Fatal("no Retry-After")
			}
		})
	}
}
