package loadgen

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/base64"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nhsid/nhsid/internal/config"
	"github.com/nhsid/nhsid/internal/server"
	"github.com/nhsid/nhsid/internal/testdb"
)

// startServer runs nhsid in-process on loopback (memory or postgres) and
// returns its public and admin URLs and the admin token.
func startServer(t testing.TB, backend string) (issuer, adminURL, token string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	issuer = "http://localhost:" + port
	secret := func() string {
		b := make([]byte, 32)
		_, _ = rand.Read(b)
		return base64.StdEncoding.EncodeToString(b)
	}
	cfg := config.Defaults()
	cfg.Issuer = issuer
	cfg.Listen = "127.0.0.1:" + port
	cfg.Secrets = config.Secrets{GlobalSecret: secret(), ClientSecretPepper: secret(), KeyEncryptionKey: secret()}
	cfg.Admin.BootstrapToken = "load-admin-" + secret()
	cfg.Keys.Prepublish = 0
	// A load generator on loopback is exempt from the per-IP rate limits
	// (internal/ratelimit), as an operator would configure it.
	cfg.RateLimits.Exempt = []string{"127.0.0.0/8", "::1/128"}
	dev := true
	if backend == "postgres" {
		cfg.Database.URL = testdb.URL(t)
		dev = false
	}
	srv, err := server.New(context.Background(), server.Options{Config: cfg, Dev: dev,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatalf("server.New: %v", err)
	}
	srv.Start()
	pub := httptest.NewUnstartedServer(srv.PublicHandler())
	pub.Listener.Close()
	pub.Listener = ln
	pub.Start()
	adm := httptest.NewServer(srv.AdminHandler())
	t.Cleanup(func() {
		pub.Close()
		adm.Close()
		srv.Close()
	})
	return issuer, adm.URL, cfg.Admin.BootstrapToken
}

// TestSmoke runs every scenario briefly against an in-process nhsid, on
// both stores, and asserts only that there were no errors (never speed).
func TestSmoke(t *testing.T) {
	for _, backend := range []string{"memory", "postgres"} {
		t.Run(backend, func(t *testing.T) {
			issuer, adminURL, token := startServer(t, backend)
			ctx := context.Background()
			st, err := Setup(ctx, SetupOptions{Issuer: issuer, AdminURL: adminURL, AdminToken: token, Users: 12})
			if err != nil {
				t.Fatalf("setup: %v", err)
			}
			// The state survives a save and load.
			path := t.TempDir() + "/state.json"
			if err := st.Save(path); err != nil {
				t.Fatal(err)
			}
			if st, err = LoadState(path); err != nil {
				t.Fatal(err)
			}
			// Two seconds on both backends: a run counts only iterations that
			// finish inside its window, and on a busy machine (other test
			// packages in parallel, -race) a whole sign-in can take most of
			// a second, which left a one-second window with nothing done.
			d := 2 * time.Second
			for _, sc := range Scenarios {
				for _, rate := range []float64{0, 20} {
					if rate > 0 && sc != Mixed && sc != Login {
						continue
					}
					auths := []string{""}
					if sc == Refresh && rate == 0 {
						auths = []string{AuthSecretBasic, AuthPrivateKeyJWT}
					}
					for _, auth := range auths {
						name := sc
						if rate > 0 {
							name += "/open"
						}
						if auth != "" {
							name += "/" + auth
						}
						t.Run(name, func(t *testing.T) {
							s, err := Run(ctx, st, Options{Scenario: sc, Concurrency: 4, Duration: d, Rate: rate, RefreshAuth: auth})
							if err != nil {
								t.Fatalf("run: %v", err)
							}
							if s.Errors != 0 || s.Count == 0 {
								t.Fatalf("%d iterations, errors %v; first: %s", s.Count, s.ErrorKinds, s.FirstError)
							}
							if want := refreshAuthOf(Options{Scenario: sc, RefreshAuth: cmp.Or(auth, AuthSecretBasic)}); s.RefreshAuth != want {
								t.Fatalf("summary refresh auth %q, want %q", s.RefreshAuth, want)
							}
							// Every iteration's requests were timed, step by step.
							timed := 0
							for step, st := range s.Steps {
								if st.Count == 0 || st.Errors != 0 || st.P50ms <= 0 || st.MaxMs < st.P50ms {
									t.Fatalf("step %s: %+v", step, st)
								}
								timed += st.Count
							}
							if timed < s.Count {
								t.Fatalf("%d requests timed by step for %d iterations: %v", timed, s.Count, s.Steps)
							}
							if sc == Login {
								for _, step := range []string{"authorize", "login/begin", "login/finish", "resume", "token(code)"} {
									if s.Steps[step].Count < s.Count {
										t.Fatalf("step %s timed %d times in %d sign-ins", step, s.Steps[step].Count, s.Count)
									}
								}
							}
						})
					}
				}
			}
			if backend == "memory" {
				t.Run("login/warmup", func(t *testing.T) {
					// The warm-up runs as measured, and its requests and
					// iterations are left out of the summary.
					rt := &countingRT{next: http.DefaultTransport}
					s, err := Run(ctx, st, Options{Scenario: Login, Concurrency: 2, Duration: d, Warmup: d, Transport: rt})
					if err != nil {
						t.Fatalf("run: %v", err)
					}
					if s.Errors != 0 || s.WarmupErrors != 0 || s.Count == 0 {
						t.Fatalf("%d iterations, errors %v, %d in the warm-up; first: %s", s.Count, s.ErrorKinds, s.WarmupErrors, s.FirstError)
					}
					// Each sign-in ends in one code exchange; the warm-up's
					// sign-ins are among those sent, not among those counted.
					exchanges := int(rt.n.Load())
					timed := 0
					for _, st := range s.Steps {
						timed += st.Count
					}
					if s.WarmupSeconds != d.Seconds() || exchanges <= s.Count+s.Concurrency || timed > s.Requests ||
						s.Requests > 8*(s.Count+s.Concurrency) {
						t.Fatalf("warm-up %gs; %d code exchanges sent for %d sign-ins counted; %d requests in the summary, %d timed by step: the warm-up's should be left out",
							s.WarmupSeconds, exchanges, s.Count, s.Requests, timed)
					}
				})
				t.Run("mixed/warmup", func(t *testing.T) {
					// Refreshes whose replies arrive after the warm-up's end:
					// nhsid has rotated the tokens (and revoked the access
					// token), so a client that gave up waiting would present
					// a revoked token to userinfo in the measured time.
					rt := &slowRefreshRT{next: http.DefaultTransport, delay: 1500 * time.Millisecond}
					s, err := Run(ctx, st, Options{Scenario: Mixed, Concurrency: 8, Duration: d, Warmup: time.Second, Transport: rt})
					if err != nil {
						t.Fatalf("run: %v", err)
					}
					if s.Errors != 0 || s.WarmupErrors != 0 || s.Count == 0 {
						t.Fatalf("%d iterations, errors %v, %d in the warm-up; first: %s", s.Count, s.ErrorKinds, s.WarmupErrors, s.FirstError)
					}
				})
			}
			// The browsers' device cookies survive a save and load, so
			// the next run's browsers return as known devices.
			kept := 0
			for _, u := range st.Users {
				if u.BrowserDevice != nil {
					kept++
				}
			}
			if kept == 0 {
				t.Fatal("no browser kept a device cookie")
			}
			if err := st.Save(path); err != nil {
				t.Fatal(err)
			}
			again, err := LoadState(path)
			if err != nil {
				t.Fatal(err)
			}
			for i, u := range again.Users {
				if !reflect.DeepEqual(u.BrowserDevice, st.Users[i].BrowserDevice) {
					t.Fatalf("user %d: device cookie %v after load, want %v", i, u.BrowserDevice, st.Users[i].BrowserDevice)
				}
			}
		})
	}
}

func TestCheckLoopback(t *testing.T) {
	for _, tc := range []struct {
		url string
		ok  bool
	}{
		{"http://localhost:8080", true},
		{"http://127.0.0.1:8080", true},
		{"http://[::1]:8080", true},
		{"https://127.0.0.2", true},
		{"http://10.0.0.1:8080", false},
		{"https://nhsid.example.nhs.uk", false},
		{"ftp://localhost", false},
	} {
		t.Run(tc.url, func(t *testing.T) {
			if err := CheckLoopback(tc.url); (err == nil) != tc.ok {
				t.Fatalf("CheckLoopback(%q) = %v, want ok=%v", tc.url, err, tc.ok)
			}
		})
	}
}

// TestLimit runs each limit benchmark briefly, in memory and on
// PostgreSQL, asserting only that it runs without error.
func TestLimit(t *testing.T) {
	for _, backend := range []string{"memory", "postgres"} {
		t.Run(backend, func(t *testing.T) {
			db := ""
			if backend == "postgres" {
				db = testdb.URL(t)
			}
			for _, op := range append(LimitOps, Mixed) {
				t.Run(op, func(t *testing.T) {
					r, err := Limit(context.Background(), LimitOptions{Op: op, Concurrency: 4, Duration: 300 * time.Millisecond, DatabaseURL: db})
					if err != nil {
						t.Fatal(err)
					}
					if r <= 0 {
						t.Fatalf("limit %v", r)
					}
					t.Logf("%s: %.0f/s", op, r)
				})
			}
		})
	}
}

// countingRT counts the token requests it carries.
type countingRT struct {
	next http.RoundTripper
	n    atomic.Int64
}

func (c *countingRT) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Method == http.MethodPost && r.URL.Path == "/oauth2/token" {
		c.n.Add(1)
	}
	return c.next.RoundTrip(r)
}

// slowRefreshRT holds each refresh's reply for delay after nhsid has
// answered, or until the request is given up.
type slowRefreshRT struct {
	next  http.RoundTripper
	delay time.Duration
}

func (c *slowRefreshRT) RoundTrip(r *http.Request) (*http.Response, error) {
	refresh := false
	if r.Method == http.MethodPost && r.URL.Path == "/oauth2/token" && r.GetBody != nil {
		if b, err := r.GetBody(); err == nil {
			body, _ := io.ReadAll(b)
			refresh = strings.Contains(string(body), "grant_type=refresh_token")
		}
	}
	resp, err := c.next.RoundTrip(r)
	if err != nil || !refresh {
		return resp, err
	}
	select {
	case <-time.After(c.delay):
		return resp, nil
	case <-r.Context().Done():
		resp.Body.Close()
		return nil, r.Context().Err()
	}
}
