package authn

import (
	"net/http/httptest"
	"net/url"
	"testing"
)

func TestAllowFormRedirect(t *testing.T) {
	const base = "default-src 'self'; form-action 'self'"
	oidc := func(redirect string) *Flow {
		return &Flow{Kind: "oidc", Request: url.Values{"redirect_uri": {redirect}}.Encode()}
	}
	tests := []struct {
		name string
		flow *Flow
		want string
	}{
		{"rp origin added", oidc("https://rp.example/cb?x=1"), "default-src 'self'; form-action 'self' https://rp.example"},
		{"loopback port kept", oidc("http://127.0.0.1:8400/callback"), "default-src 'self'; form-action 'self' http://127.0.0.1:8400"},
		{"custom scheme left alone", oidc("com.example.app:/cb"), base},
		{"no redirect uri", &Flow{Kind: "oidc"}, base},
		{"saml flow", &Flow{Kind: "saml", Request: url.Values{"redirect_uri": {"https://x.example/"}}.Encode()}, base},
		{"nil flow", nil, base},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := httptest.NewRecorder()
			w.Header().Set("Content-Security-Policy", base)
			allowFormRedirect(w, tt.flow)
			if got := w.Header().Get("Content-Security-Policy"); got != tt.want {
				t.Fatalf("CSP %q, want %q", got, tt.want)
			}
		})
	}
}
