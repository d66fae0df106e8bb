package server

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/nhsid/nhsid/internal/config"
	"github.com/nhsid/nhsid/internal/testdb"
)

// TestGateOutlivesItsCaller: a request that goes away while the
// availability gate pings the database does not make the gate, whose
// answer every request shares for a while, report an outage.
func TestGateOutlivesItsCaller(t *testing.T) {
	cfg := config.Defaults()
	cfg.Issuer = "http://localhost:8080"
	cfg.Secrets = config.Secrets{GlobalSecret: randomSecret(), ClientSecretPepper: randomSecret(), KeyEncryptionKey: randomSecret()}
	cfg.Admin.BootstrapToken = "ready-test-" + randomSecret()
	cfg.Database.URL = testdb.URL(t)
	srv, err := New(context.Background(), Options{Config: cfg, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(srv.Close)

	gone, cancel := context.WithCancel(context.Background())
	cancel()
	if err := srv.gateReady(gone); err != nil {
		t.Fatalf("gate checked by a request that went away: %v", err)
	}
	if err := srv.gateReady(context.Background()); err != nil {
		t.Fatalf("gate after that check: %v", err)
	}
}

// TestPoolOpenBeforeServing: New returns with database.min_conns
// connections open (max_conns unless set), so that the first burst of
// sign-ins does not wait for PostgreSQL to start backends; min_conns 0
// leaves them to be opened on demand (New itself needs a few).
func TestPoolOpenBeforeServing(t *testing.T) {
	url := testdb.URL(t)
	secrets := config.Secrets{GlobalSecret: randomSecret(), ClientSecretPepper: randomSecret(), KeyEncryptionKey: randomSecret()}
	for _, c := range []struct {
		min        int32
		wantAtMost int32
		wantLeast  int32
	}{{-1, 6, 6}, {0, 5, 0}} {
		cfg := config.Defaults()
		cfg.Issuer = "http://localhost:8080"
		cfg.Secrets = secrets
		cfg.Admin.BootstrapToken = "pool-test-" + randomSecret()
		cfg.Database.URL = url
		cfg.Database.MaxConns, cfg.Database.MinConns = 6, c.min
		srv, err := New(context.Background(), Options{Config: cfg, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			t.Fatalf("New: %v", err)
		}
		open := srv.pool.Stat().TotalConns()
		srv.Close()
		if open < c.wantLeast || open > c.wantAtMost {
			t.Errorf("min_conns %d: %d connections open after New, want %d..%d", c.min, open, c.wantLeast, c.wantAtMost)
		}
	}
}

// randomSecret is a fresh 32-byte secret, base64.
func randomSecret() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return base64.StdEncoding.EncodeToString(b)
}

// TestWarmPool: warmPool leaves n connections open in a pool that would
// otherwise open them on demand, and fails when the pool cannot open
// them in time.
func TestWarmPool(t *testing.T) {
	pcfg, err := pgxpool.ParseConfig(testdb.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	pcfg.MaxConns = 5
	pool, err := pgxpool.NewWithConfig(context.Background(), pcfg)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if err := warmPool(context.Background(), pool, 5); err != nil {
		t.Fatalf("warmPool: %v", err)
	}
	if st := pool.Stat(); st.TotalConns() != 5 || st.IdleConns() != 5 {
		t.Errorf("after warmPool(5): %d open, %d idle; want 5 and 5", st.TotalConns(), st.IdleConns())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := warmPool(ctx, pool, 6); err == nil {
		t.Error("warmPool(6) of a pool of at most 5: no error")
	}
	if st := pool.Stat(); st.AcquiredConns() != 0 {
		t.Errorf("warmPool kept %d connections acquired", st.AcquiredConns())
	}
}
