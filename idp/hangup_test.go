package idp_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/ory/fosite"

	"github.com/nhsid/nhsid/audit"
	"github.com/nhsid/nhsid/audit/audittest"
	"github.com/nhsid/nhsid/idp"
	"github.com/nhsid/nhsid/store/memory"
)

// liveStore refuses work under a cancelled context, as the PostgreSQL
// store's driver does.
type liveStore struct{ *memory.Store }

func (s liveStore) GetAuthorizeCodeSession(ctx context.Context, sig string, sess fosite.Session) (fosite.Requester, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return s.Store.GetAuthorizeCodeSession(ctx, sig, sess)
}

func (s liveStore) RevokeAccessToken(ctx context.Context, id string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.Store.RevokeAccessToken(ctx, id)
}

func (s liveStore) RevokeRefreshToken(ctx context.Context, id string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.Store.RevokeRefreshToken(ctx, id)
}

// TestCodeReuseAfterHangUp: a reused authorization code revokes its
// grant, and the reuse is recorded, even when the client that presented it
// hung up before the answer.
func TestCodeReuseAfterHangUp(t *testing.T) {
	log := &audittest.Recorder{Live: true}
	e := newEnv(t, func(_ *idp.Config, d *idp.Deps) {
		d.Store = liveStore{d.Store.(*memory.Store)}
		d.Audit = log
	})
	_, c, sec, exchange, tok := e.exchangedCode()

	ctx, hangUp := context.WithCancel(context.Background())
	hangUp()
	req := httptest.NewRequest(http.MethodPost, idp.PathToken, strings.NewReader(exchange.Encode())).WithContext(ctx)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(c.ID), url.QueryEscape(sec))
	rec := httptest.NewRecorder()
	e.srv.Config.Handler.ServeHTTP(rec, req)
	if rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), "invalid_grant") {
		t.Fatalf("reuse after hang-up: %d %s, want 400 invalid_grant", rec.Code, rec.Body)
	}
	if e.active(c.ID, sec, tok["access_token"].(string)) {
		t.Error("the first exchange's access token is still active")
	}
	if status, _ := e.token(c.ID, sec, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok["refresh_token"].(string)}}); status == http.StatusOK {
		t.Error("the first exchange's refresh token still works")
	}
	if evs := log.Of(audit.CodeReused); len(evs) != 1 || evs[0].Detail["grant_revoked"] != true {
		t.Errorf("code.reused events: %+v", evs)
	}
}
