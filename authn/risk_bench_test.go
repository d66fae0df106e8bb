package authn_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/descope/virtualwebauthn"

	"github.com/nhsid/nhsid/authn"
	"github.com/nhsid/nhsid/policy"
	"github.com/nhsid/nhsid/store/memory"
)

// riskHarness is a harness whose service has the risk engine wired (or
// not, when off).
func riskHarness(tb testing.TB, off bool) *harness {
	tb.Helper()
	st := memory.New()
	clk := &clock{t: time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)}
	deps := authn.Deps{Store: st, People: st, Now: clk.Now, Log: slog.New(slog.DiscardHandler)}
	if !off {
		e, err := policy.NewRiskEngine(policy.RiskConfig{}, nil)
		if err != nil {
			tb.Fatal(err)
		}
		deps.Risk = &authn.Risk{Engine: e, Store: st}
	}
	svc, err := authn.New(authn.Config{PublicURL: testPublicURL}, deps)
	if err != nil {
		tb.Fatal(err)
	}
	mux := http.NewServeMux()
	svc.Mount(mux)
	mux.HandleFunc("GET /test/start", func(w http.ResponseWriter, r *http.Request) {
		u, err := svc.StartFlow(w, r, authn.Flow{Kind: "oidc", ClientID: "c1", MinAAL: 2, ResumeURL: "/test/resume", RequestedAt: clk.Now()})
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		_, _ = io.WriteString(w, u)
	})
	srv := httptest.NewServer(mux)
	tb.Cleanup(srv.Close)
	if err := st.CreatePerson(context.Background(), policy.Person{
		UID: testUID, GivenName: "Alex", FamilyName: "Morgan", IDAssuranceLevel: 3, Status: policy.StatusActive,
		CreatedAt: clk.Now(), UpdatedAt: clk.Now(),
	}); err != nil {
		tb.Fatal(err)
	}
	return &harness{srv: srv, svc: svc, store: st, clock: clk,
		rp: virtualwebauthn.RelyingParty{ID: "localhost", Name: "NHS ID", Origin: testPublicURL}}
}

// riskSignedIn enrols a key and returns a browser that signs in with it.
func riskSignedIn(tb testing.TB, h *harness) func() {
	b := h.browser()
	k := newKey(virtualwebauthn.AuthenticatorOptions{})
	if r := b.enrol(tb, h.invite(tb), k); r.status != 200 {
		tb.Fatalf("enrol: %d %s", r.status, r.body)
	}
	return func() {
		if r := b.login(tb, b.startFlow(tb, 2), k); r.status != 200 {
			tb.Fatalf("login: %d %s", r.status, r.body)
		}
	}
}

// BenchmarkLoginRisk alternates whole sign-ins (start, begin, finish) on a
// service without the risk engine and one with it, so both see the same
// load, and reports each mean and what the engine adds (profile read,
// evaluation, profile update):
//
//	go test ./authn/ -run '^$' -bench LoginRisk
func BenchmarkLoginRisk(b *testing.B) {
	offLogin := riskSignedIn(b, riskHarness(b, true))
	onLogin := riskSignedIn(b, riskHarness(b, false))
	for range 10 { // warm up; the profile fills in
		offLogin()
		onLogin()
	}
	var off, on time.Duration
	b.ResetTimer()
	for b.Loop() {
		t0 := time.Now()
		offLogin()
		t1 := time.Now()
		onLogin()
		off += t1.Sub(t0)
		on += time.Since(t1)
	}
	n := float64(b.N)
	b.ReportMetric(float64(off.Nanoseconds())/n, "off-ns/login")
	b.ReportMetric(float64(on.Nanoseconds())/n, "on-ns/login")
	b.ReportMetric(float64(on)/float64(off), "on/off")
	b.ReportMetric(float64((on-off).Microseconds())/n, "added-µs/login")
}
