package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/nhsid/nhsid/audit"
	"github.com/nhsid/nhsid/internal/config"
)

// xffTransport makes a browser appear at *ip, through the trusted proxy
// the risk tests configure (the loopback address).
type xffTransport struct {
	ip   *string
	base http.RoundTripper
}

func (x xffTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	if *x.ip != "" {
		r.Header.Set("X-Forwarded-For", *x.ip)
	}
	return x.base.RoundTrip(r)
}

// riskGeoCSV is the fake GeoIP database of the risk tests.
const riskGeoCSV = `cidr,country,city,lat,lon
192.0.2.0/24,GB,Leeds,53.80,-1.55
198.51.100.0/24,GB,London,51.51,-0.13
203.0.113.0/24,AU,Sydney,-33.87,151.21
`

const (
	ipLeeds  = "192.0.2.10"
	ipSydney = "203.0.113.5"
)

// riskEnv starts nhsid with the loopback proxy trusted and a fake GeoIP
// file.
func riskEnv(t *testing.T, backend string) *env {
	geo := filepath.Join(t.TempDir(), "geo.csv")
	if err := os.WriteFile(geo, []byte(riskGeoCSV), 0o600); err != nil {
		t.Fatal(err)
	}
	return newEnv(t, backend, func(c *config.Config) {
		c.TrustedProxies = []string{"127.0.0.1/32", "::1/128"}
		c.Risk.GeoIPFile = geo
	})
}

// riskBrowser is a browser at a settable address.
func (e *env) riskBrowser(ip *string) *browser {
	b := e.browser(e.device(false))
	b.http.Transport = xffTransport{ip: ip, base: http.DefaultTransport}
	return b
}

// setClock moves the server clock to the next t after now (hour and minute
// of day on a weekday).
func (e *env) setClock(weekday time.Weekday, hour, minute int) time.Time {
	now := e.clock.Now().UTC()
	target := time.Date(now.Year(), now.Month(), now.Day(), hour, minute, 0, 0, time.UTC)
	for !target.After(now) || target.Weekday() != weekday {
		target = target.Add(24 * time.Hour)
	}
	e.clock.Advance(target.Sub(now))
	return target
}

// riskAttempt starts a fresh sign-in (prompt=login) for c and runs the
// ceremony; it returns the finish status and reply and the login URL.
func (b *browser) riskAttempt(c *oidcClient) (int, []byte, *url.URL) {
	b.e.t.Helper()
	loc := b.follow(c.conf.AuthCodeURL(randID(), oauth2.SetAuthURLParam("prompt", "login"),
		oauth2.SetAuthURLParam("nonce", randID()), oauth2.S256ChallengeOption(oauth2.GenerateVerifier())))
	if !strings.HasPrefix(loc.String(), b.e.issuer+"/login") {
		b.e.t.Fatalf("expected the login page, got %s", loc)
	}
	st, raw, _ := b.login(loc)
	return st, raw, loc
}

func (b *browser) riskPage(path string) string {
	b.e.t.Helper()
	resp, raw := b.getRaw(path)
	if resp.StatusCode != 200 {
		b.e.t.Fatalf("GET %s: %d", path, resp.StatusCode)
	}
	return string(raw)
}

func TestRiskEngine(t *testing.T) {
	for _, backend := range backends {
		t.Run(backend, func(t *testing.T) {
			e := riskEnv(t, backend)
			uid := e.newPerson("Rhiannon", "Risk")
			ip := ipLeeds
			// The person's everyday AAL2 key and their AAL3 key.
			b := e.riskBrowser(&ip)
			b.mustEnrol(e.invite(uid), 2)
			key3 := e.device(true)
			(&browser{e: e, dev: key3, http: b.http}).mustEnrol(e.invite(uid), 3)
			c := e.client(e.newRP("client_secret_basic", nil))

			// A week of weekday mornings at the trust builds the profile.
			for _, day := range []time.Weekday{time.Monday, time.Tuesday, time.Wednesday, time.Thursday, time.Friday} {
				e.setClock(day, 10, 0)
				if st, raw, _ := b.riskAttempt(c); st != 200 {
					t.Fatalf("learning sign-in on %s: %d %s", day, st, raw)
				}
			}

			t.Run("known device and network: no step-up", func(t *testing.T) {
				e.setClock(time.Monday, 10, 30)
				if st, raw, _ := b.riskAttempt(c); st != 200 {
					t.Fatalf("sign-in: %d %s", st, raw)
				}
				ds, err := e.srv.Authn.RecentRiskDecisions(t.Context(), uid)
				if err != nil || len(ds) == 0 {
					t.Fatalf("decisions %v %v", ds, err)
				}
				if ds[0].Level != "low" || len(ds[0].Signals) != 0 || ds[0].Outcome != "allowed" || ds[0].Place != "Leeds, GB" {
					t.Fatalf("latest decision %+v", ds[0])
				}
			})

			var nb *browser
			t.Run("new device at 3 a.m. is asked for AAL3", func(t *testing.T) {
				e.setClock(time.Tuesday, 3, 12)
				nb = e.riskBrowser(&ip)
				nb.dev = b.dev // the same AAL2 key on a new browser
				st, raw, loginURL := nb.riskAttempt(c)
				if ae := decodeErr(st, raw); st != 401 || ae.Code != "step_up_required" {
					t.Fatalf("finish: %d %s, want 401 step_up_required", st, raw)
				}
				// The AAL2 key is no longer enough for this flow: it is not
				// even among the allowed credentials.
				if st, raw, _ := nb.login(loginURL); st != 400 && st != 403 {
					t.Fatalf("AAL2 retry: %d %s", st, raw)
				}
				// The next ceremony lists only the person's AAL3 key.
				flow := loginURL.Query().Get("flow")
				st, opts := nb.postJSON("/webauthn/login/begin", map[string]string{"flow": flow})
				var o struct {
					PublicKey struct {
						Allow []struct {
							ID string `json:"id"`
						} `json:"allowCredentials"`
					} `json:"publicKey"`
				}
				if err := json.Unmarshal(opts, &o); st != 200 || err != nil || len(o.PublicKey.Allow) != 1 {
					t.Fatalf("step-up begin: %d %s", st, opts)
				}
				nb.dev = key3
				if st, raw, _ := nb.login(loginURL); st != 200 {
					t.Fatalf("step-up with the AAL3 key: %d %s", st, raw)
				}
				ds, _ := e.srv.Authn.RecentRiskDecisions(t.Context(), uid)
				if len(ds) < 2 || ds[0].Outcome != "step-up passed" || ds[1].Outcome != "step-up required" || ds[0].Level != "medium" {
					t.Fatalf("decisions %+v", ds[:min(2, len(ds))])
				}
				if got := fmt.Sprint(ds[0].Reasons()); !strings.Contains(got, "new device") || !strings.Contains(got, "outside usual hours") {
					t.Fatalf("reasons %s", got)
				}
			})

			t.Run("account page shows the reasons", func(t *testing.T) {
				html := nb.riskPage("/account")
				for _, want := range []string{"Recent sign-ins", "new device", "03:12", "step-up passed", "Leeds, GB"} {
					if !strings.Contains(html, want) {
						t.Fatalf("account page lacks %q", want)
					}
				}
			})

			t.Run("impossible travel is denied and audited", func(t *testing.T) {
				e.setClock(time.Tuesday, 10, 0)
				if st, raw, _ := b.riskAttempt(c); st != 200 {
					t.Fatalf("sign-in in Leeds: %d %s", st, raw)
				}
				e.clock.Advance(time.Hour)
				ip = ipSydney
				st, raw, _ := b.riskAttempt(c)
				if ae := decodeErr(st, raw); st != 403 || ae.Code != "access_denied" || strings.Contains(ae.Message, "Sydney") {
					t.Fatalf("finish from Sydney: %d %s, want 403 access_denied", st, raw)
				}
				var found bool
				for _, ev := range e.personEvents(uid) {
					if ev.Type == audit.SigninFailure && ev.Outcome == audit.Denied && strings.Contains(fmt.Sprint(ev.Detail["risk_signals"]), "impossible_travel") {
						found = true
						mustEqual(t, "risk level", ev.Detail["risk_level"], "high")
						mustEqual(t, "audited ip", ev.IP, ipSydney)
					}
				}
				if !found {
					t.Fatal("no denied sign-in with impossible_travel in the audit trail")
				}
				ds, _ := e.srv.Authn.RecentRiskDecisions(t.Context(), uid)
				if ds[0].Outcome != "denied" || ds[0].Level != "high" {
					t.Fatalf("latest decision %+v", ds[0])
				}
				if !strings.Contains(e.logs.String(), "risk: sign-in denied; person and RA to be notified") {
					t.Fatal("the person was not notified")
				}
			})
		})
	}
}
