package e2e

import (
	"context"
	"crypto/ed25519"
	"net/url"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/nhsid/nhsid/audit"
	"github.com/nhsid/nhsid/policy"
)

type auditPage struct {
	Items      []audit.Event `json:"items"`
	NextCursor string        `json:"next_cursor"`
}

// personEvents reads a person's whole trail through the admin API, a page
// of two at a time (to exercise the cursor).
func (e *env) personEvents(uid string) []audit.Event {
	e.t.Helper()
	var out []audit.Event
	cursor := ""
	for range 100 {
		var p auditPage
		e.admin("GET", "/admin/v1/audit?limit=2&person="+url.QueryEscape(uid)+"&cursor="+cursor, nil, 200, &p)
		out = append(out, p.Items...)
		if p.NextCursor == "" {
			return out
		}
		cursor = p.NextCursor
	}
	e.t.Fatal("audit pagination does not end")
	return nil
}

// TestAuditTrail: enrolment, a sign-in, a token issuance, userinfo and
// introspection leave exactly the expected events, in order, with the
// request's details, and the chain verifies against a signed checkpoint.
func TestAuditTrail(t *testing.T) {
	for _, backend := range backends {
		t.Run(backend, func(t *testing.T) {
			e := newEnv(t, backend)
			uid := e.newPerson("Ada", "Lovelace")
			b := e.newBrowserFor(uid)

			rp1 := e.newRP("private_key_jwt", nil)
			c1 := e.client(rp1)
			cb, state, verifier, nonce := b.signIn(c1)
			tok, _, claims := c1.exchange(cb, state, verifier, nonce)
			if _, err := c1.provider.UserInfo(context.Background(), oauth2.StaticTokenSource(tok)); err != nil {
				t.Fatalf("userinfo: %v", err)
			}
			if !introspect(t, e, tok.AccessToken) {
				t.Fatal("token inactive")
			}

			evs := e.personEvents(uid)
			var types []string
			for _, ev := range evs {
				types = append(types, string(ev.Type))
			}
			want := []string{"admin.change", "admin.change", "enrolment", "signin.success", "client.first_use", "code.issued", "token.issued", "userinfo", "introspection"}
			mustEqual(t, "event types", strings.Join(types, " "), strings.Join(want, " "))

			sid, _ := claims["sid"].(string)
			byType := map[audit.Type]audit.Event{}
			for _, ev := range evs {
				byType[ev.Type] = ev
				if ev.Seq == 0 || ev.Time.IsZero() || ev.Outcome != audit.Success {
					t.Errorf("%s: seq %d time %v outcome %s", ev.Type, ev.Seq, ev.Time, ev.Outcome)
				}
				if ev.IP != "127.0.0.1" || len(ev.RequestID) < 8 {
					t.Errorf("%s: ip %q request id %q", ev.Type, ev.IP, ev.RequestID)
				}
			}
			in := byType[audit.SigninSuccess]
			mustEqual(t, "signin aal", in.Detail["aal"], float64(3))
			mustEqual(t, "signin client", in.Client, rp1.id)
			if in.UserAgent == "" {
				t.Error("signin: no user agent")
			}
			for _, typ := range []audit.Type{audit.SigninSuccess, audit.CodeIssued, audit.TokenIssued, audit.Userinfo} {
				if got := byType[typ].SessionHash; got != audit.HashSession(sid) || got == "" || strings.Contains(got, sid) {
					t.Errorf("%s: session hash %q, want HashSession(sid)", typ, got)
				}
			}
			mustEqual(t, "token client", byType[audit.TokenIssued].Client, rp1.id)
			mustEqual(t, "token grant", byType[audit.TokenIssued].Detail["grant_type"], "authorization_code")
			mustEqual(t, "admin actor", byType[audit.AdminChange].Actor, "operator:bootstrap")

			// Filters: by client and type.
			var p auditPage
			e.admin("GET", "/admin/v1/audit?type=token.issued,code.issued&client="+url.QueryEscape(rp1.id), nil, 200, &p)
			mustEqual(t, "client filter", len(p.Items), 2)
			e.admin("GET", "/admin/v1/audit?type=nope", nil, 400, nil)
			e.admin("GET", "/admin/v1/audit?since="+url.QueryEscape(time.Now().Add(time.Hour).Format(time.RFC3339)), nil, 200, &p)
			mustEqual(t, "since filter", len(p.Items), 0)

			// Seal, checkpoint, verify.
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			_, key, _ := ed25519.GenerateKey(nil)
			sl := &audit.Sealer{Store: e.srv.Store, Key: key}
			if _, err := sl.Flush(ctx); err != nil {
				t.Fatal(err)
			}
			cp, err := sl.Checkpoint(ctx)
			if err != nil || cp == nil {
				t.Fatalf("checkpoint: %v %v", cp, err)
			}
			rep, err := audit.Verify(ctx, e.srv.Store, audit.VerifyOptions{Checkpoints: []audit.Checkpoint{*cp}, PublicKey: key.Public().(ed25519.PublicKey)})
			if err != nil || rep.Broken != nil || rep.Checked < int64(len(evs)) {
				t.Fatalf("verify: %+v %v", rep, err)
			}
		})
	}
}

// TestAuditStepUpAndFailure: a refused AAL2 credential on an AAL3 flow is a
// signin.failure for that client; the AAL3 sign-in that follows in the same
// browser is a signin.success and a stepup from AAL 2 to 3.
func TestAuditStepUpAndFailure(t *testing.T) {
	for _, backend := range backends {
		t.Run(backend, func(t *testing.T) {
			e := newEnv(t, backend)
			uid := e.newPerson("Mary", "Seacole")
			tablet := e.browser(e.device(false))
			tablet.mustEnrol(e.invite(uid), 2)
			key := e.device(true)
			e.browser(key).mustEnrol(e.invite(uid), 3)
			rp1 := e.newRP("private_key_jwt", nil)
			c := e.client(rp1)
			cb, st, v, n := tablet.signIn(c, oauth2.SetAuthURLParam("acr_values", "AAL2_ANY"))
			c.exchange(cb, st, v, n)

			loc := tablet.follow(c.conf.AuthCodeURL(randID(), oauth2.SetAuthURLParam("acr_values", "AAL3_ANY"), oauth2.S256ChallengeOption(oauth2.GenerateVerifier())))
			flow := loc.Query().Get("flow")
			_, opts := tablet.postJSON("/webauthn/login/begin", map[string]string{"flow": flow})
			as, _ := tablet.dev.Assert(opts)
			if status, raw := tablet.postJSON("/webauthn/login/finish?flow="+flow, as); status < 400 {
				t.Fatalf("AAL2 credential on an AAL3 flow: %d %s", status, raw)
			}
			tablet.dev = key
			cb, st, v, n = tablet.signIn(c, oauth2.SetAuthURLParam("acr_values", "AAL3_ANY"))
			c.exchange(cb, st, v, n)

			var types []string
			var stepUp audit.Event
			for _, ev := range e.personEvents(uid) {
				switch ev.Type {
				case audit.SigninSuccess, audit.StepUp, audit.TokenIssued:
					types = append(types, string(ev.Type))
				}
				if ev.Type == audit.StepUp {
					stepUp = ev
				}
			}
			mustEqual(t, "sign-in events", strings.Join(types, " "),
				"signin.success token.issued signin.success stepup token.issued")
			mustEqual(t, "step-up from", stepUp.Detail["from_aal"], float64(2))
			mustEqual(t, "step-up to", stepUp.Detail["to_aal"], float64(3))

			var p auditPage
			e.admin("GET", "/admin/v1/audit?type=signin.failure&client="+url.QueryEscape(rp1.id), nil, 200, &p)
			if len(p.Items) != 1 || p.Items[0].Outcome != audit.Failure {
				t.Fatalf("signin.failure events: %+v", p.Items)
			}
		})
	}
}

// TestAuditRoleSelected: a role picked on the selection page and a role
// picked automatically (the only one) are each a role.selected event with
// the person_roleid; a second sign-in to the same client is no new
// client.first_use.
func TestAuditRoleSelected(t *testing.T) {
	for _, backend := range backends {
		t.Run(backend, func(t *testing.T) {
			e := newEnv(t, backend)
			ctx := context.Background()
			op := policy.OperatorActor("operator:test")
			e.admin("POST", "/admin/v1/roles", policy.SampleCatalogue(), 201, nil)
			e.admin("POST", "/admin/v1/organisations", map[string]string{"code": "RXA", "name": "Alpha NHS Trust"}, 201, nil)
			two := e.newPerson("Two", "Roles")
			var roles []string
			for _, r := range []string{policy.SampleClinicalRole, policy.SampleAdminRole} {
				p, err := e.srv.Policy.AssignPosition(ctx, op, two, policy.PositionInput{OrgCode: "RXA", RoleCode: r})
				if err != nil {
					t.Fatal(err)
				}
				roles = append(roles, p.RoleID)
			}
			one := e.newPerson("One", "Role")
			only, err := e.srv.Policy.AssignPosition(ctx, op, one, policy.PositionInput{OrgCode: "RXA", RoleCode: policy.SampleNurseRole})
			if err != nil {
				t.Fatal(err)
			}
			rp := e.newRP("private_key_jwt", map[string]any{"scope": "openid profile selectedrole"})
			c := e.client(rp, "openid", "selectedrole")

			b := e.browser(e.device(true))
			b.mustEnrol(e.invite(two), 3)
			loc, state, verifier, nonce := b.signIn(c)
			if loc.Path != "/select-role" {
				t.Fatalf("at %s, want /select-role", loc)
			}
			cb := b.chooseRole(b.page(loc.String()), loc.Query().Get("flow"), roles[1])
			c.exchange(cb, state, verifier, nonce)
			cb, state, verifier, nonce = b.signIn(c) // SSO: the session's role, no new event
			c.exchange(cb, state, verifier, nonce)

			b1 := e.browser(e.device(true))
			b1.mustEnrol(e.invite(one), 3)
			cb, state, verifier, nonce = b1.signIn(c)
			c.exchange(cb, state, verifier, nonce)

			for _, tc := range []struct {
				uid, role, how string
			}{{two, roles[1], "chosen"}, {one, only.RoleID, "automatic"}} {
				var sel []audit.Event
				firstUse := 0
				for _, ev := range e.personEvents(tc.uid) {
					switch ev.Type {
					case audit.RoleSelected:
						sel = append(sel, ev)
					case audit.ClientFirstUse:
						firstUse++
						mustEqual(t, "first use client", ev.Client, rp.id)
					}
				}
				if len(sel) != 1 {
					t.Fatalf("%s: %d role.selected events, want 1", tc.how, len(sel))
				}
				mustEqual(t, tc.how+" role", sel[0].RoleID, tc.role)
				mustEqual(t, tc.how+" client", sel[0].Client, rp.id)
				mustEqual(t, tc.how+" how", sel[0].Detail["how"], tc.how)
				mustEqual(t, tc.how+" first uses", firstUse, 1)
			}
		})
	}
}
