//go:build soak

package main

import (
	"bufio"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// soakSample is one reading of a node's resources.
type soakSample struct {
	at         time.Duration
	goroutines float64
	heap       float64 // go_memstats_heap_inuse_bytes
	// live is the heap the last collection left: its goal
	// (go_memstats_next_gc_bytes) over 1 + GOGC/100. With a high GOGC
	// the heap in use swings several-fold between collections, so
	// growth is judged on this.
	live    float64
	rss     float64 // process_resident_memory_bytes
	dbConns int     // connections to the database (pg_stat_activity)
	fds     float64 // process_open_fds
}

// metrics reads a few gauges from a node's /metrics.
func soakMetrics(t *testing.T, adm string) map[string]float64 {
	resp, err := http.Get("http://" + adm + "/metrics")
	if err != nil {
		t.Fatalf("metrics: %v", err)
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		name, val, ok := strings.Cut(line, " ")
		if !ok || strings.Contains(name, "{") {
			continue
		}
		f, err := strconv.ParseFloat(val, 64)
		if err == nil {
			out[name] = f
		}
	}
	return out
}

// TestSoak is the soak run (docs/soak.md), built only with -tags soak and
// never in CI: one node on a fresh database under a bounded mixed load
// (sign-ins with token exchange, SSO, refresh, userinfo, client
// credentials) for NHSID_SOAK_DURATION (default 10m), sampling goroutines,
// heap, RSS, open files and database connections every 30 s. It fails if
// goroutines or connections grow, or the live heap after the run is more
// than twice the post-warm-up one.
func TestSoak(t *testing.T) {
	d := 10 * time.Minute
	if v := os.Getenv("NHSID_SOAK_DURATION"); v != "" {
		var err error
		if d, err = time.ParseDuration(v); err != nil {
			t.Fatal(err)
		}
	}
	c := newCluster(t, clusterOptions{nodes: 1, extraYAML: "database: {max_conns: 10}\n"})
	cc := c.newClient("authorization_code", "refresh_token")
	svc := c.newClient("client_credentials")
	const workers = 6
	users := make([]*clusterUser, workers)
	for i := range users {
		users[i] = c.newUser("Soak" + string(rune('a'+i)))
	}
	conn, err := pgx.Connect(t.Context(), c.rawDBURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(t.Context())
	dbName := c.rawDBURL[strings.LastIndex(c.rawDBURL, "/")+1:]
	if i := strings.Index(dbName, "?"); i >= 0 {
		dbName = dbName[:i]
	}
	sample := func(at time.Duration) soakSample {
		m := soakMetrics(t, c.nodes[0].adm)
		var n int
		_ = conn.QueryRow(t.Context(), `SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()`, dbName).Scan(&n)
		return soakSample{at: at, goroutines: m["go_goroutines"], heap: m["go_memstats_heap_inuse_bytes"],
			live: m["go_memstats_next_gc_bytes"] / (1 + m["go_gc_gogc_percent"]/100),
			rss:  m["process_resident_memory_bytes"], fds: m["process_open_fds"], dbConns: n}
	}

	var ops, errs atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := 0; i < workers; i++ {
		wg.Add(1)
		go func(u *clusterUser, i int) {
			defer wg.Done()
			hc := &http.Client{Timeout: 10 * time.Second}
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				var err error
				switch n % 4 {
				case 0: // a fresh browser: full ceremony
					u.http.Jar, _ = newJar()
					fallthrough
				case 1: // SSO
					var code, verifier string
					if code, verifier, _, err = u.signIn(cc); err == nil {
						var tok map[string]any
						if tok, err = c.exchange(hc, cc, code, verifier); err == nil {
							req, _ := http.NewRequest("GET", c.issuer+"/userinfo", nil)
							req.Header.Set("Authorization", "Bearer "+tok["access_token"].(string))
							if resp, e := hc.Do(req); e == nil {
								resp.Body.Close()
							}
							if rt, _ := tok["refresh_token"].(string); rt != "" {
								_, _, err = c.token(hc, cc, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}})
							}
						}
					}
				default:
					var st int
					st, _, err = c.token(hc, svc, url.Values{"grant_type": {"client_credentials"}})
					if err == nil && st != 200 {
						err = errRetry
					}
				}
				ops.Add(1)
				if err != nil {
					errs.Add(1)
				}
			}
		}(users[i], i)
	}
	start := time.Now()
	time.Sleep(min(30*time.Second, d/10)) // warm-up
	samples := []soakSample{sample(time.Since(start))}
	tick := time.NewTicker(30 * time.Second)
	deadline := time.After(d)
loop:
	for {
		select {
		case <-deadline:
			break loop
		case <-tick.C:
			samples = append(samples, sample(time.Since(start)))
		}
	}
	tick.Stop()
	close(stop)
	wg.Wait()
	time.Sleep(2 * time.Second) // let idle connections and goroutines settle
	end := sample(time.Since(start))
	samples = append(samples, end)
	t.Logf("%d operations in %s (%.0f/s), %d errors", ops.Load(), d, float64(ops.Load())/d.Seconds(), errs.Load())
	t.Logf("%8s %10s %10s %10s %10s %6s %8s", "t", "goroutines", "heap MiB", "live MiB", "rss MiB", "fds", "db conns")
	for _, s := range samples {
		t.Logf("%8s %10.0f %10.1f %10.1f %10.1f %6.0f %8d", s.at.Round(time.Second), s.goroutines, s.heap/(1<<20), s.live/(1<<20),
			s.rss/(1<<20), s.fds, s.dbConns)
	}
	first := samples[0]
	if end.goroutines > first.goroutines*1.2+20 {
		t.Errorf("goroutines grew from %.0f to %.0f", first.goroutines, end.goroutines)
	}
	if end.dbConns > 10+2 {
		t.Errorf("%d database connections after the run (max_conns 10)", end.dbConns)
	}
	if first.live <= 0 || end.live > 2*first.live {
		t.Errorf("live heap grew from %.1f MiB to %.1f MiB", first.live/(1<<20), end.live/(1<<20))
	}
	if errs.Load()*100 > ops.Load() {
		t.Errorf("%d of %d operations failed", errs.Load(), ops.Load())
	}
}
