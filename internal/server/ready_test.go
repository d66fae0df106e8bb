package server

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"io"
	"log/slog"
	"testing"

	"github.com/nhsid/nhsid/internal/config"
	"github.com/nhsid/nhsid/internal/testdb"
)

// TestGateOutlivesItsCaller: a request that goes away while the
// availability gate pings the database does not make the gate, whose
// answer every request shares for a while, report an outage.
func TestGateOutlivesItsCaller(t *testing.T) {
	secret := func() string {
		b := make([]byte, 32)
		_, _ = rand.Read(b)
		return base64.StdEncoding.EncodeToString(b)
	}
	cfg := config.Defaults()
	cfg.Issuer = "http://localhost:8080"
	cfg.Secrets = config.Secrets{GlobalSecret: secret(), ClientSecretPepper: secret(), KeyEncryptionKey: secret()}
	cfg.Admin.BootstrapToken = "ready-test-" + secret()
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
