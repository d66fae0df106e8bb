package e2e

import (
	"context"
	"errors"
	"html"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"golang.org/x/oauth2"

	"github.com/nhsid/nhsid/policy"
)

// TestRBACRoleSelection walks the Registration Authority journey on both
// stores: the operator sets up two organisations, the catalogue and the
// first RA Manager; that RA creates a clinician with two positions and an
// invite; the clinician enrols, signs in to an RP asking for role scopes,
// picks a role and gets CIS2-shaped claims; an RA at another organisation
// is refused; per-client access rules deny with access_denied; ending the
// last position ends the session.
func TestRBACRoleSelection(t *testing.T) {
	for _, backend := range backends {
		t.Run(backend, func(t *testing.T) {
			e := newEnv(t, backend)
			ctx := context.Background()
			svc := e.srv.Policy

			// Operator setup through the admin API.
			e.admin("POST", "/admin/v1/roles", policy.SampleCatalogue(), 201, nil)
			e.admin("POST", "/admin/v1/organisations", map[string]string{"code": "RXA", "name": "Alpha NHS Trust"}, 201, nil)
			e.admin("POST", "/admin/v1/organisations", map[string]string{"code": "RXA01", "name": "Alpha General Hospital", "parent_code": "RXA"}, 201, nil)
			e.admin("POST", "/admin/v1/organisations", map[string]string{"code": "RXB", "name": "Beta NHS Trust"}, 201, nil)
			var roles policy.Catalogue
			e.admin("GET", "/admin/v1/roles", nil, 200, &roles)
			if len(roles.JobRoles) == 0 {
				t.Fatal("catalogue not imported")
			}

			raA := e.newPerson("Rita", "Manager")
			var first struct {
				RoleID    string `json:"person_roleid"`
				OrgID     string `json:"person_orgid"`
				Bootstrap bool   `json:"bootstrap"`
				Pending   bool   `json:"pending_approval"`
			}
			e.admin("POST", "/admin/v1/people/"+raA+"/positions", map[string]any{"org_code": "RXA", "role_code": policy.SampleRAManager}, 201, &first)
			if !first.Bootstrap || first.Pending || len(first.RoleID) != 12 || len(first.OrgID) != 12 {
				t.Fatalf("first RA Manager: %+v, want bootstrap, active, 12-digit ids", first)
			}
			raB := e.newPerson("Bob", "Agent")
			e.admin("POST", "/admin/v1/people/"+raB+"/positions", map[string]any{"org_code": "RXB", "role_code": policy.SampleRAAgent}, 201, nil)

			// Two-person rule: a second RA Manager waits for approval by
			// someone other than the requester.
			second := e.newPerson("Sam", "Second")
			var pending struct {
				RoleID  string `json:"person_roleid"`
				Pending bool   `json:"pending_approval"`
			}
			e.admin("POST", "/admin/v1/people/"+second+"/positions", map[string]any{"org_code": "RXA", "role_code": policy.SampleRAManager}, 201, &pending)
			if !pending.Pending {
				t.Fatal("second RA Manager was not left pending approval")
			}
			e.admin("POST", "/admin/v1/positions/"+pending.RoleID+"/approve", nil, 403, nil)
			if _, err := svc.ApprovePosition(ctx, policy.PersonActor(raA), pending.RoleID); err != nil {
				t.Fatalf("RA Manager approval: %v", err)
			}

			// The RA Manager at A works through the service layer.
			ra := policy.PersonActor(raA)
			clin, err := svc.CreatePersonAs(ctx, ra, "RXA", policy.Person{GivenName: "Carol", FamilyName: "Clinician", Email: "carol@example.nhs.uk"})
			if err != nil {
				t.Fatalf("create person as RA: %v", err)
			}
			if _, _, err := svc.RecordVerification(ctx, ra, clin.UID, policy.Verification{Evidence: []string{"passport", "utility_bill"}}); err != nil {
				t.Fatalf("verify: %v", err)
			}
			p1, err := svc.AssignPosition(ctx, ra, clin.UID, policy.PositionInput{OrgCode: "RXA", RoleCode: policy.SampleClinicalRole})
			if err != nil {
				t.Fatalf("assign 1: %v", err)
			}
			p2, err := svc.AssignPosition(ctx, ra, clin.UID, policy.PositionInput{OrgCode: "RXA01", RoleCode: policy.SampleAdminRole})
			if err != nil {
				t.Fatalf("assign 2 (child org): %v", err)
			}
			if _, err := svc.AssignPosition(ctx, ra, raA, policy.PositionInput{OrgCode: "RXA", RoleCode: policy.SampleClinicalRole}); !errors.Is(err, policy.ErrForbidden) {
				t.Fatalf("self-assignment: got %v, want forbidden", err)
			}
			if err := svc.CheckPerson(ctx, ra, policy.ActIssueInvite, clin.UID); err != nil {
				t.Fatalf("invite check: %v", err)
			}
			code, _, _, err := e.srv.Authn.IssueInvite(ctx, clin.UID, raA)
			if err != nil {
				t.Fatal(err)
			}

			// The RA at B is refused on A's people.
			rb := policy.PersonActor(raB)
			if _, err := svc.AssignPosition(ctx, rb, clin.UID, policy.PositionInput{OrgCode: "RXA", RoleCode: policy.SampleClinicalRole}); !errors.Is(err, policy.ErrForbidden) {
				t.Fatalf("RA at B assigning at A: got %v, want forbidden", err)
			}
			if _, err := svc.EndPosition(ctx, rb, p1.RoleID); !errors.Is(err, policy.ErrForbidden) {
				t.Fatalf("RA at B ending A's position: got %v, want forbidden", err)
			}
			if err := svc.CheckPerson(ctx, rb, policy.ActIssueInvite, clin.UID); !errors.Is(err, policy.ErrForbidden) {
				t.Fatalf("RA at B inviting A's person: got %v, want forbidden", err)
			}

			// The clinician enrols and signs in, picking a role.
			b := e.browser(e.device(true))
			b.mustEnrol(code, 3)
			rp := e.newRP("private_key_jwt", map[string]any{"scope": "openid profile nationalrbacaccess associatedorgs organisationalmemberships selectedrole"})
			c := e.client(rp, "openid", "profile", "nationalrbacaccess", "associatedorgs", "selectedrole")
			loc, state, verifier, nonce := b.signIn(c)
			if loc.Path != "/select-role" {
				t.Fatalf("after sign-in with two roles: at %s, want the role selection page", loc)
			}
			page := b.page(loc.String())
			for _, want := range []string{p1.RoleID, p2.RoleID, "Clinical Practitioner Access Role", "Alpha General Hospital"} {
				if !strings.Contains(page, want) {
					t.Fatalf("selection page lacks %q:\n%s", want, page)
				}
			}
			cb := b.chooseRole(page, loc.Query().Get("flow"), p2.RoleID)
			tok, _, claims := c.exchange(cb, state, verifier, nonce)
			mustEqual(t, "selected_roleid", claims["selected_roleid"], p2.RoleID)

			ui, err := c.provider.UserInfo(ctx, oauth2.StaticTokenSource(tok))
			if err != nil {
				t.Fatalf("userinfo: %v", err)
			}
			var uic struct {
				Roles []map[string]any `json:"nhsid_nrbac_roles"`
				Orgs  []map[string]any `json:"nhsid_user_orgs"`
				Other map[string]any   `json:"-"`
			}
			if err := ui.Claims(&uic); err != nil {
				t.Fatal(err)
			}
			if len(uic.Roles) != 2 {
				t.Fatalf("nhsid_nrbac_roles: %v", uic.Roles)
			}
			r0 := uic.Roles[0]
			for _, k := range []string{"person_orgid", "person_roleid", "org_code", "role_code", "role_name"} {
				if s, _ := r0[k].(string); s == "" {
					t.Fatalf("role entry lacks %s: %v", k, r0)
				}
			}
			byID := map[string]map[string]any{}
			for _, r := range uic.Roles {
				byID[r["person_roleid"].(string)] = r
			}
			mustEqual(t, "role_code", byID[p1.RoleID]["role_code"], policy.SampleClinicalRole)
			mustEqual(t, "role_name", byID[p1.RoleID]["role_name"], `"Clinical":"Clinical Provision":"Clinical Practitioner Access Role"`)
			mustEqual(t, "activity_codes", byID[p1.RoleID]["activity_codes"], []any{"B0068", "B0825"})
			mustEqual(t, "activities", byID[p1.RoleID]["activities"], []any{"Receive Self Claimed LR Alert", "Amend Patient Demographics"})
			mustEqual(t, "person_orgid", byID[p1.RoleID]["person_orgid"], p1.OrgID)
			mustEqual(t, "org_code", byID[p2.RoleID]["org_code"], "RXA01")
			mustEqual(t, "nhsid_user_orgs", uic.Orgs, []map[string]any{{"org_code": "RXA", "org_name": "Alpha NHS Trust"}, {"org_code": "RXA01", "org_name": "Alpha General Hospital"}})

			// The choice persists for the session.
			cb, state, verifier, nonce = b.signIn(c)
			_, _, claims = c.exchange(cb, state, verifier, nonce)
			mustEqual(t, "selected_roleid on SSO", claims["selected_roleid"], p2.RoleID)

			// prompt=login asks again.
			loc, state, verifier, nonce = b.signIn(c, oauth2.SetAuthURLParam("prompt", "login"))
			if loc.Path != "/select-role" {
				t.Fatalf("prompt=login: at %s, want the role selection page", loc)
			}
			cb = b.chooseRole(b.page(loc.String()), loc.Query().Get("flow"), p1.RoleID)
			_, _, claims = c.exchange(cb, state, verifier, nonce)
			mustEqual(t, "selected_roleid after prompt=login", claims["selected_roleid"], p1.RoleID)

			// A client that only admits pharmacists denies with a page
			// and access_denied, never a code.
			pharm := e.newRP("private_key_jwt", map[string]any{"client_name": "Pharmacy System", "nhsid_allowed_roles": []string{"R8006"}})
			pc := e.client(pharm)
			resp, body := b.fetch(pc.conf.AuthCodeURL("state-deny-1", oauth2.S256ChallengeOption(oauth2.GenerateVerifier())))
			if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "You do not have a role that gives access to Pharmacy System") {
				t.Fatalf("access rules: %d\n%s", resp.StatusCode, body)
			}
			m := regexp.MustCompile(`href="([^"]+)"`).FindAllStringSubmatch(body, -1)
			var back *url.URL
			for _, x := range m {
				if u, err := url.Parse(html.UnescapeString(x[1])); err == nil && strings.HasPrefix(u.String(), pharm.redirectURI) {
					back = u
				}
			}
			if back == nil || back.Query().Get("error") != "access_denied" || back.Query().Get("state") != "state-deny-1" || back.Query().Has("code") {
				t.Fatalf("return link %v: want error=access_denied with state", back)
			}
			// A client needing an activity the clinician holds by
			// inclusion (B0825 includes B0820) lets them in.
			demo := e.newRP("private_key_jwt", map[string]any{"nhsid_required_activities": []string{"B0820"}})
			dc := e.client(demo)
			cb, state, verifier, nonce = b.signIn(dc)
			dtok, _, _ := dc.exchange(cb, state, verifier, nonce)

			// Leaver: ending the last position ends the session and
			// revokes its tokens.
			if _, err := svc.EndPosition(ctx, ra, p1.RoleID); err != nil {
				t.Fatal(err)
			}
			if loc := b.follow(c.conf.AuthCodeURL("state-leaver-2", oauth2.S256ChallengeOption(oauth2.GenerateVerifier()))); !strings.HasPrefix(loc.String(), rp.redirectURI) || loc.Query().Get("code") == "" {
				t.Fatalf("with one position left: at %s, want a code at the RP", loc)
			}
			if _, err := svc.EndPosition(ctx, ra, p2.RoleID); err != nil {
				t.Fatal(err)
			}
			if loc := b.follow(c.conf.AuthCodeURL("state-leaver-3", oauth2.S256ChallengeOption(oauth2.GenerateVerifier()))); loc.Path != "/login" {
				t.Fatalf("after the last position ended: at %s, want /login", loc)
			}
			if introspect(t, e, dtok.AccessToken) {
				t.Fatal("access token still active after the person left")
			}
			var listed struct {
				Items []struct {
					RoleID  string `json:"person_roleid"`
					EndedAt string `json:"ended_at"`
				} `json:"items"`
			}
			e.admin("GET", "/admin/v1/people/"+clin.UID+"/positions", nil, 200, &listed)
			if len(listed.Items) != 2 || listed.Items[0].EndedAt == "" || listed.Items[1].EndedAt == "" {
				t.Fatalf("history: %+v", listed.Items)
			}
		})
	}
}

// TestRoleSelectionSearch: more than five roles get a search box that
// filters on the server, without JavaScript.
func TestRoleSelectionSearch(t *testing.T) {
	e := newEnv(t, "memory")
	ctx := context.Background()
	svc := e.srv.Policy
	op := policy.OperatorActor("operator:test")
	e.admin("POST", "/admin/v1/roles", policy.SampleCatalogue(), 201, nil)
	e.admin("POST", "/admin/v1/organisations", map[string]string{"code": "RXA", "name": "Alpha NHS Trust"}, 201, nil)
	e.admin("POST", "/admin/v1/organisations", map[string]string{"code": "RXC", "name": "Gamma Community Trust"}, 201, nil)
	uid := e.newPerson("Dana", "Many")
	roles := []string{policy.SampleClinicalRole, policy.SampleAdminRole, policy.SampleNurseRole}
	var pharmacist string
	for _, org := range []string{"RXA", "RXC"} {
		for _, r := range roles {
			if _, err := svc.AssignPosition(ctx, op, uid, policy.PositionInput{OrgCode: org, RoleCode: r}); err != nil {
				t.Fatal(err)
			}
		}
	}
	p, err := svc.AssignPosition(ctx, op, uid, policy.PositionInput{OrgCode: "RXC", RoleCode: policy.SamplePharmacist})
	if err != nil {
		t.Fatal(err)
	}
	pharmacist = p.RoleID
	b := e.newBrowserFor(uid)
	rp := e.newRP("client_secret_basic", map[string]any{"scope": "openid profile selectedrole"})
	c := e.client(rp, "openid", "selectedrole")
	loc, state, verifier, nonce := b.signIn(c)
	if loc.Path != "/select-role" {
		t.Fatalf("at %s, want /select-role", loc)
	}
	page := b.page(loc.String())
	if !strings.Contains(page, `type="search"`) || strings.Count(page, `name="role"`) != 7 {
		t.Fatalf("seven roles: want a search box and seven radios:\n%s", page)
	}
	q := loc.Query()
	q.Set("q", "pharmac")
	page = b.page("/select-role?" + q.Encode())
	if n := strings.Count(page, `name="role"`); n != 1 || !strings.Contains(page, pharmacist) {
		t.Fatalf("search for pharmac: %d radios:\n%s", n, page)
	}
	// A role that is not the person's is refused.
	st, _ := b.postForm("/select-role", url.Values{"flow": {q.Get("flow")}, "role": {"999999999999"}, "csrf_token": {scrapeCSRF(t, page)}})
	if st != http.StatusBadRequest {
		t.Fatalf("foreign role: status %d, want 400", st)
	}
	// A missing csrf field is refused.
	st, _ = b.postForm("/select-role", url.Values{"flow": {q.Get("flow")}, "role": {pharmacist}})
	if st != http.StatusForbidden {
		t.Fatalf("no csrf: status %d, want 403", st)
	}
	cb := b.chooseRole(page, q.Get("flow"), pharmacist)
	_, _, claims := c.exchange(cb, state, verifier, nonce)
	mustEqual(t, "selected_roleid", claims["selected_roleid"], pharmacist)
}

// TestRoleSelectionSingleAndNone: one role is selected automatically; no
// role continues without selected_roleid.
func TestRoleSelectionSingleAndNone(t *testing.T) {
	e := newEnv(t, "memory")
	ctx := context.Background()
	e.admin("POST", "/admin/v1/roles", policy.SampleCatalogue(), 201, nil)
	e.admin("POST", "/admin/v1/organisations", map[string]string{"code": "RXA", "name": "Alpha NHS Trust"}, 201, nil)
	one := e.newPerson("Olly", "One")
	p, err := e.srv.Policy.AssignPosition(ctx, policy.OperatorActor("op"), one, policy.PositionInput{OrgCode: "RXA", RoleCode: policy.SampleNurseRole})
	if err != nil {
		t.Fatal(err)
	}
	none := e.newPerson("Nora", "None")
	rp := e.newRP("client_secret_basic", map[string]any{"scope": "openid profile selectedrole"})
	c := e.client(rp, "openid", "selectedrole")
	tests := []struct {
		name, uid, want string
	}{
		{name: "one role", uid: one, want: p.RoleID},
		{name: "no role", uid: none, want: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := e.browser(e.device(true))
			b.mustEnrol(e.invite(tt.uid), 3)
			cb, state, verifier, nonce := b.signIn(c)
			_, _, claims := c.exchange(cb, state, verifier, nonce)
			got, _ := claims["selected_roleid"].(string)
			mustEqual(t, "selected_roleid", got, tt.want)
		})
	}
}

// page fetches an nhsid page and returns its body (status 200 required).
func (b *browser) page(u string) string {
	b.e.t.Helper()
	resp, body := b.fetch(u)
	if resp.StatusCode != 200 {
		b.e.t.Fatalf("GET %s: %d\n%s", u, resp.StatusCode, body)
	}
	return body
}

// fetch GETs u (relative to the issuer) and returns the response and body.
func (b *browser) fetch(u string) (*http.Response, string) {
	b.e.t.Helper()
	if strings.HasPrefix(u, "/") {
		u = b.e.issuer + u
	}
	resp, err := b.http.Get(u)
	if err != nil {
		b.e.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp, string(raw)
}

// postForm posts a form to nhsid and returns status and Location.
func (b *browser) postForm(path string, form url.Values) (int, string) {
	b.e.t.Helper()
	resp, err := b.http.PostForm(b.e.issuer+path, form)
	if err != nil {
		b.e.t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, resp.Header.Get("Location")
}

var csrfField = regexp.MustCompile(`name="(csrf[^"]*)" value="([^"]*)"`)

func scrapeCSRF(t *testing.T, page string) string {
	t.Helper()
	m := csrfField.FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no csrf field on page:\n%s", page)
	}
	return m[2]
}

// chooseRole posts the selection form scraped from page and follows the
// redirects to the RP callback.
func (b *browser) chooseRole(page, flow, role string) *url.URL {
	b.e.t.Helper()
	m := csrfField.FindStringSubmatch(page)
	if m == nil {
		b.e.t.Fatalf("no csrf field on page:\n%s", page)
	}
	st, loc := b.postForm("/select-role", url.Values{"flow": {flow}, "role": {role}, m[1]: {m[2]}})
	if st != http.StatusFound || loc == "" {
		b.e.t.Fatalf("POST /select-role: %d %q", st, loc)
	}
	return b.follow(loc)
}
