package idp_test

import (
	"html"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nhsid/nhsid/idp"
)

// TestRoleSelectionAndAccessRules drives authorize with an SSO session
// over the role fixture (three active positions).
func TestRoleSelectionAndAccessRules(t *testing.T) {
	svc, person := roleFixture(t)
	active, err := svc.ActivePositions(t.Context(), person.UID)
	if err != nil || len(active) != 3 {
		t.Fatalf("fixture: %d active, %v", len(active), err)
	}
	paramedic := active[2]
	e := newEnv(t, func(_ *idp.Config, d *idp.Deps) { d.People = svc.Store; d.Roles = svc })
	e.authn.setSession(session(person.UID, 3, time.Now().Add(-time.Minute)))
	scopes := url.Values{"scope": {"openid profile selectedrole"}}
	withPrompt := func(p string) url.Values {
		v := url.Values{"scope": scopes["scope"], "prompt": {p}}
		return v
	}

	t.Run("several roles: selection page", func(t *testing.T) {
		c, _ := e.webClient(nil)
		u := expectRedirect(t, e.get(authorizeQuery(c.ID, scopes)))
		if u.Path != idp.PathSelectRole {
			t.Fatalf("redirect to %s, want %s", u, idp.PathSelectRole)
		}
		fl := e.authn.flow(u.Query().Get("flow"))
		if fl == nil || fl.SessionSID != "sid-"+person.UID {
			t.Fatalf("flow %+v: want one authenticated by the SSO session", fl)
		}
		// The choice comes back through resume.
		fl.SelectedRoleID = active[1].RoleID
		e.authn.signIn(fl.ID, session(person.UID, 3, time.Now().Add(-time.Minute)))
		cb := expectRedirect(t, e.get(fl.ResumeURL+"?flow="+fl.ID))
		if cb.Query().Get("code") == "" {
			t.Fatalf("callback %s", cb)
		}
	})
	t.Run("prompt=none with a choice needed", func(t *testing.T) {
		c, _ := e.webClient(nil)
		cb := expectRedirect(t, e.get(authorizeQuery(c.ID, withPrompt("none"))))
		if cb.Query().Get("error") != "interaction_required" {
			t.Fatalf("callback %s, want interaction_required", cb)
		}
	})
	t.Run("rules narrow to one role", func(t *testing.T) {
		c, sec := e.webClient(func(c *idp.Client) { c.AllowedRoles = []string{"R8004"} })
		cb := expectRedirect(t, e.get(authorizeQuery(c.ID, scopes)))
		code := cb.Query().Get("code")
		if code == "" {
			t.Fatalf("callback %s", cb)
		}
		status, tok := e.token(c.ID, sec, url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {redirectURI}})
		if status != http.StatusOK {
			t.Fatalf("token: %d %v", status, tok)
		}
		_, claims := e.verifyJWT(tok["id_token"].(string))
		if claims["selected_roleid"] != paramedic.RoleID {
			t.Fatalf("selected_roleid = %v, want %s", claims["selected_roleid"], paramedic.RoleID)
		}
	})
	t.Run("rules not met: page and access_denied", func(t *testing.T) {
		c, _ := e.webClient(func(c *idp.Client) {
			c.Name = "Dispensing System"
			c.RequiredActivities = []string{"B0370"}
		})
		resp := e.get(authorizeQuery(c.ID, url.Values{"scope": {"openid"}}))
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(body), "You do not have a role that gives access to Dispensing System") {
			t.Fatalf("status %d body %s", resp.StatusCode, body)
		}
		m := regexp.MustCompile(`href="(http://localhost:9999/cb[^"]*)"`).FindStringSubmatch(string(body))
		if m == nil {
			t.Fatalf("no link back to the client:\n%s", body)
		}
		back, _ := url.Parse(html.UnescapeString(m[1]))
		q := back.Query()
		if q.Get("error") != "access_denied" || q.Get("state") != "state-0123456789" || q.Has("code") || q.Get("iss") != e.issuer {
			t.Fatalf("return link %s", back)
		}
	})
}
