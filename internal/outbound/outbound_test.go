package outbound

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestAllowed(t *testing.T) {
	tests := []struct {
		name     string
		ip       string
		loopback bool
		want     bool
	}{
		{"public v4", "8.8.8.8", false, true},
		{"public v6", "2606:4700:4700::1111", false, true},
		{"loopback", "127.0.0.1", false, false},
		{"loopback allowed", "127.0.0.1", true, true},
		{"v6 loopback", "::1", false, false},
		{"private 10/8", "10.1.2.3", true, false},
		{"private 192.168", "192.168.0.10", true, false},
		{"private 172.16", "172.16.5.5", true, false},
		{"link-local metadata", "169.254.169.254", true, false},
		{"v6 link-local", "fe80::1", true, false},
		{"v6 unique local", "fd00::1", true, false},
		{"mapped private", "::ffff:10.0.0.1", true, false},
		{"cgnat", "100.64.0.1", true, false},
		{"unspecified", "0.0.0.0", true, false},
		{"multicast", "224.0.0.1", true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Allowed(netip.MustParseAddr(tt.ip), tt.loopback, false); got != tt.want {
				t.Fatalf("Allowed(%s) = %v, want %v", tt.ip, got, tt.want)
			}
		})
	}
}

func TestClientRefusals(t *testing.T) {
	ok := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "hello")
	}))
	defer ok.Close()
	big := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, strings.Repeat("x", 4096))
	}))
	defer big.Close()
	redirect := func(to string) *httptest.Server {
		return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, to, http.StatusFound)
		}))
	}
	toLinkLocal := redirect("http://169.254.169.254/latest/meta-data/")
	defer toLinkLocal.Close()
	toPrivate := redirect("http://10.0.0.1/")
	defer toPrivate.Close()
	sameHost := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/moved" {
			_, _ = io.WriteString(w, "here")
			return
		}
		http.Redirect(w, r, "/moved", http.StatusFound)
	}))
	defer sameHost.Close()
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(2 * time.Second):
		case <-r.Context().Done():
		}
	}))
	defer slow.Close()

	tests := []struct {
		name    string
		opts    Options
		url     string
		wantErr error
		anyErr  bool
	}{
		{name: "loopback refused by default", opts: Options{}, url: ok.URL, wantErr: ErrForbiddenAddress},
		{name: "loopback allowed for tests", opts: Options{AllowLoopback: true}, url: ok.URL},
		{name: "link-local refused", opts: Options{AllowLoopback: true, Timeout: time.Second}, url: "http://169.254.169.254/latest/meta-data/", wantErr: ErrForbiddenAddress},
		{name: "private refused", opts: Options{AllowLoopback: true, Timeout: time.Second}, url: "http://10.0.0.1:8080/", wantErr: ErrForbiddenAddress},
		{name: "redirect to link-local refused", opts: Options{AllowLoopback: true}, url: toLinkLocal.URL, wantErr: ErrRedirect},
		{name: "redirect to private refused even when hosts allowed", opts: Options{AllowLoopback: true}, url: toPrivate.URL, wantErr: ErrRedirect},
		{name: "same-host redirect followed", opts: Options{AllowLoopback: true}, url: sameHost.URL + "/start"},
		{name: "body over the limit", opts: Options{AllowLoopback: true, MaxBody: 100}, url: big.URL, wantErr: ErrTooLarge},
		{name: "timeout", opts: Options{AllowLoopback: true, Timeout: 200 * time.Millisecond}, url: slow.URL, anyErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := New(tt.opts)
			req, _ := http.NewRequest(http.MethodGet, tt.url, nil)
			start := time.Now()
			st, _, err := Do(context.Background(), c, req, 1<<20)
			if tt.wantErr == nil && !tt.anyErr {
				if err != nil || st != 200 {
					t.Fatalf("status %d err %v, want 200", st, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("status %d, want an error", st)
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if time.Since(start) > 1500*time.Millisecond {
				t.Fatalf("took %v", time.Since(start))
			}
		})
	}
}
