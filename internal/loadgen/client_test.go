package loadgen

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
)

// TestUserBrowserKeepsDeviceOnly: a person's next sign-in presents the
// device cookie their browser kept, never the session (each iteration is a
// full sign-in), and with NewDevices nothing at all.
func TestUserBrowserKeepsDeviceOnly(t *testing.T) {
	var seen []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen = seen[:0]
		for _, c := range r.Cookies() {
			seen = append(seen, c.Name+"="+c.Value)
		}
		http.SetCookie(w, &http.Cookie{Name: "__Host-nhsid_device", Value: "device-1", Path: "/", MaxAge: 3600})
		http.SetCookie(w, &http.Cookie{Name: "__Host-nhsid_session", Value: "session-1", Path: "/", MaxAge: 3600})
	}))
	defer srv.Close()
	iss, _ := url.Parse(srv.URL)
	get := func(b *http.Client) []string {
		t.Helper()
		resp, err := b.Get(srv.URL + "/")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return append([]string(nil), seen...)
	}
	for _, tc := range []struct {
		newDevices bool
		want       string
	}{{false, "__Host-nhsid_device=device-1"}, {true, ""}} {
		c := &vclient{sh: &shared{issuer: iss, newDevices: tc.newDevices}}
		u := &User{UID: "555000000001"}
		b := c.userBrowser(u)
		if got := get(b); len(got) != 0 {
			t.Fatalf("first sign-in presents %v", got)
		}
		c.keepDevice(u, b)
		got := get(c.userBrowser(u))
		if tc.want == "" && len(got) != 0 || tc.want != "" && (len(got) != 1 || got[0] != tc.want) {
			t.Fatalf("new devices %v: next sign-in presents %v, want %q", tc.newDevices, got, tc.want)
		}
	}
}
