package main

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/nhsid/nhsid/internal/faultproxy"
)

// probe is one request's outcome.
type probe struct {
	status     int
	body       string
	start, end time.Time
	took       time.Duration
	err        error
}

// probeLoad sends token and ceremony requests through the cluster until
// stop is closed, and returns every outcome.
func probeLoad(c *cluster, cc clusterClient, workers int, stop <-chan struct{}) []probe {
	var mu sync.Mutex
	var out []probe
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			hc := &http.Client{Timeout: 30 * time.Second}
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				t0 := time.Now()
				var req *http.Request
				if (w+i)%2 == 0 {
					req, _ = http.NewRequest("POST", c.issuer+"/oauth2/token", strings.NewReader(url.Values{"grant_type": {"client_credentials"}}.Encode()))
					req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
					req.SetBasicAuth(url.QueryEscape(cc.id), url.QueryEscape(cc.secret))
				} else {
					req, _ = http.NewRequest("POST", c.issuer+"/webauthn/login/begin", strings.NewReader(`{"flow":"no-such-flow"}`))
					req.Header.Set("Content-Type", "application/json")
				}
				p := probe{start: t0}
				resp, err := hc.Do(req)
				if err != nil {
					p.err = err
				} else {
					b, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					p.status, p.body = resp.StatusCode, string(b)
				}
				p.end = time.Now()
				p.took = p.end.Sub(t0)
				mu.Lock()
				out = append(out, p)
				mu.Unlock()
				time.Sleep(20 * time.Millisecond)
			}
		}(w)
	}
	<-stop
	wg.Wait()
	return out
}

// healthy reports whether p is a normal answer: a token, or the ceremony
// API's refusal of an unknown flow.
func healthy(p probe) bool { return p.err == nil && (p.status == 200 || p.status == 400) }

// unavailable reports whether p is a clean outage answer.
func unavailable(p probe) bool {
	return p.err == nil && p.status == 503 && strings.Contains(p.body, "temporarily_unavailable")
}

// TestDatabaseOutageFailsFastAndRecovers: the database is cut (through a
// fault-injecting TCP proxy, never the shared server) for 10 s while two
// nodes serve load. Requests fail fast with 503 temporarily_unavailable,
// readiness goes false, and everything recovers by itself once the
// database is back, with no restart.
func TestDatabaseOutageFailsFastAndRecovers(t *testing.T) {
	t.Parallel()
	raw := emptyDatabase(t)
	u, _ := url.Parse(raw)
	fp, err := faultproxy.New(u.Host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = fp.Close() })
	u.Host = fp.Addr()
	c := newCluster(t, clusterOptions{nodes: 2, rawDBURL: raw, dbURL: u.String(),
		extraYAML: "database: {connect_timeout: 1s, request_timeout: 2s}\n"})
	cc := c.newClient("client_credentials")

	stop := make(chan struct{})
	results := make(chan []probe, 1)
	go func() { results <- probeLoad(c, cc, 4, stop) }()

	time.Sleep(1 * time.Second)
	// The cut takes effect connection by connection while Cut runs: a
	// request that ended while it ran may already have been refused, and
	// one that started while it ran may still have been answered (its
	// write joined a group sent just before). Both count as edges.
	cutStart := time.Now()
	fp.Cut()
	cutAt := time.Now()
	// Readiness goes false on every node.
	for i, n := range c.nodes {
		took := waitStatus(t, "http://"+n.pub+"/readyz", 503, 8*time.Second)
		t.Logf("node %d /readyz 503 %s after the cut", i+1, took)
	}
	time.Sleep(time.Until(cutAt.Add(10 * time.Second)))
	restoredAt := time.Now()
	fp.Restore()
	for i, n := range c.nodes {
		waitStatus(t, "http://"+n.pub+"/readyz", 200, 15*time.Second)
		t.Logf("node %d ready again %s after restore", i+1, time.Since(restoredAt).Round(time.Millisecond))
	}
	readyAt := time.Now()
	time.Sleep(1500 * time.Millisecond)
	close(stop)
	all := <-results

	// Classify by when each request ran: wholly before the cut, wholly
	// inside the outage, wholly after recovery, or across an edge.
	phases := map[string][]probe{}
	for _, p := range all {
		switch {
		case p.end.Before(cutStart):
			phases["before"] = append(phases["before"], p)
		case p.start.After(cutAt) && p.end.Before(restoredAt):
			phases["outage"] = append(phases["outage"], p)
		case p.start.After(readyAt):
			phases["after"] = append(phases["after"], p)
		default:
			phases["edge"] = append(phases["edge"], p)
		}
	}
	for _, ph := range []string{"before", "outage", "edge", "after"} {
		var ok, unav, other int
		var slowest time.Duration
		for _, p := range phases[ph] {
			slowest = max(slowest, p.took)
			switch {
			case healthy(p):
				ok++
			case unavailable(p):
				unav++
				if ph == "before" || ph == "after" {
					t.Logf("%s: 503 for a request from %s to %s after the cut began", ph, p.start.Sub(cutStart), p.end.Sub(cutStart))
				}
			default:
				other++
				if other <= 3 {
					t.Errorf("%s: unexpected answer %d %v %.200s", ph, p.status, p.err, p.body)
				}
			}
		}
		if other > 0 {
			for _, n := range c.nodes {
				for _, line := range strings.Split(n.proc.stderr.String(), "\n") {
					if strings.Contains(line, `"level":"ERROR"`) && strings.Contains(line, "request failed") {
						t.Logf("node log: %.600s", line)
					}
				}
			}
		}
		t.Logf("%-7s requests %4d: ok %4d, 503 temporarily_unavailable %4d, other %d, slowest %s", ph, len(phases[ph]), ok, unav, other, slowest.Round(time.Millisecond))
		switch ph {
		case "before", "after":
			if ok != len(phases[ph]) || ok == 0 {
				t.Errorf("%s: %d of %d requests healthy", ph, ok, len(phases[ph]))
			}
		case "outage":
			if unav != len(phases[ph]) || unav == 0 {
				t.Errorf("outage: %d of %d requests got 503 temporarily_unavailable", unav, len(phases[ph]))
			}
			if slowest > 10*time.Second { // a hang, not a slow machine
				t.Errorf("outage: a request took %s: not failing fast", slowest)
			}
		}
	}
}

// TestPoolExhaustionFailsCleanly: with a tiny pool (max_conns 2) whose
// connections are all stuck behind a lock held by another session,
// requests wait briefly (database.request_timeout) and then fail cleanly
// with 503 — never a 500 or a hang — and recover once the lock goes.
func TestPoolExhaustionFailsCleanly(t *testing.T) {
	t.Parallel()
	c := newCluster(t, clusterOptions{nodes: 1, extraYAML: "database: {max_conns: 2, request_timeout: 1s}\n"})
	cc := c.newClient("client_credentials")
	ctx := t.Context()
	conn, err := pgx.Connect(ctx, c.rawDBURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `LOCK TABLE clients, flows IN ACCESS EXCLUSIVE MODE`); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	results := make(chan []probe, 1)
	go func() { results <- probeLoad(c, cc, 12, stop) }()
	time.Sleep(4 * time.Second)
	close(stop)
	res := <-results
	_ = tx.Rollback(ctx)
	if len(res) == 0 {
		t.Fatal("no requests")
	}

	var unav int
	var slowest time.Duration
	for _, p := range res {
		slowest = max(slowest, p.took)
		if unavailable(p) {
			unav++
		} else if !healthy(p) {
			t.Errorf("unexpected answer while exhausted: %d %v %.200s", p.status, p.err, p.body)
		}
	}
	t.Logf("pool exhausted: %d requests, %d got 503 temporarily_unavailable, slowest %s", len(res), unav, slowest.Round(time.Millisecond))
	if unav == 0 {
		t.Error("no request was refused while the pool was exhausted")
	}
	if slowest > 10*time.Second { // a hang, not a slow machine
		t.Errorf("a request waited %s: want a brief wait then a clean failure", slowest)
	}
	// Recovery without restart.
	deadline := time.Now().Add(10 * time.Second)
	for {
		st, _, err := c.token(http.DefaultClient, cc, url.Values{"grant_type": {"client_credentials"}})
		if err == nil && st == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no recovery after the lock went: %d %v", st, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
