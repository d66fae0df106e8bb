// Package server wires nhsid together in one visible place: it picks the
// store, builds policy, authn, idp and admin with explicit dependencies,
// mounts their handlers on the public and admin listeners with the common
// middleware, and runs and drains the listeners. Only cmd/nhsid and
// end-to-end tests import it.
package server

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"net/url"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/nhsid/nhsid/admin"
	"github.com/nhsid/nhsid/admin/console"
	"github.com/nhsid/nhsid/audit"
	"github.com/nhsid/nhsid/authn"
	fedsaml "github.com/nhsid/nhsid/federation/saml"
	"github.com/nhsid/nhsid/idp"
	"github.com/nhsid/nhsid/internal/config"
	"github.com/nhsid/nhsid/internal/ratelimit"
	"github.com/nhsid/nhsid/migrations"
	"github.com/nhsid/nhsid/onboarding"
	"github.com/nhsid/nhsid/policy"
	"github.com/nhsid/nhsid/store"
	"github.com/nhsid/nhsid/store/memory"
	"github.com/nhsid/nhsid/store/postgres"
	"github.com/nhsid/nhsid/web"
)

// Store is every storage interface the server needs, as both adapters
// implement it.
type Store interface {
	policy.Store
	policy.RBACStore
	authn.Store
	idp.Store
	audit.Store
	fedsaml.Store
	onboarding.Store
}

// Options configure New.
type Options struct {
	Config config.Config
	// Dev: memory store unless a database URL is set, ephemeral secrets,
	// insecure cookies on http://localhost, demo data.
	Dev bool
	Log *slog.Logger
	// Now is the clock (tests inject one); nil means time.Now.
	Now func() time.Time
	// OutboundAllowPrivate lets tests point jwks_uri and similar at loopback.
	OutboundAllowPrivate bool
	// NoAudit wires no audit recorder (for the audit on/off benchmark only).
	NoAudit bool
	// GeoIP replaces the configured GeoIP file of the risk engine (tests).
	GeoIP policy.GeoIP
}

// Server is a wired nhsid.
type Server struct {
	cfg    config.Config
	dev    bool
	log    *slog.Logger
	now    func() time.Time
	pool   *pgxpool.Pool // nil for the memory store
	Store  Store
	Policy *policy.Service
	Authn  *authn.Service
	IDP    *idp.Provider
	Admin  *admin.API
	SAML   *fedsaml.Handler
	Audit  *audit.Log    // records events
	Sealer *audit.Sealer // chains and checkpoints them (Start)
	// Limiter holds request rates and lockouts, shared by replicas
	// through the store (internal/ratelimit).
	Limiter *ratelimit.Limiter
	// Risk is the sign-in risk engine (risk.go); nil when disabled.
	Risk     *authn.Risk
	registry *prometheus.Registry
	// logoutAttempts counts back-channel logout attempts (logout.go).
	logoutAttempts *prometheus.CounterVec

	public http.Handler
	admin  http.Handler
	// Demo holds what `serve --dev` seeded (nil otherwise).
	Demo *DemoInfo

	ready    readiness
	bgCancel context.CancelFunc
	bgDone   sync.WaitGroup
}

// New validates the configuration and builds the server. It does not listen.
func New(ctx context.Context, opts Options) (*Server, error) {
	cfg := opts.Config
	if err := cfg.Validate(opts.Dev); err != nil {
		return nil, err
	}
	log := opts.Log
	if log == nil {
		log = slog.Default()
	}
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	s := &Server{cfg: cfg, dev: opts.Dev, log: log, now: now, registry: prometheus.NewRegistry()}
	s.registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	secrets, err := loadSecrets(cfg.Secrets, opts.Dev)
	if err != nil {
		return nil, err
	}

	// Storage.
	if cfg.Database.URL == "" {
		s.Store = memory.New()
	} else {
		if cfg.Database.AutoMigrate {
			murl := cfg.Database.MigrateURL
			if murl == "" {
				murl = cfg.Database.URL
			}
			if err := migrations.Up(ctx, murl); err != nil {
				return nil, fmt.Errorf("migrate: %w", err)
			}
		}
		pcfg, err := pgxpool.ParseConfig(cfg.Database.URL)
		if err != nil {
			return nil, fmt.Errorf("database.url: %w", err)
		}
		if cfg.Database.MaxConns > 0 {
			pcfg.MaxConns = cfg.Database.MaxConns
		}
		pcfg.ConnConfig.ConnectTimeout = 5 * time.Second
		if cfg.Database.ConnectTimeout > 0 {
			pcfg.ConnConfig.ConnectTimeout = cfg.Database.ConnectTimeout
		}
		if cfg.Database.StatementTimeout > 0 {
			pcfg.ConnConfig.RuntimeParams["statement_timeout"] = fmt.Sprint(cfg.Database.StatementTimeout.Milliseconds())
		}
		pcfg.MinConns = cfg.Database.PoolMinConns(pcfg.MaxConns)
		pcfg.HealthCheckPeriod = 5 * time.Second
		// Connections kept open all day would otherwise all reach their
		// lifetime (an hour) together and be replaced in one go.
		pcfg.MaxConnLifetimeJitter = 10 * time.Minute
		pool, err := pgxpool.NewWithConfig(ctx, pcfg)
		if err != nil {
			return nil, fmt.Errorf("database: %w", err)
		}
		pingCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if err := pool.Ping(pingCtx); err != nil {
			pool.Close()
			return nil, fmt.Errorf("database: cannot connect: %w", err)
		}
		warmCtx, cancelWarm := context.WithTimeout(ctx, pcfg.ConnConfig.ConnectTimeout)
		err = warmPool(warmCtx, pool, pcfg.MinConns)
		cancelWarm()
		if err != nil {
			log.Warn("database: could not open database.min_conns connections before serving; the first requests will open them", "min_conns", pcfg.MinConns, "err", err.Error())
		}
		s.pool = pool
		pg := postgres.New(pool)
		if warnings, err := pg.SettingWarnings(pingCtx); err != nil {
			log.Warn("database settings not checked", "err", err.Error())
		} else {
			for _, w := range warnings {
				log.Warn(w)
			}
		}
		s.Store = pg
	}

	s.Audit = audit.NewLog(s.Store, audit.Options{Now: now})
	var rec audit.Recorder = s.Audit
	if opts.NoAudit {
		rec = nil
	}
	auditKey, ephemeral, err := audit.SigningKeyFromEnv(opts.Dev)
	if err != nil {
		log.Warn("audit checkpoints disabled: no signing key", "env", audit.EnvSigningKey)
	} else if ephemeral {
		log.Warn("audit checkpoints signed with an ephemeral key (dev)")
	}
	sealLag := prometheus.NewGauge(prometheus.GaugeOpts{Name: "nhsid_audit_seal_lag_seconds",
		Help: "Age of the first audit record not yet sealed into the hash chain (0 when all are sealed)."})
	s.registry.MustRegister(sealLag)
	s.logoutAttempts = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "nhsid_logout_deliveries_total",
		Help: "Back-channel logout attempts by this replica, by kind (oidc, saml) and outcome (delivered, retry, given_up)."},
		[]string{"kind", "outcome"})
	s.registry.MustRegister(s.logoutAttempts)
	s.Sealer = &audit.Sealer{Store: s.Store, Key: auditKey, Log: log, Now: now,
		ObserveLag: func(d time.Duration) { sealLag.Set(d.Seconds()) }}

	if rs, ok := s.Store.(ratelimit.Store); ok {
		if s.Limiter, err = ratelimit.New(cfg.RateLimits, rs, now, log); err != nil {
			s.Close()
			return nil, err
		}
	}

	issuer, _ := url.Parse(cfg.Issuer)
	origins := cfg.WebAuthn.Origins
	if len(origins) == 0 {
		origins = []string{issuer.Scheme + "://" + issuer.Host}
	}
	rpID := cfg.WebAuthn.RPID
	if rpID == "" {
		rpID = issuer.Hostname()
	}

	s.Policy = &policy.Service{Store: s.Store, Now: now, Rand: rand.Reader}
	if s.Risk, err = buildRisk(cfg.Risk, opts.GeoIP, s.Store, log); err != nil {
		s.Close()
		return nil, err
	}
	s.Authn, err = authn.New(authn.Config{
		RPID:            rpID,
		RPDisplayName:   cfg.WebAuthn.RPName,
		RPOrigins:       origins,
		PublicURL:       cfg.Issuer,
		SecureCookies:   issuer.Scheme == "https",
		InviteTTL:       cfg.Enrolment.InviteTTL,
		AAL3Absolute:    cfg.Sessions.AAL3.Absolute,
		AAL3Idle:        cfg.Sessions.AAL3.Idle,
		AAL2Absolute:    cfg.Sessions.AAL2.Absolute,
		AAL2Idle:        cfg.Sessions.AAL2.Idle,
		MDSFile:         cfg.WebAuthn.MDSFile,
		MDSRootCert:     cfg.WebAuthn.MDSRootCert,
		TrustAnchors:    cfg.WebAuthn.TrustAnchors,
		AAGUIDAllowList: cfg.WebAuthn.AAGUIDAllowList,
	}, authn.Deps{Store: s.Store, People: s.Store, Log: log, Now: now, Rand: rand.Reader, Audit: rec, Limiter: s.Limiter, Risk: s.Risk})
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("authn: %w", err)
	}

	prepublish := cfg.Keys.Prepublish
	if opts.Dev {
		prepublish = 0
	}
	s.IDP, err = idp.New(idp.Config{
		Issuer:              cfg.Issuer,
		GlobalSecret:        secrets.global,
		SecretPepper:        secrets.pepper,
		KEK:                 secrets.kek,
		AccessTokenTTL:      cfg.Tokens.AccessTokenTTL,
		IDTokenTTL:          cfg.Tokens.IDTokenTTL,
		AuthCodeTTL:         cfg.Tokens.AuthCodeTTL,
		RefreshTTL:          cfg.Tokens.RefreshTokenTTL,
		RefreshGrace:        cfg.Tokens.RefreshGrace,
		KeyAlg:              cfg.Keys.Algorithm,
		KeyRotationInterval: cfg.Keys.RotationInterval,
		KeyPrePublish:       prepublish,
		KeyReloadInterval:   cfg.Keys.ReloadInterval,
		Logout:              idp.LogoutConfig{Observe: s.observeLogout("oidc")},
		Dev:                 opts.Dev,
	}, idp.Deps{Store: s.Store, People: s.Store, Authn: s.Authn, Log: log, Now: now, Ready: s.gateReady, Audit: rec,
		Claims: roleClaimSources(s.Policy), Roles: s.Policy, Outbound: outboundClient(opts)})
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("idp: %w", err)
	}
	// An OpenID Connect sign-in that needs nothing more is completed in the
	// login finish, with the sign-in's own writes (idp/complete.go).
	s.Authn.SetFlowCompleter("oidc", s.IDP)
	s.SAML, err = fedsaml.New(fedsaml.Config{Issuer: cfg.Issuer}, fedsaml.Deps{Store: s.Store, Pending: s.Store, Sessions: s.Store,
		Authn: s.Authn, People: s.Store, Roles: s.Policy, Signing: s.IDP, Audit: rec, Log: log, Now: now})
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("saml: %w", err)
	}

	s.Policy.EndAccess = s.endAccess
	s.wireLogout(opts)
	s.Admin = &admin.API{
		Policy:         s.Policy,
		Invites:        s.Authn,
		Clients:        s.IDP,
		ClientStore:    s.Store,
		BootstrapToken: cfg.Admin.BootstrapToken,
		Log:            log,
		Audit:          rec,
		AuditStore:     s.Store,
		SAMLProviders:  s.Store,
		Lockouts:       s.Limiter,
		Sessions:       s.Authn,
	}

	var trusted []netip.Prefix
	for _, c := range cfg.TrustedProxies {
		p, _ := netip.ParsePrefix(c)
		trusted = append(trusted, p)
	}
	reqs, lat := newMetrics(s.registry)

	pub := http.NewServeMux()
	pub.HandleFunc("GET /healthz", s.healthz)
	pub.HandleFunc("GET /readyz", s.readyz)
	pub.HandleFunc("GET /favicon.ico", func(w http.ResponseWriter, r *http.Request) {
		r2 := r.Clone(r.Context())
		r2.URL.Path = "/images/favicon.ico"
		w.Header().Set("Cache-Control", "public, max-age=86400")
		web.Static().ServeHTTP(w, r2)
	})
	s.IDP.Mount(pub)
	s.Authn.Mount(pub)
	s.Authn.MountSelectRole(pub)
	// The RA web console calls the same service layer in-process, as the
	// signed-in RA (DESIGN.md, Admin authority).
	(&console.Console{Sessions: s.Authn, Invites: s.Authn, Policy: s.Policy, Credentials: s.Store,
		Audit: rec, Log: log, Now: now, SecureCookies: s.Authn.Config().SecureCookies, Risk: s.Authn, Lockouts: s.Limiter}).Mount(pub)
	s.SAML.Mount(pub)
	// Relying-party onboarding (issue 10): integrator and reviewer pages
	// on the public listener, the operator's API on the admin listener.
	onb := &onboarding.Service{Store: s.Store, Policy: s.Policy, Clients: s.IDP, ClientStore: s.Store, Invites: s.Authn,
		Mailer: onboarding.LogMailer{Log: log}, Audit: rec, Log: log, PublicURL: cfg.Issuer, Now: now, Rand: rand.Reader}
	(&onboarding.Pages{Service: onb, Sessions: s.Authn, SecureCookies: s.Authn.Config().SecureCookies}).Mount(pub)
	if opts.Dev {
		if err := s.seedDemo(ctx, pub); err != nil {
			s.Close()
			return nil, fmt.Errorf("demo data: %w", err)
		}
		if err := s.seedDemoRoles(ctx); err != nil {
			s.Close()
			return nil, fmt.Errorf("demo roles: %w", err)
		}
	}
	pubInst := &instrument{log: log, trusted: trusted, maxBody: 1 << 20, requests: reqs, latency: lat, listener: "public",
		inner: s.limitAndBound}
	s.public = securityHeaders(pubInst.wrap(pub), issuer.Scheme == "https")

	adm := http.NewServeMux()
	adm.HandleFunc("GET /healthz", s.healthz)
	adm.HandleFunc("GET /readyz", s.readyz)
	adm.Handle("GET /metrics", promhttp.HandlerFor(s.registry, promhttp.HandlerOpts{}))
	if os.Getenv("NHSID_PPROF") == "1" {
		// Profiling for docs/performance.md, on the private admin listener
		// only, with mutex and block profiles sampled.
		runtime.SetMutexProfileFraction(20)
		runtime.SetBlockProfileRate(int(50 * time.Microsecond))
		adm.HandleFunc("/debug/pprof/", pprof.Index)
		adm.HandleFunc("/debug/pprof/profile", pprof.Profile)
		adm.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	s.Admin.Mount(adm)
	(&onboarding.AdminAPI{Service: onb, OperatorToken: cfg.Admin.BootstrapToken}).Mount(adm)
	admInst := &instrument{log: log, trusted: trusted, maxBody: 4 << 20, requests: reqs, latency: lat, listener: "admin",
		inner: s.limitAndBound}
	s.admin = securityHeaders(admInst.wrap(adm), false)
	return s, nil
}

// PublicHandler serves the public listener (OIDC, pages, ceremonies).
func (s *Server) PublicHandler() http.Handler { return s.public }

// AdminHandler serves the admin listener (admin API, metrics).
func (s *Server) AdminHandler() http.Handler { return s.admin }

// Start runs background jobs (key rotation and reload) until Close.
func (s *Server) Start() {
	ctx, cancel := context.WithCancel(context.Background())
	s.bgCancel = cancel
	s.bgDone.Add(1)
	go func() {
		defer s.bgDone.Done()
		s.IDP.Run(ctx)
	}()
	s.bgDone.Add(1)
	go func() {
		defer s.bgDone.Done()
		s.Sealer.Run(ctx)
	}()
	s.startSessionJobs(ctx)
	s.bgDone.Add(1)
	go func() {
		defer s.bgDone.Done()
		purgeRiskProfiles(ctx, s.Risk, s.now, s.log)
	}()
	s.bgDone.Add(1)
	go func() {
		defer s.bgDone.Done()
		s.purgeRateLimits(ctx)
	}()
}

// Close stops background jobs and closes the database pool.
func (s *Server) Close() {
	if s.bgCancel != nil {
		s.bgCancel()
		s.bgDone.Wait()
	}
	if s.pool != nil {
		s.pool.Close()
	}
}

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write([]byte(`{"status":"ok"}` + "\n"))
}

// readyCacheFor is how long one database check answers the OAuth gate.
const readyCacheFor = 500 * time.Millisecond

// readiness caches the database check behind the OAuth endpoints' gate:
// one ping per interval serves every request in it (a ping per request cost
// a round trip and ~9 % of the CPU of an introspection), and while a check
// is running other requests get the previous answer instead of waiting.
// Requests read it without a lock (a mutex here was contended at 10,000
// requests a second).
type readiness struct {
	last     atomic.Pointer[readyAnswer] // nil before the first check
	checking atomic.Bool
}

// readyAnswer is one check's answer.
type readyAnswer struct {
	at  time.Time
	err error
}

// gateReady is storeReady, cached (see readiness).
func (s *Server) gateReady(ctx context.Context) error {
	r := &s.ready
	last := r.last.Load()
	if last != nil && time.Since(last.at) < readyCacheFor {
		return last.err
	}
	if !r.checking.CompareAndSwap(false, true) {
		// Another request is checking: the previous answer stands.
		if last != nil {
			return last.err
		}
		return nil
	}
	defer r.checking.Store(false)
	err := s.storeReady(ctx)
	r.record(err)
	return err
}

// record stores a fresh check's answer (from /readyz), so the gate turns
// as soon as readiness does.
func (r *readiness) record(err error) {
	r.last.Store(&readyAnswer{at: time.Now(), err: err})
}

// storeReady pings the database. The check runs inside a request (the
// gate's or /readyz's), but its answer is shared with every request for
// readyCacheFor, so the caller going away must not count: a browser that
// closed its tab during the check once made the gate answer 503 to
// everyone for half a second.
func (s *Server) storeReady(ctx context.Context) error {
	if s.pool == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	if err := s.pool.Ping(ctx); err != nil {
		return fmt.Errorf("%w: %v", store.ErrUnavailable, err)
	}
	return nil
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	err := s.storeReady(r.Context())
	s.ready.record(err)
	if err != nil {
		s.log.WarnContext(r.Context(), "not ready", "err", err.Error())
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte(`{"status":"unavailable","database":"unreachable"}` + "\n"))
		return
	}
	_, _ = w.Write([]byte(`{"status":"ready"}` + "\n"))
}

// Run listens on the configured addresses until ctx is cancelled, then
// drains in-flight requests (up to drain) and returns.
func (s *Server) Run(ctx context.Context, publicLn, adminLn net.Listener, drain time.Duration) error {
	pub := &http.Server{Handler: s.public, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second,
		WriteTimeout: 60 * time.Second, IdleTimeout: 120 * time.Second, MaxHeaderBytes: 64 << 10, ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelWarn)}
	adm := &http.Server{Handler: s.admin, ReadHeaderTimeout: 10 * time.Second, MaxHeaderBytes: 64 << 10, ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelWarn)}
	var tlsFiles bool
	if s.cfg.TLS.CertFile != "" {
		cr, err := newCertReloader(s.cfg.TLS.CertFile, s.cfg.TLS.KeyFile, s.log)
		if err != nil {
			return err
		}
		pub.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: cr.get}
		tlsFiles = true
	}
	errc := make(chan error, 2)
	go func() {
		var err error
		if tlsFiles {
			err = pub.ServeTLS(publicLn, "", "")
		} else {
			err = pub.Serve(publicLn)
		}
		errc <- err
	}()
	go func() { errc <- adm.Serve(adminLn) }()
	select {
	case <-ctx.Done():
	case err := <-errc:
		if !errors.Is(err, http.ErrServerClosed) {
			_ = pub.Close()
			_ = adm.Close()
			return err
		}
	}
	s.log.Info("shutting down: draining requests", "timeout", drain.String())
	sctx, cancel := context.WithTimeout(context.Background(), drain)
	defer cancel()
	e1 := pub.Shutdown(sctx)
	e2 := adm.Shutdown(sctx)
	return errors.Join(e1, e2)
}

// warmPool takes n of the pool's connections, opening those it lacks, and
// returns them to it, so that a replica starts serving with its
// connections open rather than opening them under its first burst of
// sign-ins.
func warmPool(ctx context.Context, pool *pgxpool.Pool, n int32) error {
	conns := make([]*pgxpool.Conn, 0, n)
	defer func() {
		for _, c := range conns {
			c.Release()
		}
	}()
	for range n {
		c, err := pool.Acquire(ctx)
		if err != nil {
			return err
		}
		conns = append(conns, c)
	}
	return nil
}
