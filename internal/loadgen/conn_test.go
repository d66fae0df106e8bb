package loadgen

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestConnTransport: one connection carries request after request, also
// after a reply its caller did not read; the server's Connection: close
// and a cancelled request each cost a new connection, nothing else.
func TestConnTransport(t *testing.T) {
	var conns atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		switch r.URL.Path {
		case "/close":
			w.Header().Set("Connection", "close")
		case "/slow":
			select {
			case <-r.Context().Done():
			case <-time.After(5 * time.Second):
			}
			return
		}
		_, _ = io.WriteString(w, r.Method+" "+r.URL.Path+" "+string(body)+strings.Repeat(".", 20_000))
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()

	tr := newConnTransport(http.DefaultTransport)
	defer tr.Close()
	c := apiClient(tr)
	if c.Timeout != 0 {
		t.Fatalf("client timeout %v: the transport applies it", c.Timeout)
	}
	get := func(path string, read bool) {
		t.Helper()
		resp, err := c.Post(srv.URL+path, "text/plain", strings.NewReader("hello"))
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		defer resp.Body.Close()
		if !read {
			return
		}
		b, err := io.ReadAll(resp.Body)
		if err != nil || !strings.HasPrefix(string(b), "POST "+path+" hello") {
			t.Fatalf("%s: %q, %v", path, b[:min(len(b), 40)], err)
		}
	}
	get("/a", true)
	get("/b", false) // closed unread: the next request reads past it
	get("/c", true)
	if n := conns.Load(); n != 1 {
		t.Fatalf("%d connections for three requests, want 1", n)
	}
	get("/close", true)
	get("/d", true)
	if n := conns.Load(); n != 2 {
		t.Fatalf("%d connections after Connection: close, want 2", n)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/slow", nil)
	start := time.Now()
	if _, err := c.Do(req); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("cut short: %v, want the context's deadline", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("cut short after %v", d)
	}
	get("/e", true)
	if n := conns.Load(); n != 3 {
		t.Fatalf("%d connections after a cancelled request, want 3", n)
	}
}
