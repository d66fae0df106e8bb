package main

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// TestScaleOutAcrossNodes: three nodes on one database behind a
// round-robin proxy. A sign-in begun on one node finishes on another, SSO
// works across nodes, and a key rotated through one node's database is
// served by every node within keys.reload_interval.
func TestScaleOutAcrossNodes(t *testing.T) {
	t.Parallel()
	c := newCluster(t, clusterOptions{nodes: 3})
	cc := c.newClient()
	u := c.newUser("Nodea")

	code, verifier, ceremony, err := u.signIn(cc)
	if err != nil || !ceremony {
		t.Fatalf("first sign-in: ceremony=%v err=%v", ceremony, err)
	}
	begin, finish := c.lb.servedBy("/webauthn/login/begin"), c.lb.servedBy("/webauthn/login/finish")
	if len(begin) != 1 || len(finish) != 1 || begin[0] == finish[0] {
		t.Fatalf("begin served by %v, finish by %v: want different nodes", begin, finish)
	}
	t.Logf("login begin on node %d, finish on node %d", begin[0]+1, finish[0]+1)
	if _, err := c.exchange(http.DefaultClient, cc, code, verifier); err != nil {
		t.Fatal(err)
	}
	// SSO: the next authorizations, landing on other nodes, need no
	// ceremony.
	for i := 0; i < 3; i++ {
		code, verifier, ceremony, err := u.signIn(cc)
		if err != nil || ceremony {
			t.Fatalf("SSO %d: ceremony=%v err=%v", i, ceremony, err)
		}
		if _, err := c.exchange(http.DefaultClient, cc, code, verifier); err != nil {
			t.Fatalf("SSO %d: %v", i, err)
		}
	}
	if a := c.lb.servedBy("/oauth2/authorize"); len(a) < 3 || a[len(a)-1] == a[len(a)-2] {
		t.Fatalf("authorize served by %v", a)
	}

	// The real listener bounds header size (431, not a 500 or a hang).
	req, _ := http.NewRequest("GET", "http://"+c.nodes[0].pub+"/healthz", nil)
	req.Header.Set("X-Big", strings.Repeat("a", 128<<10))
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("128 KiB header: %v %v", err, resp)
	} else {
		resp.Body.Close()
	}

	// Key rotation through the CLI (any replica's database): every node
	// serves the new keys within the reload interval (1 s here).
	before := c.jwksKIDs(0)
	var keys []struct {
		KID string `json:"kid"`
	}
	if err := json.Unmarshal(c.runCLI("keys", "rotate"), &keys); err != nil {
		t.Fatal(err)
	}
	var fresh []string
	for _, k := range keys {
		if !before[k.KID] {
			fresh = append(fresh, k.KID)
		}
	}
	if len(fresh) == 0 {
		t.Fatal("rotate made no new key")
	}
	start := time.Now()
	deadline := start.Add(5 * time.Second)
	for i := range c.nodes {
		for {
			got := c.jwksKIDs(i)
			all := true
			for _, k := range fresh {
				all = all && got[k]
			}
			if all {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("node %d does not serve the rotated keys %v after %s", i+1, fresh, time.Since(start))
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	t.Logf("all %d nodes served the rotated keys %s after rotation", len(c.nodes), time.Since(start).Round(time.Millisecond))

	// Emergency revocation: the revoked key leaves every node's JWKS.
	c.runCLI("keys", "revoke", fresh[0])
	start = time.Now()
	for i := range c.nodes {
		for c.jwksKIDs(i)[fresh[0]] {
			if time.Since(start) > 5*time.Second {
				t.Fatalf("node %d still serves revoked key %s", i+1, fresh[0])
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	t.Logf("revoked key left every node's JWKS within %s", time.Since(start).Round(time.Millisecond))
}

// loadStats counts the outcomes of a bounded load.
type loadStats struct {
	signins, tokens, retries, failures atomic.Int64
	mu                                 sync.Mutex
	lastErr                            error
}

func (s *loadStats) fail(err error) {
	s.failures.Add(1)
	s.mu.Lock()
	s.lastErr = err
	s.mu.Unlock()
}

// withRetry runs op until it succeeds, retrying retryable failures (and,
// since a whole sign-in is the unit, any failure once a node died under
// it) up to 8 times.
func withRetry(s *loadStats, op func() error) error {
	var err error
	for attempt := 0; attempt < 8; attempt++ {
		if err = op(); err == nil {
			return nil
		}
		s.retries.Add(1)
		time.Sleep(time.Duration(50*(attempt+1)) * time.Millisecond)
	}
	return err
}

// TestScaleOutKillNodeUnderLoad: SIGKILL one of three nodes during a
// bounded load of sign-ins and token requests. Clients that retry succeed
// on the others, and every sign-in a client saw succeed has its audit
// record.
func TestScaleOutKillNodeUnderLoad(t *testing.T) {
	t.Parallel()
	c := newCluster(t, clusterOptions{nodes: 3})
	cc := c.newClient()
	svc := c.newClient("client_credentials")
	const workers = 4
	users := make([]*clusterUser, workers)
	for i := range users {
		users[i] = c.newUser("Load" + string(rune('a'+i)))
	}
	var st loadStats
	stop := time.Now().Add(6 * time.Second)
	var wg sync.WaitGroup
	for i := 0; i < workers; i++ {
		wg.Add(2)
		go func(u *clusterUser) {
			defer wg.Done()
			for time.Now().Before(stop) {
				// A fresh browser each time, so every round is a ceremony.
				u.http.Jar, _ = newJar()
				err := withRetry(&st, func() error {
					code, verifier, _, err := u.signIn(cc)
					if err != nil {
						return err
					}
					_, err = c.exchange(u.http, cc, code, verifier)
					return err
				})
				if err != nil {
					st.fail(err)
					continue
				}
				st.signins.Add(1)
			}
		}(users[i])
		go func() {
			defer wg.Done()
			hc := &http.Client{Timeout: 10 * time.Second}
			for time.Now().Before(stop) {
				err := withRetry(&st, func() error {
					code, out, err := c.token(hc, svc, url.Values{"grant_type": {"client_credentials"}})
					if err != nil || code != 200 {
						return errors.Join(errRetry, err, errors.New(http.StatusText(code)), errors.New(toString(out)))
					}
					return nil
				})
				if err != nil {
					st.fail(err)
					continue
				}
				st.tokens.Add(1)
			}
		}()
	}
	time.Sleep(2 * time.Second)
	victim := c.nodes[1]
	if err := victim.proc.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	t.Log("SIGKILLed node 2 under load")
	wg.Wait()
	<-victim.proc.done
	t.Logf("sign-ins %d, client_credentials tokens %d, retried steps %d, failures %d",
		st.signins.Load(), st.tokens.Load(), st.retries.Load(), st.failures.Load())
	if st.failures.Load() > 0 {
		t.Fatalf("%d operations failed even with retries; last: %v", st.failures.Load(), st.lastErr)
	}
	if st.signins.Load() < workers || st.tokens.Load() < workers {
		t.Fatalf("too little work done: %d sign-ins, %d tokens", st.signins.Load(), st.tokens.Load())
	}
	// No audit record lost: every sign-in a client saw succeed (plus
	// enrolment sign-ins are separate events) has a signin.success record.
	ctx := t.Context()
	conn, err := pgx.Connect(ctx, c.rawDBURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var n int64
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM audit_events WHERE type = 'signin.success'`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n < st.signins.Load() {
		t.Fatalf("%d signin.success audit records for %d successful sign-ins", n, st.signins.Load())
	}
	t.Logf("%d signin.success audit records for %d client-observed sign-ins", n, st.signins.Load())
}

func toString(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
