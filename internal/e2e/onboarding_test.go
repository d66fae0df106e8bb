package e2e

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/go-jose/go-jose/v3"

	"github.com/nhsid/nhsid/policy"
)

// onboardingApp is the part of an application view the test reads.
type onboardingApp struct {
	ID                 string   `json:"id"`
	Status             string   `json:"status"`
	SandboxClientID    string   `json:"sandbox_client_id"`
	ProductionClientID string   `json:"production_client_id"`
	MissingSignOffs    []string `json:"missing_sign_offs"`
	Questions          []struct {
		ID, Text, Answer string
	} `json:"questions"`
	History []struct{ Action string } `json:"history"`
}

var verifyLink = regexp.MustCompile(`/onboarding/verify\?token=([A-Za-z0-9_-]+)`)

// newIntegrator signs up through email verification, enrols a passkey
// (AAL2) and signs in to /onboarding; it returns the integrator's browser.
func (e *env) newIntegrator(email string) *browser {
	e.t.Helper()
	b := e.browser(e.device(false))
	if resp := b.get("/onboarding"); resp.StatusCode != 200 {
		e.t.Fatalf("GET /onboarding: %d", resp.StatusCode)
	}
	u, _ := url.Parse(e.issuer + "/onboarding/")
	csrf := ""
	for _, c := range b.http.Jar.Cookies(u) {
		if c.Name == "nhsid_onboarding_csrf" {
			csrf = c.Value
		}
	}
	before := len(verifyLink.FindAllString(e.logs.String(), -1))
	resp, err := b.http.PostForm(e.issuer+"/onboarding/signup", url.Values{"csrf": {csrf}, "email": {email},
		"given_name": {"Ivy"}, "family_name": {"Integrator"}, "organisation": {"Acme Health Ltd"}})
	if err != nil || resp.StatusCode != http.StatusSeeOther {
		e.t.Fatalf("signup: %v %v", err, resp)
	}
	resp.Body.Close()
	links := verifyLink.FindAllString(e.logs.String(), -1)
	if len(links) != before+1 {
		e.t.Fatalf("no verification link logged")
	}
	resp = b.get(links[len(links)-1])
	loc, _ := url.Parse(resp.Header.Get("Location"))
	if resp.StatusCode != http.StatusSeeOther || loc.Path != "/enrol" {
		e.t.Fatalf("verify: %d %s", resp.StatusCode, loc)
	}
	b.mustEnrol(loc.Query().Get("invite"), 2)
	// The link is single use.
	if resp := b.get(links[len(links)-1]); resp.StatusCode != http.StatusBadRequest {
		e.t.Fatalf("second use of the link: %d", resp.StatusCode)
	}
	login := b.follow("/onboarding/signin")
	st, raw, redirect := b.login(login)
	if st != 200 {
		e.t.Fatalf("integrator login: %d %s", st, raw)
	}
	if got := b.follow(redirect); got.Path != "/onboarding" {
		e.t.Fatalf("after login: %s", got)
	}
	return b
}

// onboardingJSON calls the integrator API with b's session.
func (b *browser) onboardingJSON(method, path string, body any, want int, out any) {
	b.e.t.Helper()
	var st int
	var raw []byte
	if method == "GET" {
		resp, err := b.http.Get(b.e.issuer + path)
		if err != nil {
			b.e.t.Fatal(err)
		}
		defer resp.Body.Close()
		st = resp.StatusCode
		raw = readAll(resp)
	} else {
		st, raw = b.postJSON(path, body)
	}
	if st != want {
		b.e.t.Fatalf("%s %s: %d, want %d: %s", method, path, st, want, raw)
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			b.e.t.Fatalf("decode %s: %v", raw, err)
		}
	}
}

func readAll(resp *http.Response) []byte {
	var sb strings.Builder
	buf := make([]byte, 4096)
	for {
		n, err := resp.Body.Read(buf)
		sb.Write(buf[:n])
		if err != nil {
			return []byte(sb.String())
		}
	}
}

// applicationInput is a valid application for an rp with key.
func applicationInput(key *rsa.PrivateKey, redirectURI string, scopes ...string) map[string]any {
	return map[string]any{
		"organisation": "Acme Health Ltd", "product": "Ward Rounds",
		"commissioner": "NHS Example ICB", "commissioning_evidence": "Contract signed 2026-01-10", "commissioning_reference": "ICB-2026-042",
		"hosting_location": "UK", "serves_england": true, "user_groups": []string{"nurses", "doctors"},
		"scopes": scopes, "required_aal": 2, "redirect_uris": []string{redirectURI},
		"jwks":     jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &key.PublicKey, KeyID: "rp-1", Algorithm: "RS256", Use: "sig"}}},
		"contacts": []map[string]string{{"name": "Ivy Integrator", "email": "ivy@acme.example"}},
	}
}

// integratorRP is a relying party whose key and callback the integrator holds.
func (e *env) integratorRP() *rp {
	cb := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(200) }))
	e.t.Cleanup(cb.Close)
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		e.t.Fatal(err)
	}
	return &rp{key: k, redirectURI: cb.URL + "/callback", cb: cb}
}

func (r *rp) as(id string) *rp { c := *r; c.id = id; return &c }

// authorizeError runs an authorization for b and returns the error code at
// the callback ("" if a code was issued).
func (b *browser) authorizeError(c *oidcClient) string {
	b.e.t.Helper()
	cb, _, _, _ := b.signIn(c)
	if cb.Query().Get("code") != "" {
		return ""
	}
	if e := cb.Query().Get("error"); e != "" {
		return e
	}
	return "no_code:" + cb.Path
}

func TestOnboarding(t *testing.T) {
	for _, backend := range backends {
		t.Run(backend, func(t *testing.T) { testOnboarding(t, backend) })
	}
}

func testOnboarding(t *testing.T, backend string) {
	e := newEnv(t, backend)
	e.admin("POST", "/admin/v1/organisations", map[string]any{"code": "ONB01", "name": "Example Trust"}, 201, nil)
	e.admin("POST", "/admin/v1/roles", policy.SampleCatalogue(), 201, nil)
	ib := e.newIntegrator("ivy@acme.example")
	key := e.integratorRP()

	// Apply: a sandbox client at once.
	var sub struct {
		Application onboardingApp `json:"application"`
	}
	ib.onboardingJSON("POST", "/onboarding/api/applications", applicationInput(key.key, key.redirectURI, "openid", "profile", "nhsperson", "nationalrbacaccess"), 201, &sub)
	app := sub.Application
	if app.Status != "submitted" || app.SandboxClientID == "" || app.ProductionClientID != "" {
		t.Fatalf("submitted application: %+v", app)
	}
	sandbox := e.client(key.as(app.SandboxClientID), "openid", "profile", "nhsperson")

	// A test account (realistic role from the sample catalogue) signs in
	// to the sandbox; the ID token carries the sandbox marker.
	var ta struct {
		UID          string `json:"uid"`
		PersonRoleID string `json:"person_roleid"`
	}
	e.admin("POST", "/admin/v1/onboarding/test-accounts", map[string]any{"given_name": "Tess", "family_name": "Tester", "org_code": "ONB01"}, 201, &ta)
	if ta.PersonRoleID == "" {
		t.Fatalf("test account without a position: %+v", ta)
	}
	tb := e.browser(e.device(true))
	tb.mustEnrol(e.invite(ta.UID), 3)
	cb, state, verifier, nonce := tb.signIn(sandbox)
	_, _, claims := sandbox.exchange(cb, state, verifier, nonce)
	mustEqual(t, "sandbox marker", claims["nhsid_environment"], "sandbox")

	// A production person can never sign in to the sandbox client.
	prodUID := e.newPerson("Paula", "Production")
	pb := e.browser(e.device(true))
	pb.mustEnrol(e.invite(prodUID), 3)
	mustEqual(t, "production person at sandbox", pb.authorizeError(sandbox), "access_denied")
	// Nor can the integrator, who holds no positions.
	if _, st := e.assignPosition(ib, "ONB01"); st != 400 {
		t.Fatalf("position for integrator: status %d, want 400", st)
	}

	// Review: question, answer, sign-offs, approval.
	var view onboardingApp
	e.admin("GET", "/admin/v1/onboarding/applications", nil, 200, &struct {
		Items *[]onboardingApp `json:"items"`
	}{&[]onboardingApp{}})
	e.admin("POST", "/admin/v1/onboarding/applications/"+app.ID+"/questions", map[string]string{"text": "Which ICB signed the contract?"}, 201, &view)
	mustEqual(t, "status after question", view.Status, "questions")
	var mine struct{ Items []onboardingApp }
	ib.onboardingJSON("GET", "/onboarding/api/applications", nil, 200, &mine)
	if len(mine.Items) != 1 || len(mine.Items[0].Questions) != 1 {
		t.Fatalf("integrator view: %+v", mine)
	}
	e.admin("POST", "/admin/v1/onboarding/applications/"+app.ID+"/decision", map[string]string{"outcome": "approved", "reasons": "ok"}, 409, nil)
	ib.onboardingJSON("POST", "/onboarding/api/applications/"+app.ID+"/answers",
		map[string]string{"question_id": mine.Items[0].Questions[0].ID, "text": "NHS Example ICB, reference ICB-2026-042."}, 200, &view)
	mustEqual(t, "status after answer", view.Status, "submitted")
	mustEqual(t, "sign-offs needed", view.MissingSignOffs, []string{"scope:nationalrbacaccess", "aal"})
	e.admin("POST", "/admin/v1/onboarding/applications/"+app.ID+"/decision", map[string]string{"outcome": "approved", "reasons": "ok"}, 409, nil)
	for _, item := range view.MissingSignOffs {
		e.admin("POST", "/admin/v1/onboarding/applications/"+app.ID+"/sign-offs", map[string]string{"item": item, "note": "board minute 12"}, 200, nil)
	}
	var dec struct {
		Application onboardingApp `json:"application"`
	}
	e.admin("POST", "/admin/v1/onboarding/applications/"+app.ID+"/decision", map[string]string{"outcome": "approved", "reasons": "Meets the criteria."}, 200, &dec)
	prodID := dec.Application.ProductionClientID
	if dec.Application.Status != "approved" || prodID == "" {
		t.Fatalf("approval: %+v", dec.Application)
	}
	var prodClient struct {
		Scope       string `json:"scope"`
		Environment string `json:"nhsid_environment"`
	}
	e.admin("GET", "/admin/v1/clients/"+prodID, nil, 200, &prodClient)
	mustEqual(t, "approved scopes", prodClient.Scope, "openid profile nhsperson nationalrbacaccess")
	mustEqual(t, "environment", prodClient.Environment, "production")

	// The production client serves production people, never test accounts.
	prod := e.client(key.as(prodID), "openid", "profile", "nhsperson")
	cb, state, verifier, nonce = pb.signIn(prod)
	_, _, claims = prod.exchange(cb, state, verifier, nonce)
	if _, ok := claims["nhsid_environment"]; ok {
		t.Fatal("production token carries the sandbox marker")
	}
	mustEqual(t, "test account at production", tb.authorizeError(prod), "access_denied")

	// A change request (extra scope) is not effective until approved.
	var change onboardingApp
	ib.onboardingJSON("POST", "/onboarding/api/applications/"+app.ID+"/changes",
		applicationInput(key.key, key.redirectURI, "openid", "profile", "nhsperson", "nationalrbacaccess", "email"), 201, &change)
	withEmail := e.client(key.as(prodID), "openid", "profile", "email")
	if got := pb.authorizeError(withEmail); got != "invalid_scope" {
		t.Fatalf("extra scope before approval: %q, want invalid_scope", got)
	}
	for _, item := range []string{"scope:nationalrbacaccess", "aal"} {
		e.admin("POST", "/admin/v1/onboarding/applications/"+change.ID+"/sign-offs", map[string]string{"item": item}, 200, nil)
	}
	e.admin("POST", "/admin/v1/onboarding/applications/"+change.ID+"/decision", map[string]string{"outcome": "approved", "reasons": "Email needed for notifications."}, 200, nil)
	cb, state, verifier, nonce = pb.signIn(withEmail)
	tok, _, _ := withEmail.exchange(cb, state, verifier, nonce)
	if sc, _ := tok.Extra("scope").(string); !strings.Contains(" "+sc+" ", " email ") {
		t.Fatalf("email scope not granted after approval: %q", sc)
	}

	// Rejected: no client can obtain a token.
	key2 := e.integratorRP()
	sub.Application = onboardingApp{}
	ib.onboardingJSON("POST", "/onboarding/api/applications", applicationInput(key2.key, key2.redirectURI, "openid", "profile"), 201, &sub)
	rejected := sub.Application
	dec = struct {
		Application onboardingApp `json:"application"`
	}{}
	e.admin("POST", "/admin/v1/onboarding/applications/"+rejected.ID+"/decision", map[string]string{"outcome": "rejected", "reasons": "No commission."}, 200, &dec)
	if dec.Application.ProductionClientID != "" {
		t.Fatal("rejected application has a production client")
	}
	if got := e.newBrowserFor(ta.UID).authorizeError(e.client(key2.as(rejected.SandboxClientID), "openid", "profile")); got == "" {
		t.Fatal("rejected application's sandbox client still issues codes")
	}

	// Deferred: the sandbox client only.
	key3 := e.integratorRP()
	sub.Application = onboardingApp{}
	ib.onboardingJSON("POST", "/onboarding/api/applications", applicationInput(key3.key, key3.redirectURI, "openid", "profile"), 201, &sub)
	deferred := sub.Application
	dec = struct {
		Application onboardingApp `json:"application"`
	}{}
	e.admin("POST", "/admin/v1/onboarding/applications/"+deferred.ID+"/decision", map[string]string{"outcome": "deferred", "reasons": "Awaiting the contract."}, 200, &dec)
	if dec.Application.ProductionClientID != "" || dec.Application.Status != "deferred" {
		t.Fatalf("deferred: %+v", dec.Application)
	}
	sb3 := e.client(key3.as(deferred.SandboxClientID), "openid", "profile")
	mustEqual(t, "deferred sandbox for test account", tb.authorizeError(sb3), "")

	// Every step is audited.
	var events struct {
		Items []struct {
			Detail map[string]any `json:"detail"`
		} `json:"items"`
	}
	e.admin("GET", "/admin/v1/audit?type=admin.change&limit=200", nil, 200, &events)
	actions := map[string]bool{}
	for _, ev := range events.Items {
		if ev.Detail["object"] == "onboarding_application" {
			actions[ev.Detail["action"].(string)] = true
		}
	}
	for _, a := range []string{"submitted", "question_asked", "question_answered", "signed_off:aal", "decided:approved", "change_requested", "decided:rejected", "decided:deferred"} {
		if !actions[a] {
			t.Errorf("no audit event for %s (have %v)", a, actions)
		}
	}
}

// assignPosition tries to give the integrator of b a position (it must fail).
func (e *env) assignPosition(b *browser, org string) (string, int) {
	var mine struct {
		Items []struct {
			IntegratorUID string `json:"integrator_uid"`
		}
	}
	b.onboardingJSON("GET", "/onboarding/api/applications", nil, 200, &mine)
	uid := mine.Items[0].IntegratorUID
	req, _ := http.NewRequest("POST", e.adm.URL+"/admin/v1/people/"+uid+"/positions",
		strings.NewReader(`{"org_code":"`+org+`","role_code":"S8000:G8000:R8000"}`))
	req.Header.Set("Authorization", "Bearer "+e.adminToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	resp.Body.Close()
	return uid, resp.StatusCode
}
