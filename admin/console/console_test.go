package console

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nhsid/nhsid/audit"
	"github.com/nhsid/nhsid/authn"
	"github.com/nhsid/nhsid/policy"
	"github.com/nhsid/nhsid/store/memory"
)

// fakeSessions maps the "sid" cookie to a session and records the flows
// the console starts.
type fakeSessions struct {
	mu       sync.Mutex
	sessions map[string]*authn.Session
	flows    []authn.Flow
}

func (f *fakeSessions) CurrentSession(r *http.Request) (*authn.Session, error) {
	c, err := r.Cookie("sid")
	if err != nil {
		return nil, nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	s := f.sessions[c.Value]
	if s == nil {
		return nil, nil
	}
	cp := *s
	return &cp, nil
}

func (f *fakeSessions) Usable(s *authn.Session, now time.Time) bool {
	return s != nil && s.EndedAt.IsZero() && now.Before(s.ExpiresAt)
}

func (f *fakeSessions) TouchSession(context.Context, *authn.Session) error { return nil }

func (f *fakeSessions) StartFlow(w http.ResponseWriter, r *http.Request, fl authn.Flow) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.flows = append(f.flows, fl)
	return "/login?flow=test-flow", nil
}

func (f *fakeSessions) LoadFlow(*http.Request, string) (*authn.Flow, error) {
	return nil, errors.New("no flows here")
}

func (f *fakeSessions) FinishFlow(context.Context, string) error { return nil }

type fakeInvites struct{ n int }

func (f *fakeInvites) IssueInvite(_ context.Context, uid, by string) (string, string, time.Time, error) {
	f.n++
	code := "invite-code-" + uid
	return code, "http://localhost/enrol?invite=" + code, time.Now().Add(15 * time.Minute), nil
}

type recorder struct {
	mu     sync.Mutex
	events []audit.Event
}

func (r *recorder) Record(_ context.Context, e audit.Event) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
	return nil
}

func (r *recorder) RecordGrouped(ctx context.Context, e audit.Event) error { return r.Record(ctx, e) }

// fakeLocks holds lockouts by person.
type fakeLocks struct {
	mu    sync.Mutex
	until map[string]time.Time
}

func (f *fakeLocks) Locked(_ context.Context, uid string) (bool, time.Time, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	u := f.until[uid]
	return u.After(time.Now()), u, nil
}

func (f *fakeLocks) Unlock(_ context.Context, uid string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.until, uid)
	return nil
}

// fixture is a console over a memory store with organisations RXA (parent
// of RXA01) and RXB, an RA Manager at RXA, an RA Agent at RXB, a clinician
// at RXA and someone with no RA role.
type fixture struct {
	t                     *testing.T
	st                    *memory.Store
	svc                   *policy.Service
	con                   *Console
	mux                   *http.ServeMux
	sess                  *fakeSessions
	inv                   *fakeInvites
	rec                   *recorder
	locks                 *fakeLocks
	raA, raB, clin, plain string
	clinPos               policy.Position
	clinCred              []byte
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	ctx := context.Background()
	st := memory.New()
	svc := &policy.Service{Store: st, Now: time.Now, Rand: rand.Reader}
	op := policy.OperatorActor("operator:test")
	js, _ := policy.SampleCatalogueJSON()
	if _, err := svc.ImportCatalogue(ctx, op, js, false); err != nil {
		t.Fatal(err)
	}
	for _, o := range []policy.Organisation{{Code: "RXA", Name: "Alpha NHS Trust"}, {Code: "RXA01", Name: "Alpha General Hospital", ParentCode: "RXA"}, {Code: "RXB", Name: "Beta NHS Trust"}} {
		if _, err := svc.CreateOrganisation(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	person := func(given, family string) string {
		p, err := svc.CreatePerson(ctx, policy.Person{GivenName: given, FamilyName: family, Email: strings.ToLower(given) + "@example.nhs.uk"})
		if err != nil {
			t.Fatal(err)
		}
		return p.UID
	}
	assign := func(uid, org, role string) policy.Position {
		p, err := svc.AssignPosition(ctx, op, uid, policy.PositionInput{OrgCode: org, RoleCode: role})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	f := &fixture{t: t, st: st, svc: svc}
	f.raA, f.raB, f.clin, f.plain = person("Rita", "Manager"), person("Bob", "Agent"), person("Carol", "Clinician"), person("Pat", "Plain")
	assign(f.raA, "RXA", policy.SampleRAManager)
	assign(f.raB, "RXB", policy.SampleRAAgent)
	f.clinPos = assign(f.clin, "RXA", policy.SampleClinicalRole)
	assign(f.plain, "RXA", policy.SampleAdminRole)
	f.clinCred = []byte("lost-key-credential-id")
	if err := st.CreateCredential(ctx, authn.Credential{ID: f.clinCred, PersonUID: f.clin, Name: "Lost key", AAL: 3, CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	exp := time.Now().Add(time.Hour)
	f.sess = &fakeSessions{sessions: map[string]*authn.Session{
		"ra-a":      {IDHash: []byte("hash-ra-a"), PersonUID: f.raA, AAL: 3, ExpiresAt: exp},
		"ra-a-aal2": {IDHash: []byte("hash-ra-a-2"), PersonUID: f.raA, AAL: 2, ExpiresAt: exp},
		"ra-b":      {IDHash: []byte("hash-ra-b"), PersonUID: f.raB, AAL: 3, ExpiresAt: exp},
		"plain":     {IDHash: []byte("hash-plain"), PersonUID: f.plain, AAL: 3, ExpiresAt: exp},
	}}
	f.inv = &fakeInvites{}
	f.rec = &recorder{}
	f.locks = &fakeLocks{until: map[string]time.Time{}}
	f.con = &Console{Sessions: f.sess, Invites: f.inv, Policy: svc, Credentials: st, Audit: f.rec, Lockouts: f.locks}
	f.mux = http.NewServeMux()
	f.con.Mount(f.mux)
	return f
}

// do sends a request as the session named sid ("" for none) with the
// invite cookie if given.
func (f *fixture) do(method, target, sid string, form url.Values, cookies ...*http.Cookie) *httptest.ResponseRecorder {
	f.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	r := httptest.NewRequest(method, target, body)
	if form != nil {
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if sid != "" {
		r.AddCookie(&http.Cookie{Name: "sid", Value: sid})
	}
	for _, c := range cookies {
		r.AddCookie(c)
	}
	w := httptest.NewRecorder()
	f.mux.ServeHTTP(w, r)
	return w
}

// csrf is the form token of the session sid.
func (f *fixture) csrf(sid string) string { return csrfToken(f.sess.sessions[sid]) }

// post submits a form as sid with its CSRF token.
func (f *fixture) post(target, sid string, form url.Values) *httptest.ResponseRecorder {
	f.t.Helper()
	if form == nil {
		form = url.Values{}
	}
	form.Set("csrf_token", f.csrf(sid))
	return f.do("POST", target, sid, form)
}

func TestAccess(t *testing.T) {
	f := newFixture(t)
	tests := []struct {
		name, sid, path string
		want            int
		wantLoc, body   string
	}{
		{"no session starts a sign-in", "", "/ra/", http.StatusSeeOther, "/login?flow=test-flow", ""},
		{"AAL2 session steps up", "ra-a-aal2", "/ra/?q=carol", http.StatusSeeOther, "/login?flow=test-flow", ""},
		{"no RA position is refused", "plain", "/ra/", http.StatusForbidden, "", "You cannot use the Registration Authority console"},
		{"RA Manager at AAL3", "ra-a", "/ra/", http.StatusOK, "", "Find a person"},
		{"RA at B cannot view A's person", "ra-b", "/ra/people/" + f.clin, http.StatusForbidden, "", "You cannot manage this person"},
		{"RA at A views A's person", "ra-a", "/ra/people/" + f.clin, http.StatusOK, "", "Carol Clinician"},
		{"unknown person", "ra-a", "/ra/people/999999999999", http.StatusNotFound, "", "Person not found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := len(f.sess.flows)
			w := f.do("GET", tt.path, tt.sid, nil)
			if w.Code != tt.want {
				t.Fatalf("status %d, want %d: %s", w.Code, tt.want, w.Body)
			}
			if got := w.Header().Get("Location"); got != tt.wantLoc {
				t.Fatalf("Location %q, want %q", got, tt.wantLoc)
			}
			if !strings.Contains(w.Body.String(), tt.body) {
				t.Fatalf("body lacks %q:\n%s", tt.body, w.Body)
			}
			if tt.wantLoc != "" {
				fl := f.sess.flows[n]
				if fl.Kind != FlowKind || fl.MinAAL != authn.AAL3 || fl.ResumeURL != strings.SplitN(tt.path, "&flow", 2)[0] {
					t.Fatalf("flow %+v: want kind ra, AAL3, resume %s", fl, tt.path)
				}
			}
			if csp := w.Header().Get("Content-Security-Policy"); tt.want != http.StatusSeeOther && !strings.Contains(csp, "script-src 'self'") {
				t.Fatalf("CSP %q", csp)
			}
		})
	}
}

func TestCSRFAndSignedOutPosts(t *testing.T) {
	f := newFixture(t)
	target := "/ra/people/" + f.clin + "/close"
	tests := []struct {
		name, sid, token string
		want             int
	}{
		{"no token", "ra-a", "", http.StatusForbidden},
		{"wrong token", "ra-a", "forged", http.StatusForbidden},
		{"another session's token", "ra-a", csrfToken(f.sess.sessions["ra-b"]), http.StatusForbidden},
		{"no session", "", "x", http.StatusUnauthorized},
		{"AAL2 session", "ra-a-aal2", csrfToken(f.sess.sessions["ra-a-aal2"]), http.StatusUnauthorized},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := f.do("POST", target, tt.sid, url.Values{"csrf_token": {tt.token}, "confirm": {"yes"}})
			if w.Code != tt.want {
				t.Fatalf("status %d, want %d: %s", w.Code, tt.want, w.Body)
			}
			p, _ := f.st.GetPerson(context.Background(), f.clin)
			if p.Status != policy.StatusActive {
				t.Fatal("account closed without a valid form")
			}
		})
	}
}

var roleIDRe = regexp.MustCompile(`/positions/([0-9]{12})/end`)

func TestActions(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	var created string

	t.Run("create person", func(t *testing.T) {
		w := f.post("/ra/people", "ra-a", url.Values{"org_code": {"RXA"}, "given_name": {"Dora"}, "family_name": {"Doctor"}, "email": {"dora@example.nhs.uk"}})
		loc := w.Header().Get("Location")
		if w.Code != http.StatusSeeOther || !strings.HasPrefix(loc, "/ra/people/") || !strings.HasSuffix(loc, "?done=created") {
			t.Fatalf("create: %d %q %s", w.Code, loc, w.Body)
		}
		created = strings.TrimSuffix(strings.TrimPrefix(loc, "/ra/people/"), "?done=created")
		w = f.do("GET", loc, "ra-a", nil)
		if w.Code != 200 || !strings.Contains(w.Body.String(), "The person was created") || !strings.Contains(w.Body.String(), "Dora Doctor") {
			t.Fatalf("person page: %d %s", w.Code, w.Body)
		}
	})
	t.Run("create person: invalid and out of scope", func(t *testing.T) {
		w := f.post("/ra/people", "ra-a", url.Values{"org_code": {"RXA"}, "given_name": {""}, "family_name": {"X"}})
		if w.Code != http.StatusBadRequest || !strings.Contains(w.Body.String(), "Given name: required") || !strings.Contains(w.Body.String(), "nhsuk-error-summary") {
			t.Fatalf("invalid: %d %s", w.Code, w.Body)
		}
		w = f.post("/ra/people", "ra-a", url.Values{"org_code": {"RXB"}, "given_name": {"Eve"}, "family_name": {"X"}})
		if w.Code != http.StatusForbidden {
			t.Fatalf("create at another organisation: %d %s", w.Code, w.Body)
		}
	})
	t.Run("search", func(t *testing.T) {
		for _, tt := range []struct{ sid, q, want, notWant string }{
			{"ra-a", "dora", "Dora Doctor", ""},
			{"ra-a", created, "Dora Doctor", ""},
			{"ra-a", "Carol@Example", "Carol Clinician", "Bob Agent"},
			{"ra-a", "clinician", "Carol Clinician", "Bob Agent"},
			{"ra-a", "linician", "No one you can manage", "Carol Clinician"},
			{"ra-b", "carol", "No one you can manage", "Carol Clinician"},
		} {
			w := f.do("GET", "/ra/?q="+url.QueryEscape(tt.q), tt.sid, nil)
			if w.Code != 200 || !strings.Contains(w.Body.String(), tt.want) || (tt.notWant != "" && strings.Contains(w.Body.String(), tt.notWant)) {
				t.Fatalf("search %q as %s: %d, want %q without %q:\n%s", tt.q, tt.sid, w.Code, tt.want, tt.notWant, w.Body)
			}
		}
	})
	t.Run("record verification", func(t *testing.T) {
		w := f.post("/ra/people/"+created+"/verification", "ra-a", url.Values{"evidence": {"passport", "utility_bill"}, "verified_on": {time.Now().UTC().Format("2006-01-02")}, "level": {"3"}})
		if w.Code != http.StatusSeeOther || w.Header().Get("Location") != "/ra/people/"+created+"?done=verified" {
			t.Fatalf("verify: %d %s", w.Code, w.Body)
		}
		p, _ := f.st.GetPerson(ctx, created)
		if p.IDAssuranceLevel != 3 {
			t.Fatalf("IAL %d", p.IDAssuranceLevel)
		}
		w = f.post("/ra/people/"+created+"/verification", "ra-a", url.Values{"verified_on": {"2020-01-01"}})
		if w.Code != http.StatusBadRequest || !strings.Contains(w.Body.String(), "Evidence:") {
			t.Fatalf("verify without evidence: %d %s", w.Code, w.Body)
		}
	})
	var roleID string
	t.Run("assign position", func(t *testing.T) {
		w := f.do("GET", "/ra/people/"+created, "ra-a", nil)
		if !strings.Contains(w.Body.String(), `value="`+policy.SampleClinicalRole+`"`) || !strings.Contains(w.Body.String(), `value="RXA01"`) {
			t.Fatalf("assign form lacks the role or child organisation:\n%s", w.Body)
		}
		w = f.post("/ra/people/"+created+"/positions", "ra-a", url.Values{"org_code": {"RXA01"}, "role_code": {policy.SampleClinicalRole}, "activity": {"B0068"}})
		if w.Code != http.StatusSeeOther || !strings.HasSuffix(w.Header().Get("Location"), "done=assigned") {
			t.Fatalf("assign: %d %s", w.Code, w.Body)
		}
		ps, _ := f.svc.ActivePositions(ctx, created)
		if len(ps) != 1 || ps[0].OrgCode != "RXA01" || strings.Join(ps[0].ActivityCodes, ",") != "B0068" {
			t.Fatalf("positions %+v", ps)
		}
		roleID = ps[0].RoleID
		w = f.post("/ra/people/"+created+"/positions", "ra-a", url.Values{"org_code": {"RXA"}, "role_code": {"S0:G0:R0"}})
		if w.Code != http.StatusBadRequest || !strings.Contains(w.Body.String(), "Role: not in the role catalogue") {
			t.Fatalf("unknown role: %d %s", w.Code, w.Body)
		}
		w = f.post("/ra/people/"+f.raA+"/positions", "ra-a", url.Values{"org_code": {"RXA"}, "role_code": {policy.SampleClinicalRole}})
		if w.Code != http.StatusForbidden || !strings.Contains(w.Body.String(), "cannot assign roles to yourself") {
			t.Fatalf("self-assignment: %d %s", w.Code, w.Body)
		}
	})
	t.Run("RA at B refused on A", func(t *testing.T) {
		for _, tt := range []struct {
			path string
			form url.Values
		}{
			{"/ra/people/" + f.clin + "/positions", url.Values{"org_code": {"RXA"}, "role_code": {policy.SampleAdminRole}}},
			{"/ra/people/" + f.clin + "/positions/" + f.clinPos.RoleID + "/end", nil},
			{"/ra/people/" + f.clin + "/invites", nil},
			{"/ra/people/" + f.clin + "/verification", url.Values{"evidence": {"passport"}}},
			{"/ra/people/" + f.clin + "/credentials/" + "bG9zdC1rZXktY3JlZGVudGlhbC1pZA" + "/revoke", nil},
			{"/ra/people/" + f.clin + "/close", url.Values{"confirm": {"yes"}}},
			{"/ra/people/" + f.clin + "/unlock", nil},
		} {
			w := f.post(tt.path, "ra-b", tt.form)
			if w.Code != http.StatusForbidden {
				t.Fatalf("%s as RA at B: %d, want 403: %s", tt.path, w.Code, w.Body)
			}
		}
		if ps, _ := f.svc.ActivePositions(ctx, f.clin); len(ps) != 1 {
			t.Fatalf("clinician positions changed: %+v", ps)
		}
		if f.inv.n != 0 {
			t.Fatal("an invite was issued")
		}
		if c, _ := f.st.GetCredential(ctx, f.clinCred); !c.RevokedAt.IsZero() {
			t.Fatal("credential revoked")
		}
	})
	t.Run("issue invite", func(t *testing.T) {
		w := f.post("/ra/people/"+created+"/invites", "ra-a", nil)
		if w.Code != http.StatusSeeOther || w.Header().Get("Location") != "/ra/people/"+created+"/invite" {
			t.Fatalf("invite: %d %s", w.Code, w.Body)
		}
		var ck *http.Cookie
		for _, c := range w.Result().Cookies() {
			if c.Name == inviteCookie {
				ck = c
			}
		}
		if ck == nil || !ck.HttpOnly || ck.Path != "/ra/" || strings.Contains(ck.Value, "invite-code") {
			t.Fatalf("invite cookie %+v", ck)
		}
		w = f.do("GET", "/ra/people/"+created+"/invite", "ra-a", nil, ck)
		body := w.Body.String()
		if w.Code != 200 || !strings.Contains(body, "http://localhost/enrol?invite=invite-code-"+created) || !strings.Contains(body, `src="data:image/png;base64,`) {
			t.Fatalf("invite page: %d %s", w.Code, body)
		}
		// Another session cannot open the cookie, and without it the
		// link is not shown again.
		w = f.do("GET", "/ra/people/"+created+"/invite", "ra-b", nil, ck)
		if strings.Contains(w.Body.String(), "invite-code") {
			t.Fatal("another session read the invite")
		}
		w = f.do("GET", "/ra/people/"+f.clin+"/invite", "ra-b", nil)
		if w.Code != http.StatusForbidden || strings.Contains(w.Body.String(), "Carol") {
			t.Fatalf("RA at B opened the invite page of A's person: %d", w.Code)
		}
		w = f.do("GET", "/ra/people/"+created+"/invite", "ra-a", nil)
		if w.Code != 200 || strings.Contains(w.Body.String(), "invite-code") || !strings.Contains(w.Body.String(), "no longer shown") {
			t.Fatalf("invite page without cookie: %d %s", w.Code, w.Body)
		}
	})
	t.Run("end position", func(t *testing.T) {
		w := f.do("GET", "/ra/people/"+created, "ra-a", nil)
		if m := roleIDRe.FindStringSubmatch(w.Body.String()); m == nil || m[1] != roleID {
			t.Fatalf("no end button for %s:\n%s", roleID, w.Body)
		}
		// A position of someone else cannot be ended through this person.
		w = f.post("/ra/people/"+created+"/positions/"+f.clinPos.RoleID+"/end", "ra-a", nil)
		if w.Code != http.StatusNotFound {
			t.Fatalf("foreign position: %d", w.Code)
		}
		w = f.post("/ra/people/"+created+"/positions/"+roleID+"/end", "ra-a", nil)
		if w.Code != http.StatusSeeOther || !strings.HasSuffix(w.Header().Get("Location"), "done=ended") {
			t.Fatalf("end: %d %s", w.Code, w.Body)
		}
		if ps, _ := f.svc.ActivePositions(ctx, created); len(ps) != 0 {
			t.Fatalf("still active: %+v", ps)
		}
	})
	t.Run("revoke lost key", func(t *testing.T) {
		w := f.do("GET", "/ra/people/"+f.clin, "ra-a", nil)
		if !strings.Contains(w.Body.String(), "Revoke lost key") {
			t.Fatalf("no revoke button:\n%s", w.Body)
		}
		w = f.post("/ra/people/"+f.raB+"/credentials/bG9zdC1rZXktY3JlZGVudGlhbC1pZA/revoke", "ra-a", nil)
		if w.Code == http.StatusSeeOther {
			t.Fatal("revoked another person's key through the wrong person")
		}
		w = f.post("/ra/people/"+f.clin+"/credentials/bG9zdC1rZXktY3JlZGVudGlhbC1pZA/revoke", "ra-a", nil)
		if w.Code != http.StatusSeeOther || !strings.HasSuffix(w.Header().Get("Location"), "done=revoked") {
			t.Fatalf("revoke: %d %s", w.Code, w.Body)
		}
		if c, _ := f.st.GetCredential(ctx, f.clinCred); c.RevokedAt.IsZero() {
			t.Fatal("credential not revoked")
		}
	})
	t.Run("close account", func(t *testing.T) {
		w := f.post("/ra/people/"+f.clin+"/close", "ra-a", nil)
		if w.Code != http.StatusBadRequest || !strings.Contains(w.Body.String(), "tick the box") {
			t.Fatalf("close without confirmation: %d %s", w.Code, w.Body)
		}
		w = f.post("/ra/people/"+f.clin+"/close", "ra-a", url.Values{"confirm": {"yes"}})
		if w.Code != http.StatusSeeOther || !strings.HasSuffix(w.Header().Get("Location"), "done=closed") {
			t.Fatalf("close: %d %s", w.Code, w.Body)
		}
		p, _ := f.st.GetPerson(ctx, f.clin)
		if p.Status != policy.StatusClosed {
			t.Fatalf("status %s", p.Status)
		}
		w = f.post("/ra/people/"+f.clin+"/invites", "ra-a", nil)
		if w.Code != http.StatusConflict {
			t.Fatalf("invite for a closed account: %d", w.Code)
		}
	})
	t.Run("audited", func(t *testing.T) {
		seen := map[string]bool{}
		for _, e := range f.rec.events {
			if e.Type != audit.AdminChange || e.Actor != f.raA || e.Detail["via"] != "ra_console" {
				t.Fatalf("event %+v", e)
			}
			seen[e.Detail["object"].(string)] = true
		}
		for _, o := range []string{"person", "identity_verification", "position", "invite", "credential"} {
			if !seen[o] {
				t.Errorf("no audit event for %s (events %+v)", o, f.rec.events)
			}
		}
	})
}

func TestQRDataURI(t *testing.T) {
	u, err := qrDataURI("http://localhost:8080/enrol?invite=abc")
	if err != nil || !strings.HasPrefix(string(u), "data:image/png;base64,") {
		t.Fatalf("%v %.40s", err, u)
	}
}

type fakeRisk map[string][]policy.RiskDecision

func (f fakeRisk) RecentRiskDecisions(_ context.Context, uid string) ([]policy.RiskDecision, error) {
	return f[uid], nil
}

// TestPersonPageShowsSignInRisk: the RA sees why recent sign-ins were
// judged as they were (issue 11: reasons visible in the RA console).
func TestPersonPageShowsSignInRisk(t *testing.T) {
	f := newFixture(t)
	at := time.Date(2026, 11, 17, 3, 12, 0, 0, time.UTC)
	f.con.Risk = fakeRisk{f.clin: {{Time: at, ClientID: "ward-obs", Level: "medium", Score: 55, Outcome: "step-up passed", Place: "Leeds, GB",
		Signals: []policy.Signal{{Name: "new_device", Weight: 30, Reason: "a device not seen before"}, {Name: "unusual_hours", Weight: 25, Reason: "outside the usual hours"}}}}}
	w := f.do("GET", "/ra/people/"+f.clin, "ra-a", nil)
	body := w.Body.String()
	if w.Code != 200 {
		t.Fatalf("person page: %d %s", w.Code, body)
	}
	for _, want := range []string{"Recent sign-ins", "17 Nov 2026 03:12 UTC", "Leeds, GB", "medium", "step-up passed", "a device not seen before; outside the usual hours"} {
		if !strings.Contains(body, want) {
			t.Errorf("person page lacks %q", want)
		}
	}
	w = f.do("GET", "/ra/people/"+f.raA, "ra-a", nil)
	if w.Code != 200 || !strings.Contains(w.Body.String(), "No sign-ins recorded yet") {
		t.Fatalf("person with no history: %d", w.Code)
	}
}

// TestUnlock: the person page shows a lockout after failed sign-ins to an
// RA who may unlock, the unlock ends it and is audited, and an RA of
// another organisation can neither see nor end it.
func TestUnlock(t *testing.T) {
	f := newFixture(t)
	until := time.Now().Add(10 * time.Minute).UTC()
	f.locks.until[f.clin] = until
	page := f.do("GET", "/ra/people/"+f.clin, "ra-a", nil)
	if page.Code != http.StatusOK || !strings.Contains(page.Body.String(), until.Format("2 Jan 2006 15:04 UTC")) ||
		!strings.Contains(page.Body.String(), `action="/ra/people/`+f.clin+`/unlock"`) {
		t.Fatalf("person page of a locked person: %d\n%s", page.Code, page.Body)
	}
	if w := f.do("POST", "/ra/people/"+f.clin+"/unlock", "ra-a", url.Values{}); w.Code != http.StatusForbidden {
		t.Fatalf("unlock without the CSRF token: %d", w.Code)
	}
	if w := f.post("/ra/people/"+f.clin+"/unlock", "ra-b", nil); w.Code != http.StatusForbidden {
		t.Fatalf("unlock by the RA of another organisation: %d", w.Code)
	}
	if locked, _, _ := f.locks.Locked(context.Background(), f.clin); !locked {
		t.Fatal("unlocked by a refused request")
	}
	w := f.post("/ra/people/"+f.clin+"/unlock", "ra-a", nil)
	if w.Code != http.StatusSeeOther || !strings.HasSuffix(w.Header().Get("Location"), "done=unlocked") {
		t.Fatalf("unlock: %d %s", w.Code, w.Body)
	}
	if locked, _, _ := f.locks.Locked(context.Background(), f.clin); locked {
		t.Fatal("still locked")
	}
	var ev *audit.Event
	for i := range f.rec.events {
		if f.rec.events[i].Type == audit.Unlock {
			ev = &f.rec.events[i]
		}
	}
	if ev == nil || ev.Actor != f.raA || ev.Subject != f.clin || ev.Detail["via"] != "ra_console" ||
		ev.Detail["before"].(map[string]any)["locked"] != true {
		t.Fatalf("unlock event %+v", ev)
	}
	page = f.do("GET", "/ra/people/"+f.clin+"?done=unlocked", "ra-a", nil)
	if !strings.Contains(page.Body.String(), "Not locked out.") || !strings.Contains(page.Body.String(), "can sign in again") {
		t.Fatalf("person page after the unlock:\n%s", page.Body)
	}
}

// TestApprovePosition: an RA Manager position waiting for a second RA
// Manager (the two-person rule) shows an Approve button to one who may
// approve it, never to the RA Manager who asked; approving puts it in
// force and is audited.
func TestApprovePosition(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	op := policy.OperatorActor("operator:test")
	pending, err := f.svc.AssignPosition(ctx, op, f.plain, policy.PositionInput{OrgCode: "RXA", RoleCode: policy.SampleRAManager})
	if err != nil || !pending.PendingApproval {
		t.Fatalf("second RA Manager position: %+v, %v (want it pending)", pending, err)
	}
	approve := "/ra/people/" + f.plain + "/positions/" + pending.RoleID + "/approve"
	page := f.do("GET", "/ra/people/"+f.plain, "ra-a", nil)
	if !strings.Contains(page.Body.String(), `action="`+approve+`"`) {
		t.Fatalf("no Approve button for a pending position:\n%s", page.Body)
	}
	if w := f.post(approve, "ra-b", nil); w.Code != http.StatusForbidden {
		t.Fatalf("approval by the RA of another organisation: %d", w.Code)
	}
	w := f.post(approve, "ra-a", nil)
	if w.Code != http.StatusSeeOther || !strings.HasSuffix(w.Header().Get("Location"), "done=approved") {
		t.Fatalf("approve: %d %s", w.Code, w.Body)
	}
	ps, _ := f.svc.ActivePositions(ctx, f.plain)
	approved := false
	for _, p := range ps {
		if p.RoleID == pending.RoleID && !p.PendingApproval && p.ApprovedBy == f.raA {
			approved = true
		}
	}
	if !approved {
		t.Fatalf("position not in force after approval: %+v", ps)
	}
	ev := f.rec.events[len(f.rec.events)-1]
	if ev.Type != audit.AdminChange || ev.Actor != f.raA || ev.Detail["via"] != "ra_console" ||
		ev.Detail["after"].(map[string]any)["approved_by"] != f.raA {
		t.Fatalf("approval event %+v", ev)
	}
	if w := f.post(approve, "ra-a", nil); w.Code == http.StatusSeeOther {
		t.Fatal("approved twice")
	}

	// The RA Manager who asked for a position cannot approve it.
	own, err := f.svc.AssignPosition(ctx, policy.PersonActor(f.raA), f.clin, policy.PositionInput{OrgCode: "RXA", RoleCode: policy.SampleRAManager})
	if err != nil || !own.PendingApproval {
		t.Fatalf("RA Manager's request: %+v, %v", own, err)
	}
	ownApprove := "/ra/people/" + f.clin + "/positions/" + own.RoleID + "/approve"
	if page := f.do("GET", "/ra/people/"+f.clin, "ra-a", nil); strings.Contains(page.Body.String(), ownApprove) {
		t.Fatal("an Approve button for the RA Manager's own request")
	}
	if w := f.post(ownApprove, "ra-a", nil); w.Code != http.StatusForbidden {
		t.Fatalf("approval of one's own request: %d", w.Code)
	}
}

// TestSearchFindsAnyone: the search finds a person however many people
// come before them in UID order (it once gave up after the first 5,000),
// and shows the first of many with a note to narrow the search.
func TestSearchFindsAnyone(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	for i := range 6000 {
		p := policy.Person{UID: fmt.Sprintf("%012d", i+1), GivenName: "Filler", FamilyName: fmt.Sprintf("Person%d", i),
			DisplayName: fmt.Sprintf("Filler Person%d", i), Status: policy.StatusActive}
		if err := f.st.CreatePerson(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	w := f.do("GET", "/ra/?q=carol", "ra-a", nil)
	if w.Code != 200 || !strings.Contains(w.Body.String(), "Carol Clinician") {
		t.Fatalf("search after 6,000 others: %d\n%s", w.Code, w.Body)
	}
	w = f.do("GET", "/ra/?q=filler", "ra-a", nil)
	if w.Code != 200 || !strings.Contains(w.Body.String(), "Only the first results are shown") ||
		strings.Count(w.Body.String(), `<a href="/ra/people/0000`) != maxResults {
		t.Fatalf("search finding 6,000: %d\n%s", w.Code, w.Body)
	}
	// Cut to 100 bytes in the middle of a character.
	w = f.do("GET", "/ra/?q="+url.QueryEscape("a"+strings.Repeat("é", 60)), "ra-a", nil)
	if w.Code != 200 || !strings.Contains(w.Body.String(), "No one you can manage") {
		t.Fatalf("a long search: %d\n%s", w.Code, w.Body)
	}
}
