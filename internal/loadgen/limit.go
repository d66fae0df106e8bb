package loadgen

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// LimitOptions configure a limit benchmark.
type LimitOptions struct {
	// Op is a scenario name: login, client_credentials, refresh or
	// introspect (userinfo has the introspection limit plus claims; mixed
	// is the weighted blend of the others).
	Op          string
	Concurrency int
	Duration    time.Duration
	// DatabaseURL is a PostgreSQL URL for the round trips (a scratch
	// schema is created and dropped); empty means in-memory maps, the
	// limit for a memory-store nhsid.
	DatabaseURL string
}

// LimitOps is what Limit can measure.
var LimitOps = []string{Login, ClientCredentials, Refresh, Introspect, Userinfo}

// Limit runs the unavoidable work of one operation, with no HTTP and no
// framework, closed-loop at opts.Concurrency for opts.Duration, and
// returns operations per second:
//
//   - client_credentials: HMAC the presented client secret and compare in
//     constant time, make a token (random + HMAC), insert one row;
//   - introspect (and userinfo): one HMAC, one indexed SELECT;
//   - refresh: one HMAC, one UPDATE, two INSERTs, one RS256 signature;
//   - login: verify one WebAuthn assertion (ES256 over authenticator data
//     and the client data hash), sign one RS256 ID token, and the minimal
//     round trips (SELECT and UPDATE the credential, INSERT the session,
//     INSERT and consume the code, INSERT access and refresh tokens).
func Limit(ctx context.Context, opts LimitOptions) (float64, error) {
	if opts.Concurrency <= 0 || opts.Concurrency > MaxConcurrency {
		return 0, fmt.Errorf("loadgen: limit: concurrency must be 1..%d", MaxConcurrency)
	}
	if opts.Duration <= 0 || opts.Duration > MaxDuration {
		return 0, fmt.Errorf("loadgen: limit: duration must be in (0, %s]", MaxDuration)
	}
	w, err := newLimitWork(ctx, opts.DatabaseURL, opts.Concurrency)
	if err != nil {
		return 0, err
	}
	defer w.close()
	if opts.Op != Mixed {
		return w.run(ctx, opts.Op, opts.Concurrency, opts.Duration)
	}
	// Mixed: the weighted harmonic blend of the single limits, the rate
	// the blend would reach if each operation ran at its limit. Each runs
	// at least minMixedPart (or the whole duration, if shorter): one stall
	// of the disk (a checkpoint) in a shorter part could take most of it,
	// and the blend follows its slowest part.
	per := max(opts.Duration/time.Duration(len(mixWeights)), min(minMixedPart, opts.Duration))
	var inv float64
	for _, m := range mixWeights {
		r, err := w.run(ctx, m.op, opts.Concurrency, per)
		if err != nil {
			return 0, err
		}
		if r == 0 {
			return 0, fmt.Errorf("loadgen: limit %s: no operation completed", m.op)
		}
		inv += float64(m.weight) / 100 / r
	}
	return 1 / inv, nil
}

// minMixedPart is the shortest run of each operation in the mixed limit.
const minMixedPart = 2 * time.Second

func (w *limitWork) run(ctx context.Context, op string, conc int, d time.Duration) (float64, error) {
	var fn func(context.Context, *mrand.Rand) error
	switch op {
	case ClientCredentials:
		fn = w.clientCredentials
	case Introspect, Userinfo:
		fn = w.introspect
	case Refresh:
		fn = w.refresh
	case Login, SAMLSSO:
		// SAML SSO's unavoidable work is the same: one assertion to
		// verify, one RSA signature (over the SAML assertion), the
		// session writes.
		fn = w.login
	default:
		return 0, fmt.Errorf("loadgen: limit: unknown operation %q", op)
	}
	runCtx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	counts := make([]int, conc)
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
	)
	start := time.Now()
	for i := range counts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rnd := mrand.New(mrand.NewPCG(uint64(i), uint64(start.UnixNano())))
			for runCtx.Err() == nil {
				if err := fn(runCtx, rnd); err != nil {
					if runCtx.Err() != nil {
						return
					}
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
					return
				}
				counts[i]++
			}
		}()
	}
	wg.Wait()
	if first != nil {
		return 0, fmt.Errorf("loadgen: limit %s: %w", op, first)
	}
	n := 0
	for _, c := range counts {
		n += c
	}
	return float64(n) / time.Since(start).Seconds(), nil
}

// limitWork holds keys, precomputed inputs and the tables.
type limitWork struct {
	pool      *pgxpool.Pool
	schema    string
	global    []byte // token HMAC key
	pepper    []byte // client secret HMAC key
	secret    string
	secretMAC []byte
	rsaKey    *rsa.PrivateKey
	credKey   *ecdsa.PrivateKey
	authData  []byte
	cdHash    [32]byte
	sig       []byte
	tokens    []string // issued tokens for introspection
	mem       *memTables
}

type memTables struct {
	mu   sync.RWMutex
	rows map[string][]byte
}

const limitRows = 2000

func newLimitWork(ctx context.Context, dbURL string, conc int) (*limitWork, error) {
	w := &limitWork{global: randBytes(32), pepper: randBytes(32), secret: randString(32)}
	w.secretMAC = mac(w.pepper, []byte(w.secret))
	var err error
	if w.rsaKey, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
		return nil, fmt.Errorf("loadgen: limit: %w", err)
	}
	if w.credKey, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		return nil, fmt.Errorf("loadgen: limit: %w", err)
	}
	w.authData = append(randBytes(32), 0x05, 0, 0, 0, 7)
	w.cdHash = sha256.Sum256([]byte(`{"type":"webauthn.get","challenge":"` + randString(32) + `","origin":"http://localhost:8080"}`))
	digest := sha256.Sum256(append(append([]byte{}, w.authData...), w.cdHash[:]...))
	if w.sig, err = ecdsa.SignASN1(rand.Reader, w.credKey, digest[:]); err != nil {
		return nil, fmt.Errorf("loadgen: limit: %w", err)
	}
	if dbURL == "" {
		w.mem = &memTables{rows: map[string][]byte{}}
	} else {
		cfg, err := pgxpool.ParseConfig(dbURL)
		if err != nil {
			return nil, fmt.Errorf("loadgen: limit: %w", err)
		}
		cfg.MaxConns = int32(min(conc, 32))
		if cfg.MaxConns < 4 {
			cfg.MaxConns = 4
		}
		w.schema = "nhsid_limit_" + hex.EncodeToString(randBytes(4))
		schema := w.schema
		cfg.ConnConfig.RuntimeParams["search_path"] = schema
		if w.pool, err = pgxpool.NewWithConfig(ctx, cfg); err != nil {
			return nil, fmt.Errorf("loadgen: limit: %w", err)
		}
		_, err = w.pool.Exec(ctx, `CREATE SCHEMA `+schema+`;
CREATE TABLE `+schema+`.tokens (signature text PRIMARY KEY, kind text NOT NULL, request_id text NOT NULL,
  client_id text NOT NULL, subject text NOT NULL, scope text NOT NULL, data bytea NOT NULL,
  expires_at timestamptz NOT NULL, active boolean NOT NULL DEFAULT true);
CREATE TABLE `+schema+`.credentials (id bytea PRIMARY KEY, public_key bytea NOT NULL, sign_count bigint NOT NULL);
CREATE TABLE `+schema+`.sessions (id text PRIMARY KEY, subject text NOT NULL, data bytea NOT NULL, expires_at timestamptz NOT NULL);
CREATE TABLE `+schema+`.codes (signature text PRIMARY KEY, data bytea NOT NULL, active boolean NOT NULL DEFAULT true);`)
		if err != nil {
			w.close()
			return nil, fmt.Errorf("loadgen: limit: create scratch schema: %w", err)
		}
		_, err = w.pool.Exec(ctx, `INSERT INTO credentials SELECT convert_to('cred-' || i, 'UTF8'), $1, 0 FROM generate_series(0, $2 - 1) i`,
			elliptic.MarshalCompressed(elliptic.P256(), w.credKey.X, w.credKey.Y), limitRows)
		if err != nil {
			w.close()
			return nil, fmt.Errorf("loadgen: limit: %w", err)
		}
	}
	// Issued tokens to introspect and refresh.
	sigs := make([]string, limitRows)
	for i := range sigs {
		tok := randString(32)
		w.tokens = append(w.tokens, tok)
		sigs[i] = w.tokenSig(tok)
		if w.mem != nil {
			w.mem.rows[sigs[i]] = limitSession
		}
	}
	if w.pool != nil {
		_, err := w.pool.Exec(ctx, `INSERT INTO tokens (signature, kind, request_id, client_id, subject, scope, data, expires_at)
SELECT s, 'access', s, 'c', '123456789012', 'openid profile', $2, now() + interval '1 hour' FROM unnest($1::text[]) s`, sigs, limitSession)
		if err != nil {
			w.close()
			return nil, fmt.Errorf("loadgen: limit: seed tokens: %w", err)
		}
		if err := w.warmPool(ctx); err != nil {
			w.close()
			return nil, err
		}
	}
	return w, nil
}

// warmPool opens every connection the pool may hold before anything is
// measured: a PostgreSQL backend takes milliseconds of CPU to start, and
// opening them inside a measured window counted that against the limit.
func (w *limitWork) warmPool(ctx context.Context) error {
	conns := make([]*pgxpool.Conn, 0, w.pool.Config().MaxConns)
	defer func() {
		for _, c := range conns {
			c.Release()
		}
	}()
	for range w.pool.Config().MaxConns {
		c, err := w.pool.Acquire(ctx)
		if err != nil {
			return fmt.Errorf("loadgen: limit: open connections: %w", err)
		}
		conns = append(conns, c)
	}
	return nil
}

func (w *limitWork) close() {
	if w.pool != nil {
		if w.schema != "" {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			_, _ = w.pool.Exec(ctx, `DROP SCHEMA IF EXISTS `+w.schema+` CASCADE`)
			cancel()
		}
		w.pool.Close()
	}
}

func randBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

func mac(key, msg []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write(msg)
	return m.Sum(nil)
}

// tokenSig is the stored form of a token: its HMAC.
func (w *limitWork) tokenSig(tok string) string {
	return base64.RawURLEncoding.EncodeToString(mac(w.global, []byte(tok)))
}

var limitSession = []byte(`{"subject":"123456789012","client_id":"c","scope":"openid profile","acr":"AAL3_ANY","amr":["hwk","mfa"],"auth_time":1700000000}`)

func (w *limitWork) insertToken(ctx context.Context, kind, tok string) error {
	sig := w.tokenSig(tok)
	if w.mem != nil {
		w.mem.mu.Lock()
		w.mem.rows[sig] = limitSession
		w.mem.mu.Unlock()
		return nil
	}
	_, err := w.pool.Exec(ctx, `INSERT INTO tokens (signature, kind, request_id, client_id, subject, scope, data, expires_at)
VALUES ($1, $2, $3, 'c', '123456789012', 'openid profile', $4, $5)`, sig, kind, randString(12), limitSession, time.Now().Add(time.Hour))
	if err != nil {
		return fmt.Errorf("insert token: %w", err)
	}
	return nil
}

func (w *limitWork) clientCredentials(ctx context.Context, _ *mrand.Rand) error {
	if !hmac.Equal(mac(w.pepper, []byte(w.secret)), w.secretMAC) {
		return errors.New("secret mismatch")
	}
	return w.insertToken(ctx, "access", randString(32))
}

func (w *limitWork) introspect(ctx context.Context, rnd *mrand.Rand) error {
	sig := w.tokenSig(w.tokens[rnd.IntN(len(w.tokens))])
	if w.mem != nil {
		w.mem.mu.RLock()
		_, ok := w.mem.rows[sig]
		w.mem.mu.RUnlock()
		if !ok {
			return errors.New("token not found")
		}
		return nil
	}
	var data []byte
	var exp time.Time
	var active bool
	err := w.pool.QueryRow(ctx, `SELECT data, expires_at, active FROM tokens WHERE signature = $1`, sig).Scan(&data, &exp, &active)
	if err != nil {
		return fmt.Errorf("select token: %w", err)
	}
	return nil
}

// signIDToken signs a typical ID token with RS256.
func (w *limitWork) signIDToken() error {
	now := time.Now().Unix()
	claims, _ := json.Marshal(map[string]any{"iss": "http://localhost:8080", "sub": "123456789012", "aud": "client",
		"exp": now + 300, "iat": now, "auth_time": now, "nonce": randString(12), "acr": "AAL3_ANY",
		"amr": []string{"hwk", "mfa"}, "sid": randString(16), "at_hash": randString(16)})
	input := `eyJhbGciOiJSUzI1NiIsImtpZCI6ImsxIiwidHlwIjoiSldUIn0.` + base64.RawURLEncoding.EncodeToString(claims)
	h := sha256.Sum256([]byte(input))
	_, err := rsa.SignPKCS1v15(nil, w.rsaKey, crypto.SHA256, h[:])
	return err
}

func (w *limitWork) refresh(ctx context.Context, rnd *mrand.Rand) error {
	sig := w.tokenSig(w.tokens[rnd.IntN(len(w.tokens))])
	if w.mem != nil {
		w.mem.mu.Lock()
		w.mem.rows[sig] = limitSession
		w.mem.mu.Unlock()
	} else if _, err := w.pool.Exec(ctx, `UPDATE tokens SET active = false WHERE signature = $1`, sig); err != nil {
		return fmt.Errorf("update token: %w", err)
	}
	if err := w.insertToken(ctx, "access", randString(32)); err != nil {
		return err
	}
	if err := w.insertToken(ctx, "refresh", randString(32)); err != nil {
		return err
	}
	return w.signIDToken()
}

func (w *limitWork) login(ctx context.Context, rnd *mrand.Rand) error {
	digest := sha256.Sum256(append(append(make([]byte, 0, 80), w.authData...), w.cdHash[:]...))
	if !ecdsa.VerifyASN1(&w.credKey.PublicKey, digest[:], w.sig) {
		return errors.New("assertion does not verify")
	}
	if err := w.signIDToken(); err != nil {
		return err
	}
	if w.mem != nil {
		w.mem.mu.Lock()
		w.mem.rows["session:"+randString(12)] = limitSession
		w.mem.rows["code:"+randString(12)] = limitSession
		w.mem.mu.Unlock()
	} else {
		var pk []byte
		var n int64
		cred := []byte(fmt.Sprintf("cred-%d", rnd.IntN(limitRows)))
		if err := w.pool.QueryRow(ctx, `SELECT public_key, sign_count FROM credentials WHERE id = $1`, cred).Scan(&pk, &n); err != nil {
			return fmt.Errorf("select credential: %w", err)
		}
		if _, err := w.pool.Exec(ctx, `UPDATE credentials SET sign_count = sign_count + 1 WHERE id = $1`, cred); err != nil {
			return fmt.Errorf("update credential: %w", err)
		}
		if _, err := w.pool.Exec(ctx, `INSERT INTO sessions VALUES ($1, '123456789012', $2, $3)`, randString(16), limitSession, time.Now().Add(time.Hour)); err != nil {
			return fmt.Errorf("insert session: %w", err)
		}
		code := randString(16)
		if _, err := w.pool.Exec(ctx, `INSERT INTO codes VALUES ($1, $2, true)`, code, limitSession); err != nil {
			return fmt.Errorf("insert code: %w", err)
		}
		if _, err := w.pool.Exec(ctx, `UPDATE codes SET active = false WHERE signature = $1 AND active`, code); err != nil {
			return fmt.Errorf("consume code: %w", err)
		}
	}
	if err := w.insertToken(ctx, "access", randString(32)); err != nil {
		return err
	}
	return w.insertToken(ctx, "refresh", randString(32))
}
