package idp_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/nhsid/nhsid/idp"
	"github.com/nhsid/nhsid/store/memory"
)

// fuzzProvider builds a provider with one confidential and one public client.
func fuzzProvider(f *testing.F) http.Handler {
	f.Helper()
	st := memory.New()
	cfg := idp.Config{Issuer: "http://localhost:8080", GlobalSecret: secret('g'), SecretPepper: secret('p'), KEK: secret('k'),
		SigningAlgs: []string{idp.AlgES256}, KeyAlg: idp.AlgES256}
	p, err := idp.New(cfg, idp.Deps{Store: st, People: st, Authn: newFakeAuthn()})
	if err != nil {
		f.Fatal(err)
	}
	for _, c := range []*idp.Client{
		{ID: "conf", RedirectURIs: []string{redirectURI}, GrantTypes: []string{"authorization_code", "refresh_token", "client_credentials"},
			Scope: "openid profile", TokenEndpointAuthMethod: idp.AuthClientSecretPost},
		{ID: "spa", RedirectURIs: []string{redirectURI}, GrantTypes: []string{"authorization_code"}, Scope: "openid", TokenEndpointAuthMethod: idp.AuthNone},
	} {
		if _, err := p.RegisterClient(context.Background(), c); err != nil {
			f.Fatal(err)
		}
	}
	mux := http.NewServeMux()
	p.Mount(mux)
	return mux
}

// FuzzAuthorizeParams: no query string makes the authorize endpoint answer
// 5xx or panic.
func FuzzAuthorizeParams(f *testing.F) {
	h := fuzzProvider(f)
	for _, seed := range []string{
		"client_id=conf&response_type=code&scope=openid&redirect_uri=" + url.QueryEscape(redirectURI) + "&state=abcdefghij&nonce=abcdefghij",
		"client_id=spa&response_type=code&scope=openid&redirect_uri=" + url.QueryEscape(redirectURI) + "&state=abcdefghij&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&code_challenge_method=S256",
		"client_id=conf&response_type=code&scope=openid&prompt=none&max_age=-1&acr_values=AAL9&claims=%7B%22id_token%22%3A%7B%22acr%22%3A%7B%22essential%22%3Atrue%7D%7D%7D",
		"client_id=conf&request_uri=urn:ietf:params:oauth:request_uri:nope",
		"client_id=%00&response_type=token&redirect_uri=javascript:alert(1)",
		"claims=%7B%7B&max_age=99999999999999999999&prompt=login%20none",
		"",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, q string) {
		for _, method := range []string{http.MethodGet, http.MethodPost} {
			var req *http.Request
			if method == http.MethodGet {
				req = httptest.NewRequest(method, "/oauth2/authorize", nil)
				req.URL.RawQuery = q
			} else {
				req = httptest.NewRequest(method, "/oauth2/authorize", strings.NewReader(q))
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code >= 500 {
				t.Fatalf("%s %q: status %d: %s", method, q, rec.Code, rec.Body)
			}
		}
	})
}

// FuzzTokenParams: no form body makes the token endpoint answer 5xx or panic.
func FuzzTokenParams(f *testing.F) {
	h := fuzzProvider(f)
	for _, seed := range []string{
		"grant_type=authorization_code&code=abc.def&client_id=conf&client_secret=x&redirect_uri=" + url.QueryEscape(redirectURI),
		"grant_type=refresh_token&refresh_token=ory_rt_x.y&client_id=conf&client_secret=x",
		"grant_type=client_credentials&client_id=conf&client_secret=x&scope=openid",
		"grant_type=authorization_code&client_id=spa&code=x&code_verifier=short",
		"client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer&client_assertion=eyJhbGciOiJub25lIn0.e30.&grant_type=client_credentials",
		"grant_type=%00&client_id=%FF",
		"",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, body string) {
		req := httptest.NewRequest(http.MethodPost, "/oauth2/token", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Fatalf("%q: status %d: %s", body, rec.Code, rec.Body)
		}
	})
}
