package server

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// TestSecurityHeaders: every response carries the security headers, HSTS
// only when asked; a handler that changes one changes it for its own
// response only.
func TestSecurityHeaders(t *testing.T) {
	want := map[string]string{
		"Content-Security-Policy":    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'",
		"X-Content-Type-Options":     "nosniff",
		"X-Frame-Options":            "DENY",
		"Referrer-Policy":            "no-referrer",
		"Cross-Origin-Opener-Policy": "same-origin",
		"Permissions-Policy":         "camera=(), microphone=(), geolocation=()",
	}
	changer := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/change" {
			w.Header().Set("Content-Security-Policy", "default-src 'none'")
			w.Header().Add("Referrer-Policy", "strict-origin")
		}
	})
	for _, hsts := range []bool{false, true} {
		h := securityHeaders(changer, hsts)
		for _, path := range []string{"/", "/change", "/"} {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
			got := rec.Result().Header
			for k, v := range want {
				switch {
				case path == "/change" && k == "Content-Security-Policy":
					v = "default-src 'none'"
				case path == "/change" && k == "Referrer-Policy":
					if vs := got.Values(k); len(vs) != 2 || vs[0] != v || vs[1] != "strict-origin" {
						t.Errorf("hsts=%v %s: %s = %q", hsts, path, k, vs)
					}
					continue
				}
				if vs := got.Values(k); len(vs) != 1 || vs[0] != v {
					t.Errorf("hsts=%v %s: %s = %q, want %q", hsts, path, k, vs, v)
				}
			}
			if sts := got.Get("Strict-Transport-Security"); (sts != "") != hsts {
				t.Errorf("hsts=%v %s: Strict-Transport-Security = %q", hsts, path, sts)
			}
		}
	}
}
