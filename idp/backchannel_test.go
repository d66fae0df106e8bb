package idp_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v3"

	"github.com/nhsid/nhsid/authn"
	"github.com/nhsid/nhsid/idp"
	"github.com/nhsid/nhsid/internal/outbound"
)

// bcRP is a back-channel logout endpoint that records what it gets.
type bcRP struct {
	mu     sync.Mutex
	status int
	delay  time.Duration
	tokens []string
	srv    *httptest.Server
}

func newBCRP(t *testing.T, status int) *bcRP {
	r := &bcRP{status: status}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.mu.Lock()
		r.tokens = append(r.tokens, req.PostFormValue("logout_token"))
		st, d := r.status, r.delay
		r.mu.Unlock()
		if d > 0 {
			select {
			case <-time.After(d):
			case <-req.Context().Done():
			}
		}
		w.WriteHeader(st)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *bcRP) hits() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.tokens)
}

func (r *bcRP) set(status int) {
	r.mu.Lock()
	r.status = status
	r.mu.Unlock()
}

func logoutEnv(t *testing.T) *env {
	return newEnv(t, func(c *idp.Config, d *idp.Deps) {
		c.Logout = idp.LogoutConfig{InitialBackoff: 10 * time.Second, MaxBackoff: time.Hour, RetryWindow: time.Minute}
		d.Outbound = outbound.New(outbound.Options{AllowLoopback: true, Timeout: 300 * time.Millisecond})
	})
}

// endSessionWith registers a back-channel client for rp, makes it a
// participant of session sid and ends the session.
func (e *env) endSessionWith(rp *bcRP, sid string, mod func(*idp.Client)) string {
	e.t.Helper()
	c, _ := e.webClient(func(c *idp.Client) {
		c.BackchannelLogoutURI = rp.srv.URL + "/bcl"
		if mod != nil {
			mod(c)
		}
	})
	ctx := context.Background()
	if err := e.store.AddSessionParticipant(ctx, authn.SessionParticipant{SID: sid, Kind: "oidc", PartyID: c.ID, FirstAt: e.clock.Now()}); err != nil {
		e.t.Fatal(err)
	}
	e.p.SessionEnded(ctx, authn.Session{SID: sid, PersonUID: "555000000001"}, authn.EndLogout)
	return c.ID
}

func (e *env) deliver() int {
	e.t.Helper()
	n, err := e.p.DeliverLogouts(context.Background())
	if err != nil {
		e.t.Fatalf("DeliverLogouts: %v", err)
	}
	return n
}

func TestLogoutTokenShape(t *testing.T) {
	tests := []struct {
		name, alg string
	}{
		{"default RS256", ""},
		{"client ES256", idp.AlgES256},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := logoutEnv(t)
			rp := newBCRP(t, http.StatusNoContent)
			id := e.endSessionWith(rp, "sid-shape", func(c *idp.Client) { c.IDTokenSignedResponseAlg = tt.alg })
			if n := e.deliver(); n != 1 {
				t.Fatalf("delivered %d", n)
			}
			tok := rp.tokens[0]
			if err := e.p.VerifyForTest(context.Background(), tok); err != nil {
				t.Fatalf("logout_token does not verify against the key set: %v", err)
			}
			jws, err := jose.ParseSigned(tok)
			if err != nil {
				t.Fatal(err)
			}
			h := jws.Signatures[0].Header
			want := tt.alg
			if want == "" {
				want = idp.AlgRS256
			}
			if h.Algorithm != want || h.ExtraHeaders["typ"] != "logout+jwt" || h.KeyID == "" {
				t.Fatalf("header alg=%s typ=%v kid=%q", h.Algorithm, h.ExtraHeaders["typ"], h.KeyID)
			}
			if _, ok := h.ExtraHeaders["x-nhsid-alg"]; ok {
				t.Fatal("private header leaked")
			}
			var c map[string]any
			if err := json.Unmarshal(jws.UnsafePayloadWithoutVerification(), &c); err != nil {
				t.Fatal(err)
			}
			if c["iss"] != e.issuer || c["aud"] != id || c["sid"] != "sid-shape" || c["sub"] != "555000000001" || c["jti"] == "" {
				t.Fatalf("claims %v", c)
			}
			ev, _ := c["events"].(map[string]any)
			if _, ok := ev["http://schemas.openid.net/event/backchannel-logout"]; !ok || len(ev) != 1 {
				t.Fatalf("events %v", c["events"])
			}
			if _, ok := c["nonce"]; ok {
				t.Fatal("nonce in a logout_token")
			}
			iat, _ := c["iat"].(float64)
			exp, _ := c["exp"].(float64)
			if iat == 0 || exp <= iat {
				t.Fatalf("iat %v exp %v", iat, exp)
			}
			if e.deliver() != 0 || rp.hits() != 1 {
				t.Fatal("a delivered logout was sent again")
			}
		})
	}
}

// TestLogoutDeliveryBackoff: failures are retried with doubling backoff on
// the injected clock, and given up once the retry window has closed.
func TestLogoutDeliveryBackoff(t *testing.T) {
	e := logoutEnv(t)
	rp := newBCRP(t, http.StatusServiceUnavailable)
	e.endSessionWith(rp, "sid-backoff", nil)
	steps := []struct {
		name    string
		advance time.Duration
		hits    int
	}{
		{"first attempt at once", 0, 1},
		{"not before 10s", 9 * time.Second, 1},
		{"second after 10s", time.Second, 2},
		{"not before 20s more", 19 * time.Second, 2},
		{"third after 20s", time.Second, 3},
		// The next would be at 70s, past the 60s window: given up.
		{"given up", 10 * time.Minute, 3},
	}
	for _, s := range steps {
		e.clock.Add(s.advance)
		e.deliver()
		if got := rp.hits(); got != s.hits {
			t.Fatalf("%s: %d attempts, want %d", s.name, got, s.hits)
		}
	}
	rp.set(http.StatusOK)
	e.clock.Add(time.Hour)
	if e.deliver() != 0 || rp.hits() != 3 {
		t.Fatal("a given-up delivery was retried")
	}
}

// TestLogoutDeliveryRecovers: a down RP gets the token once it is back.
func TestLogoutDeliveryRecovers(t *testing.T) {
	e := logoutEnv(t)
	rp := newBCRP(t, http.StatusBadGateway)
	e.endSessionWith(rp, "sid-recover", nil)
	e.deliver()
	rp.set(http.StatusOK)
	e.clock.Add(10 * time.Second)
	if n := e.deliver(); n != 1 {
		t.Fatalf("delivered %d after recovery", n)
	}
}

// TestLogoutSlowRPDoesNotBlock: a hanging RP costs at most the outbound
// timeout, and ending the session never waits for it.
func TestLogoutSlowRPDoesNotBlock(t *testing.T) {
	e := logoutEnv(t)
	slow := newBCRP(t, http.StatusOK)
	slow.delay = 5 * time.Second
	start := time.Now()
	e.endSessionWith(slow, "sid-slow", nil)
	if d := time.Since(start); d > time.Second {
		t.Fatalf("ending the session took %v", d)
	}
	start = time.Now()
	if n := e.deliver(); n != 0 {
		t.Fatalf("delivered %d to a hanging RP", n)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("delivery pass took %v", d)
	}
}

// TestLogoutRefusesPrivateAddress: the default outbound client will not
// deliver to loopback (an RP cannot point nhsid at its internal network).
func TestLogoutRefusesPrivateAddress(t *testing.T) {
	e := newEnv(t, func(c *idp.Config, d *idp.Deps) {
		c.Logout = idp.LogoutConfig{RetryWindow: time.Minute}
	})
	rp := newBCRP(t, http.StatusOK)
	e.endSessionWith(rp, "sid-private", nil)
	e.deliver()
	if rp.hits() != 0 {
		t.Fatal("delivered to a loopback address with the default client")
	}
}
