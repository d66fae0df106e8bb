package saml

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"

	"github.com/nhsid/nhsid/audit"
	"github.com/nhsid/nhsid/audit/audittest"
)

// TestRefusalAuditedAfterHangUp: a refused SAML request is recorded even
// when the browser that sent it went away before the answer.
func TestRefusalAuditedAfterHangUp(t *testing.T) {
	rg := newRig(t)
	rec := &audittest.Recorder{Live: true}
	rg.h.deps.Audit = rec
	gone, hangUp := context.WithCancel(context.Background())
	hangUp()
	r := httptest.NewRequest(http.MethodGet, PathSSO+"?SAMLRequest="+url.QueryEscape(deflateB64(t, []byte("not xml"))), nil)
	if w := rg.do(r.WithContext(gone)); w.Code != http.StatusBadRequest {
		t.Fatalf("refusal: %d", w.Code)
	}
	if evs := rec.Of(audit.SigninFailure); len(evs) != 1 || evs[0].Outcome != audit.Denied || evs[0].Detail["protocol"] != "saml" {
		t.Errorf("recorded %+v, want one saml sign-in failure", rec.Events())
	}
}
