package idp_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/ory/fosite"

	"github.com/nhsid/nhsid/audit"
	"github.com/nhsid/nhsid/audit/audittest"
	"github.com/nhsid/nhsid/idp"
	"github.com/nhsid/nhsid/policy"
	"github.com/nhsid/nhsid/store/memory"
)

// exchangedCode signs a person in to a new web client and exchanges the
// code once; it returns the client, its secret, the exchange's form (to
// present the code again) and the tokens it bought.
func (e *env) exchangedCode() (policy.Person, *idp.Client, string, url.Values, map[string]any) {
	e.t.Helper()
	person := e.person()
	c, sec := e.webClient(nil)
	u := expectRedirect(e.t, e.get(authorizeQuery(c.ID, nil)))
	fl := e.authn.flow(u.Query().Get("flow"))
	e.authn.signIn(fl.ID, session(person.UID, 3, time.Now().Add(-time.Second)))
	cb := expectRedirect(e.t, e.get(fl.ResumeURL+"?flow="+fl.ID))
	exchange := url.Values{"grant_type": {"authorization_code"}, "code": {cb.Query().Get("code")}, "redirect_uri": {redirectURI}}
	status, tok := e.token(c.ID, sec, exchange)
	if status != http.StatusOK {
		e.t.Fatalf("first exchange: %d %v", status, tok)
	}
	return person, c, sec, exchange, tok
}

// failingRevocation is a store whose revocation of access tokens fails.
type failingRevocation struct{ *racingStore }

func (failingRevocation) RevokeAccessToken(context.Context, string) error {
	return errors.New("revocation failed (test)")
}

// racingStore answers a spent code's look-up as if it were still active,
// as a store does to an exchange that read the code just before a
// concurrent exchange spent it; that exchange then finds the code spent
// when it tries to spend it.
type racingStore struct {
	*memory.Store
	racing bool
}

func (s *racingStore) GetAuthorizeCodeSession(ctx context.Context, sig string, sess fosite.Session) (fosite.Requester, error) {
	req, err := s.Store.GetAuthorizeCodeSession(ctx, sig, sess)
	if s.racing && errors.Is(err, fosite.ErrInvalidatedAuthorizeCode) {
		return req, nil
	}
	return req, err
}

// TestCodeReuseRevokesGrant: an authorization code presented again gets
// invalid_grant and revokes the tokens its first exchange bought (RFC 6749
// section 4.1.2), whether the reuse comes after that exchange (fosite
// revokes) or races it (nhsid revokes); both are audited as code.reused.
func TestCodeReuseRevokesGrant(t *testing.T) {
	for _, tc := range []struct {
		name                    string
		concurrent, revokeFails bool
	}{
		{name: "later"},
		{name: "concurrent", concurrent: true},
		{name: "later, revocation fails", revokeFails: true},
		{name: "concurrent, revocation fails", concurrent: true, revokeFails: true},
	} {
		concurrent := tc.concurrent
		t.Run(tc.name, func(t *testing.T) {
			log := &audittest.Recorder{}
			var st *racingStore
			e := newEnv(t, func(_ *idp.Config, d *idp.Deps) {
				st = &racingStore{Store: d.Store.(*memory.Store)}
				d.Store = st
				if tc.revokeFails {
					d.Store = failingRevocation{st}
				}
				d.Audit = log
			})
			person, c, sec, exchange, tok := e.exchangedCode()
			if !e.active(c.ID, sec, tok["access_token"].(string)) {
				t.Fatal("the first exchange's access token is not active")
			}

			st.racing = concurrent
			status, body := e.token(c.ID, sec, exchange)
			if status != http.StatusBadRequest || body["error"] != "invalid_grant" {
				t.Fatalf("second exchange: %d %v, want 400 invalid_grant", status, body)
			}
			st.racing = false
			if !tc.revokeFails {
				if e.active(c.ID, sec, tok["access_token"].(string)) {
					t.Error("the first exchange's access token is still active")
				}
				if status, _ := e.token(c.ID, sec, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok["refresh_token"].(string)}}); status == http.StatusOK {
					t.Error("the first exchange's refresh token still works")
				}
			}
			evs := log.Of(audit.CodeReused)
			if len(evs) != 1 {
				t.Fatalf("%d code.reused events, want 1", len(evs))
			}
			ev := evs[0]
			if ev.Outcome != audit.Denied || ev.Client != c.ID || ev.Subject != person.UID ||
				ev.Detail["grant_revoked"] != !tc.revokeFails || ev.Detail["concurrent"] != concurrent {
				t.Errorf("code.reused event = %+v", ev)
			}
		})
	}
}

// active asks the introspection endpoint whether token is active.
func (e *env) active(clientID, secret, token string) bool {
	e.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, e.srv.URL+idp.PathIntrospect, strings.NewReader(url.Values{"token": {token}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(clientID, secret)
	resp, err := e.http.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		e.t.Fatal(err)
	}
	return out["active"] == true
}
