package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/nhsid/nhsid/internal/config"
	"github.com/nhsid/nhsid/internal/server"
)

func serveCmd() *cobra.Command {
	var dev bool
	var listen, adminListen string
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the identity provider",
		Long: `Run the identity provider.

Without --dev it needs a PostgreSQL database (database.url or NHSID_DATABASE_URL)
and the secrets in the config file. With --dev it runs on an embedded memory
store with ephemeral keys and demo data, at http://localhost:8080.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(cmd)
			if err != nil {
				return err
			}
			if dev {
				applyDevDefaults(&cfg, cmd.Flags().Changed("listen"), listen)
			}
			if cmd.Flags().Changed("listen") || cfg.Listen == "" {
				cfg.Listen = listen
			}
			if cmd.Flags().Changed("admin-listen") || cfg.AdminListen == "" {
				cfg.AdminListen = adminListen
			}
			if err := cfg.Validate(dev); err != nil {
				return usageErr(err)
			}
			tuneGC(os.Getenv)
			return serve(cmd.Context(), cmd.OutOrStdout(), cfg, dev)
		},
	}
	cmd.Flags().BoolVar(&dev, "dev", false, "development mode: memory store, demo data, http://localhost")
	cmd.Flags().StringVar(&listen, "listen", ":8080", "public listen address")
	cmd.Flags().StringVar(&adminListen, "admin-listen", "127.0.0.1:8081", "admin listen address (admin API, metrics)")
	return cmd
}

// applyDevDefaults fills in what --dev provides: the issuer follows the
// public address on localhost.
func applyDevDefaults(cfg *config.Config, listenSet bool, listen string) {
	if cfg.Issuer == "" {
		port := "8080"
		if listenSet {
			if _, p, err := net.SplitHostPort(listen); err == nil && p != "" && p != "0" {
				port = p
			}
		}
		cfg.Issuer = "http://localhost:" + port
	}
}

// defaultGCPercent is the Go collector's target (GOGC) unless the
// environment sets one. nhsid's live heap is small (caches and requests in
// flight; sessions and tokens live in the database), so the collector
// lets the heap grow to 11x it (4x with GOGC 300 until round 14, 2x with
// Go's default): about 110 MiB RSS under load instead of about 60, for
// 10-12 % more sign-ins and tokens a second on two cores
// (docs/performance.md, rounds 4 and 14).
const defaultGCPercent = 1000

// defaultMemoryLimit is the Go runtime's soft memory limit (GOMEMLIMIT)
// unless the environment sets one: the collector runs sooner rather than
// let a burst's larger live heap grow 11-fold. Containers should set
// GOMEMLIMIT below their memory limit instead (the Kubernetes manifest
// does).
const defaultMemoryLimit = 256 << 20

// tuneGC applies the defaults above where getenv has no setting.
func tuneGC(getenv func(string) string) {
	if getenv("GOGC") == "" {
		debug.SetGCPercent(defaultGCPercent)
	}
	if getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(defaultMemoryLimit)
	}
}

func newLogger(w io.Writer, level string) *slog.Logger {
	var l slog.Level
	_ = l.UnmarshalText([]byte(level))
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: l}))
}

func serve(parent context.Context, out io.Writer, cfg config.Config, dev bool) error {
	if parent == nil {
		parent = context.Background()
	}
	ctx, stop := signal.NotifyContext(parent, os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := newLogger(os.Stderr, cfg.Log.Level)

	started := time.Now()
	s, err := server.New(ctx, server.Options{Config: cfg, Dev: dev, Log: log})
	if err != nil {
		return err
	}
	defer s.Close()
	pub, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen %s: %w", cfg.Listen, err)
	}
	adm, err := net.Listen("tcp", cfg.AdminListen)
	if err != nil {
		pub.Close()
		return fmt.Errorf("listen %s: %w", cfg.AdminListen, err)
	}
	s.Start()
	log.Info("nhsid started", "version", version, "issuer", cfg.Issuer, "public", pub.Addr().String(),
		"admin", adm.Addr().String(), "dev", dev, "startup", time.Since(started).String())
	if dev && s.Demo != nil {
		printDevBanner(out, cfg, adm.Addr().String(), s.Demo)
	}
	return s.Run(ctx, pub, adm, 20*time.Second)
}

func printDevBanner(out io.Writer, cfg config.Config, adminAddr string, d *server.DemoInfo) {
	fmt.Fprintf(out, `
nhsid is running in DEVELOPMENT mode (memory store, ephemeral keys; nothing survives a restart).

  Issuer / discovery   %[1]s/.well-known/openid-configuration
  Demo relying party   %[1]s/demo
  Admin API            http://%[2]s/admin/v1   (metrics: http://%[2]s/metrics)
  Admin token          %[3]s
                       export NHSID_TOKEN=%[3]s

  Demo clinician       Dr Ada Demo, uid %[4]s, organisation %[5]s
  Enrol a security key %[6]s
                       (single use, expires in %[7]s; then sign in at %[1]s/demo)

  Clients              %[8]s (confidential, private_key_jwt; used by /demo)
                       %[9]s (public, PKCE; redirect %[1]s/demo/spa)

Press Ctrl-C to stop.
`, cfg.Issuer, adminAddr, d.AdminToken, d.PersonUID, d.OrgCode, d.InviteURL, cfg.Enrolment.InviteTTL, d.RPClientID, d.SPAClientID)
}
