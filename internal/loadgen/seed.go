package loadgen

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/ory/fosite"

	"github.com/nhsid/nhsid/idp"
)

// Seed fills an already-migrated nhsid database with filler people,
// organisation memberships, positions and OAuth token rows, so that
// throughput can be measured at scale (issue 8: 1,000,000 persons and
// 5,000,000 token rows). It writes straight to PostgreSQL with COPY (the
// last quarter of the token rows with plain INSERTs, see seedTokens), in
// batches that each commit on their own.
//
// Everything it writes is tagged so that CleanSeed can remove it again:
// people have an email address at SeedEmailDomain (their uids are ordinary
// 12-digit uids), organisations have codes SEED0000 to SEED9999, positions
// are created by SeedActor, and token rows have request ids starting with
// SeedRequestPrefix.

// Seed bounds and tags.
const (
	MaxSeedPersons = 5_000_000
	MaxSeedTokens  = 20_000_000
	MaxSeedOrgs    = 10_000

	// SeedEmailDomain is the domain of every seeded person's email address
	// (.invalid never resolves, RFC 2606).
	SeedEmailDomain = "seed.nhsid.invalid"
	// SeedOrgPrefix starts every seeded organisation code (then 4 digits).
	SeedOrgPrefix = "SEED"
	// SeedActor is created_by of seeded positions.
	SeedActor = "nhsid-load seed"
	// SeedRequestPrefix starts every seeded token row's request_id.
	SeedRequestPrefix = "seed-"
	// SeedServiceKind is what SeedOptions.onToken is told for a
	// client_credentials access token (stored with kind access).
	SeedServiceKind = "client_credentials"

	defaultSeedBatch = 50_000
)

// Lifetimes of seeded token rows: nhsid's defaults (idp.Config).
const (
	seedAccessTTL  = time.Hour
	seedRefreshTTL = 12 * time.Hour
	seedCodeTTL    = 5 * time.Minute
)

// SeedOptions configures Seed.
type SeedOptions struct {
	// DatabaseURL is nhsid's PostgreSQL database (loopback or a unix
	// socket only), already migrated.
	DatabaseURL string
	// Persons is how many seeded people the database should hold; Seed
	// adds only those missing.
	Persons int
	// Tokens is how many seeded token rows the database should hold; Seed
	// adds only those missing.
	Tokens int
	// Orgs is how many seeded organisations the people are spread over
	// (default 1,000).
	Orgs int
	// ClientID owns the token rows; empty means the first enabled client.
	ClientID string
	// BatchSize is rows per COPY or INSERT, each its own transaction
	// (default 50,000).
	BatchSize int
	// Progress receives a line about every 10% of each phase (nil: none).
	Progress io.Writer

	// onToken, when set (tests), sees every token row's kind and
	// plaintext signature.
	onToken func(kind, signature string)
}

// SeedResult summarises a Seed run.
type SeedResult struct {
	// ExistingPersons and ExistingTokens were already seeded before the run.
	ExistingPersons, ExistingTokens int
	// Persons, Positions, Orgs and Tokens are the rows added by this run.
	Persons, Positions, Orgs, Tokens int
	// TokensByKind splits Tokens by oauth_tokens.kind.
	TokensByKind map[string]int
	// ServiceTokens of Tokens are client_credentials access tokens
	// (counted in TokensByKind as access).
	ServiceTokens int
	// ClientID owns the token rows.
	ClientID string
	// Note says why something was left out (e.g. positions without a
	// role catalogue).
	Note    string
	Elapsed time.Duration
}

// Rows is every row this run added.
func (r *SeedResult) Rows() int { return r.Persons + 2*r.Positions + r.Orgs + r.Tokens }

// String is the one-paragraph summary the command prints.
func (r *SeedResult) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "seeded %d persons (%d positions, %d new organisations) and %d token rows",
		r.Persons, r.Positions, r.Orgs, r.Tokens)
	if r.Tokens > 0 {
		var kinds []string
		for _, k := range seedKinds {
			kind := fmt.Sprintf("%s %d", k, r.TokensByKind[k])
			if k == idp.TokenKindAccess && r.ServiceTokens > 0 {
				kind += fmt.Sprintf(" (%d of them client_credentials)", r.ServiceTokens)
			}
			kinds = append(kinds, kind)
		}
		fmt.Fprintf(&b, " (%s; client %s)", strings.Join(kinds, ", "), r.ClientID)
	}
	secs := r.Elapsed.Seconds()
	rate := 0.0
	if secs > 0 {
		rate = float64(r.Rows()) / secs
	}
	fmt.Fprintf(&b, " in %s: %d rows, %.0f rows/s", r.Elapsed.Round(time.Millisecond), r.Rows(), rate)
	if r.ExistingPersons > 0 || r.ExistingTokens > 0 {
		fmt.Fprintf(&b, "; already seeded before: %d persons, %d token rows", r.ExistingPersons, r.ExistingTokens)
	}
	if r.Note != "" {
		b.WriteString("; note: " + r.Note)
	}
	return b.String()
}

var seedKinds = []string{idp.TokenKindAccess, idp.TokenKindRefresh, idp.TokenKindCode, idp.TokenKindPKCE, idp.TokenKindOIDC}

// CheckDatabaseLoopback refuses a PostgreSQL URL or DSN whose hosts
// (including fallbacks) are not loopback addresses, localhost or unix
// sockets: the seeder writes millions of rows and must never touch a shared
// or remote database.
func CheckDatabaseLoopback(raw string) error {
	if raw == "" {
		return errors.New("loadgen: seed: no database URL (--db)")
	}
	cfg, err := pgconn.ParseConfig(raw)
	if err != nil {
		return fmt.Errorf("loadgen: seed: database URL: %w", err)
	}
	hosts := []string{cfg.Host}
	for _, f := range cfg.Fallbacks {
		hosts = append(hosts, f.Host)
	}
	for _, h := range hosts {
		if err := checkDBHost(h); err != nil {
			return err
		}
	}
	return nil
}

func checkDBHost(host string) error {
	if strings.HasPrefix(host, "/") {
		return nil // unix socket directory
	}
	if err := checkLoopbackHost(host); err != nil {
		return fmt.Errorf("loadgen: seed: database host %q %w", host, err)
	}
	return nil
}

func (o *SeedOptions) check() error {
	if err := CheckDatabaseLoopback(o.DatabaseURL); err != nil {
		return err
	}
	if o.Persons < 0 || o.Persons > MaxSeedPersons {
		return fmt.Errorf("loadgen: seed: persons must be 0..%d", MaxSeedPersons)
	}
	if o.Tokens < 0 || o.Tokens > MaxSeedTokens {
		return fmt.Errorf("loadgen: seed: tokens must be 0..%d", MaxSeedTokens)
	}
	if o.Orgs == 0 {
		o.Orgs = 1000
	}
	if o.Orgs < 1 || o.Orgs > MaxSeedOrgs {
		return fmt.Errorf("loadgen: seed: orgs must be 1..%d", MaxSeedOrgs)
	}
	if o.BatchSize == 0 {
		o.BatchSize = defaultSeedBatch
	}
	if o.BatchSize < 1 || o.BatchSize > 1_000_000 {
		return errors.New("loadgen: seed: batch size must be 1..1000000")
	}
	return nil
}

// Seed tops the database up to o.Persons seeded people and o.Tokens seeded
// token rows (running it twice adds nothing the second time), then
// analyses the tables it touched.
func Seed(ctx context.Context, o SeedOptions) (*SeedResult, error) {
	if err := o.check(); err != nil {
		return nil, err
	}
	start := time.Now()
	conn, err := pgx.Connect(ctx, o.DatabaseURL)
	if err != nil {
		return nil, fmt.Errorf("loadgen: seed: connect: %w", err)
	}
	defer conn.Close(context.Background())

	s := &seeder{o: o, conn: conn, rng: newSeedRand(), res: &SeedResult{TokensByKind: map[string]int{}}}
	if err := s.run(ctx); err != nil {
		return nil, err
	}
	s.res.Elapsed = time.Since(start)
	return s.res, nil
}

type seeder struct {
	o    SeedOptions
	conn *pgx.Conn
	rng  *rand.Rand
	res  *SeedResult

	roles    []seedRole // job roles for positions (none: no positions)
	seeded   int        // seeded persons after the person phase
	client   string
	sessions map[sessionVariant]*sessionTemplate
}

// seedRole is a non-RA job role from the loaded catalogue.
type seedRole struct {
	code       string
	activities []string
}

func (s *seeder) run(ctx context.Context) error {
	var err error
	if s.res.ExistingPersons, err = s.count(ctx,
		`SELECT count(*) FROM people WHERE email LIKE $1`, "%@"+SeedEmailDomain); err != nil {
		return err
	}
	if s.o.Tokens > 0 {
		if s.res.ExistingTokens, err = s.count(ctx,
			`SELECT count(*) FROM oauth_tokens WHERE request_id LIKE $1`, SeedRequestPrefix+"%"); err != nil {
			return err
		}
	}
	if err := s.loadRoles(ctx); err != nil {
		return err
	}
	s.seeded = max(s.res.ExistingPersons, s.o.Persons)
	tokens := s.o.Tokens > s.res.ExistingTokens
	if tokens { // fail before writing anything
		if s.seeded == 0 {
			return errors.New("loadgen: seed: token rows need seeded persons as subjects; seed persons first (--persons > 0)")
		}
		if err := s.pickClient(ctx); err != nil {
			return err
		}
		s.res.ClientID = s.client
		if err := s.buildSessions(); err != nil {
			return err
		}
	}
	if err := s.seedPersons(ctx); err != nil {
		return err
	}
	if tokens {
		if err := s.seedTokens(ctx); err != nil {
			return err
		}
	}
	for _, t := range []string{"organisations", "people", "person_orgs", "positions", "oauth_tokens"} {
		if _, err := s.conn.Exec(ctx, "ANALYZE "+t); err != nil {
			return fmt.Errorf("loadgen: seed: analyze %s: %w", t, err)
		}
	}
	return nil
}

func (s *seeder) count(ctx context.Context, q string, args ...any) (int, error) {
	var n int
	if err := s.conn.QueryRow(ctx, q, args...).Scan(&n); err != nil {
		return 0, fmt.Errorf("loadgen: seed: count: %w", err)
	}
	return n, nil
}

func (s *seeder) progress(phase string, done, total int, start time.Time) {
	if s.o.Progress == nil {
		return
	}
	fmt.Fprintf(s.o.Progress, "%s: %d/%d (%d%%) %s\n", phase, done, total, done*100/max(total, 1),
		time.Since(start).Round(100*time.Millisecond))
}

// tick reports whether done crossed a tenth of total since prev.
func tick(prev, done, total int) bool {
	step := max(total/10, 1)
	return done/step != prev/step || done == total
}

// ---- people, organisations and positions ----

// Seeded ids are ordinary 12-digit uids (policy.NewUID's format), spread
// over the whole range by a bijection of the person's index, so they never
// collide with each other and a later run continues where the last
// stopped. A collision with a real, randomly drawn uid is unlikely; it
// fails the batch rather than overwrite anything.
const (
	uidSpace = 900_000_000_000
	uidBase  = 100_000_000_000
	// uidMul is coprime with uidSpace (2^11 * 3^2 * 5^11).
	uidMul       = 617_283_950_617
	uidOffPerson = 271_828_182_845
	uidOffOrgID  = 314_159_265_358
	uidOffRoleID = 161_803_398_874
)

func seedID(i, off int64) string {
	return strconv.FormatInt(uidBase+(uidMul*i+off)%uidSpace, 10)
}

// SeedPersonUID returns the uid of the i-th seeded person.
func SeedPersonUID(i int) string { return seedID(int64(i), uidOffPerson) }

func seedOrgID(i int) string  { return seedID(int64(i), uidOffOrgID) }
func seedRoleID(i int) string { return seedID(int64(i), uidOffRoleID) }

func seedOrgCode(i int) string { return fmt.Sprintf("%s%04d", SeedOrgPrefix, i) }

func (s *seeder) loadRoles(ctx context.Context) error {
	rows, err := s.conn.Query(ctx, `SELECT code, doc FROM rbac_catalogue
		WHERE kind = 'job_role' AND coalesce(doc->>'ra_level', '') = '' ORDER BY code`)
	if err != nil {
		return fmt.Errorf("loadgen: seed: read role catalogue: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var code string
		var doc []byte
		if err := rows.Scan(&code, &doc); err != nil {
			return fmt.Errorf("loadgen: seed: read role catalogue: %w", err)
		}
		var r struct {
			DefaultActivities []string `json:"default_activities"`
		}
		if err := json.Unmarshal(doc, &r); err != nil {
			return fmt.Errorf("loadgen: seed: job role %s: %w", code, err)
		}
		s.roles = append(s.roles, seedRole{code: code, activities: r.DefaultActivities})
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("loadgen: seed: read role catalogue: %w", err)
	}
	return nil
}

var (
	seedTitles      = []string{"", "", "", "Dr", "Dr", "Mr", "Mrs", "Ms", "Miss", "Prof"}
	seedGivenNames  = strings.Fields("Olivia Amelia Isla Ava Mia Ivy Lily Isabella Rosie Sophia Grace Freya Emily Priya Aisha Fatima Chloe Hannah Zara Niamh Oliver George Noah Arthur Muhammad Leo Harry Oscar Archie Henry Jack Theo Jacob Thomas Samuel Joshua Daniel Rohan Kwame Liam Callum Rhys Owen Dylan Sean")
	seedMiddleNames = strings.Fields("Anne Marie Louise Jane Rose Elizabeth James John Edward David Michael Kofi Ali")
	seedFamilyNames = strings.Fields("Smith Jones Williams Taylor Brown Davies Evans Wilson Thomas Johnson Roberts Robinson Thompson Wright Walker White Edwards Hughes Green Hall Lewis Harris Clarke Patel Jackson Wood Turner Martin Cooper Hill Ward Morris Moore Clark Lee King Baker Harrison Morgan Allen James Scott Phillips Watson Davis Parker Price Bennett Young Griffiths Mitchell Kelly Cook Carter Richardson Bailey Collins Bell Shaw Murphy Miller Cox Richards Khan Marshall Anderson Simpson Ellis Adams Singh Begum Chapman Ali Mason Hussain Okafor Mensah Nowak Kowalski O'Brien MacDonald Campbell Stewart Reid")
	seedPlaces      = strings.Fields("Northfield Eastbrook Westmere Southcote Ashford Barnwell Castleton Dunmore Elmsworth Fairhaven Greystone Hollins Ivybridge Kingsmead Langley Millbrook Newbury Oakham Pennington Queensbury Riverside Stanton Thornbury Upton Wellfield Yardley")
	seedOrgKinds    = []string{"NHS Foundation Trust", "Community Healthcare NHS Trust", "Medical Practice", "Health Centre", "Pharmacy", "Dental Practice", "Mental Health NHS Trust"}
)

// seedPerson is one seeded person and their position; it is a pure
// function of the index so tokens can name the person's assurance level.
type seedPerson struct {
	uid, title, given, middle, family, display, email string
	ial                                               int
	regs                                              []byte
	status                                            string
	created, updated                                  time.Time
	org                                               string
	role                                              *seedRole
}

func (s *seeder) person(i int, now time.Time) seedPerson {
	r := rand.New(rand.NewPCG(uint64(i), 0x6e687369647365)) // "nhsidse"
	p := seedPerson{
		uid:    SeedPersonUID(i),
		title:  seedTitles[r.IntN(len(seedTitles))],
		given:  seedGivenNames[r.IntN(len(seedGivenNames))],
		family: seedFamilyNames[r.IntN(len(seedFamilyNames))],
		status: "active",
	}
	if r.IntN(4) == 0 {
		p.middle = seedMiddleNames[r.IntN(len(seedMiddleNames))]
	}
	p.display = p.given + " " + p.family
	if p.title == "Dr" || p.title == "Prof" {
		p.display = p.title + " " + p.display
	}
	local := strings.ToLower(strings.ReplaceAll(p.given+"."+p.family, "'", ""))
	p.email = fmt.Sprintf("%s.%d@%s", local, i, SeedEmailDomain)
	p.ial = seedIAL(i)
	switch n := r.IntN(100); {
	case n < 30:
		p.regs = fmt.Appendf(nil, `{"gmc": "%07d"}`, 1_000_000+r.IntN(8_999_999))
	case n < 55:
		p.regs = fmt.Appendf(nil, `{"nmc": "%02d%c%04d%c"}`, r.IntN(100), 'A'+r.IntN(26), r.IntN(10000), 'A'+r.IntN(26))
	case n < 60:
		p.regs = fmt.Appendf(nil, `{"gphc": "%07d"}`, 2_000_000+r.IntN(999_999))
	default:
		p.regs = []byte(`{}`)
	}
	if r.IntN(100) < 3 {
		p.status = "closed"
	}
	p.created = now.Add(-time.Duration(r.Int64N(int64(5 * 365 * 24 * time.Hour)))).Truncate(time.Microsecond)
	p.updated = p.created.Add(time.Duration(r.Int64N(int64(now.Sub(p.created)) + 1))).Truncate(time.Microsecond)
	p.org = seedOrgCode(r.IntN(s.o.Orgs))
	if len(s.roles) > 0 {
		p.role = &s.roles[r.IntN(len(s.roles))]
	}
	return p
}

// seedIAL is the i-th seeded person's identity assurance level: mostly 3.
func seedIAL(i int) int {
	switch h := (uint64(i) * 0x9e3779b97f4a7c15) >> 58; {
	case h < 50:
		return 3
	case h < 62:
		return 2
	default:
		return 1
	}
}

func (s *seeder) seedOrgs(ctx context.Context, now time.Time) error {
	rows := make([][]any, 0, s.o.Orgs)
	for i := 0; i < s.o.Orgs; i++ {
		name := seedPlaces[i%len(seedPlaces)] + " " + seedOrgKinds[(i/len(seedPlaces))%len(seedOrgKinds)]
		rows = append(rows, []any{seedOrgCode(i), name, "", now})
	}
	// Existing seeded organisations are kept: insert through a temporary
	// table and skip conflicts.
	return pgx.BeginFunc(ctx, s.conn, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `CREATE TEMP TABLE seed_orgs (LIKE organisations) ON COMMIT DROP`); err != nil {
			return fmt.Errorf("loadgen: seed: organisations: %w", err)
		}
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{"seed_orgs"}, []string{"code", "name", "parent_code", "created_at"},
			pgx.CopyFromRows(rows)); err != nil {
			return fmt.Errorf("loadgen: seed: organisations: %w", err)
		}
		tag, err := tx.Exec(ctx, `INSERT INTO organisations SELECT * FROM seed_orgs ON CONFLICT (code) DO NOTHING`)
		if err != nil {
			return fmt.Errorf("loadgen: seed: organisations: %w", err)
		}
		s.res.Orgs = int(tag.RowsAffected())
		return nil
	})
}

var (
	personCols = []string{"uid", "title", "given_name", "middle_names", "family_name", "display_name", "email",
		"id_assurance_level", "registrations", "status", "created_at", "updated_at", "integrator", "test_account", "reviewer"}
	personOrgCols = []string{"person_orgid", "person_uid", "org_code"}
	positionCols  = []string{"person_roleid", "person_orgid", "person_uid", "org_code", "role_code", "activity_codes", "workgroup_codes", "aow_codes", "starts_at", "ends_at", "created_by", "created_at", "pending_approval", "approved_by", "approved_at", "bootstrap", "ended_at", "ended_by"}
	noCodes       = []string{}
)

func (s *seeder) seedPersons(ctx context.Context) error {
	from, to := s.res.ExistingPersons, s.o.Persons
	if to <= from {
		return nil
	}
	now := time.Now().UTC()
	if len(s.roles) > 0 {
		if err := s.seedOrgs(ctx, now); err != nil {
			return err
		}
	} else {
		s.res.Note = "no non-RA job roles in rbac_catalogue, so no positions were seeded (load a catalogue first)"
	}
	start := time.Now()
	total := to - from
	batch := make([]seedPerson, 0, min(s.o.BatchSize, total))
	for lo := from; lo < to; lo += s.o.BatchSize {
		hi := min(lo+s.o.BatchSize, to)
		batch = batch[:0]
		for i := lo; i < hi; i++ {
			batch = append(batch, s.person(i, now))
		}
		err := pgx.BeginFunc(ctx, s.conn, func(tx pgx.Tx) error {
			n, err := tx.CopyFrom(ctx, pgx.Identifier{"people"}, personCols, pgx.CopyFromSlice(len(batch), func(k int) ([]any, error) {
				p := &batch[k]
				return []any{p.uid, p.title, p.given, p.middle, p.family, p.display, p.email,
					p.ial, p.regs, p.status, p.created, p.updated, false, false, false}, nil
			}))
			if err != nil {
				return fmt.Errorf("loadgen: seed: copy people: %w", err)
			}
			if int(n) != len(batch) {
				return fmt.Errorf("loadgen: seed: copy people: %d of %d rows", n, len(batch))
			}
			if len(s.roles) == 0 {
				return nil
			}
			if _, err := tx.CopyFrom(ctx, pgx.Identifier{"person_orgs"}, personOrgCols, pgx.CopyFromSlice(len(batch), func(k int) ([]any, error) {
				p := &batch[k]
				return []any{seedOrgID(lo + k), p.uid, p.org}, nil
			})); err != nil {
				return fmt.Errorf("loadgen: seed: copy person_orgs: %w", err)
			}
			if _, err := tx.CopyFrom(ctx, pgx.Identifier{"positions"}, positionCols, pgx.CopyFromSlice(len(batch), func(k int) ([]any, error) {
				p := &batch[k]
				var ended *time.Time
				endedBy := ""
				if p.status == "closed" {
					ended, endedBy = &p.updated, SeedActor
				}
				acts := p.role.activities
				if acts == nil {
					acts = noCodes
				}
				return []any{seedRoleID(lo + k), seedOrgID(lo + k), p.uid, p.org, p.role.code, acts, noCodes, noCodes,
					p.created, nil, SeedActor, p.created, false, "", nil, false, ended, endedBy}, nil
			})); err != nil {
				return fmt.Errorf("loadgen: seed: copy positions: %w", err)
			}
			return nil
		})
		if err != nil {
			return err
		}
		s.res.Persons += len(batch)
		if len(s.roles) > 0 {
			s.res.Positions += len(batch)
		}
		if tick(s.res.Persons-len(batch), s.res.Persons, total) {
			s.progress("persons", s.res.Persons, total, start)
		}
	}
	return nil
}

// ---- OAuth token rows ----

func (s *seeder) pickClient(ctx context.Context) error {
	if s.o.ClientID != "" {
		var ok bool
		if err := s.conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM clients WHERE id = $1)`, s.o.ClientID).Scan(&ok); err != nil {
			return fmt.Errorf("loadgen: seed: look up client: %w", err)
		}
		if !ok {
			return fmt.Errorf("loadgen: seed: no client %q in this database", s.o.ClientID)
		}
		s.client = s.o.ClientID
		return nil
	}
	err := s.conn.QueryRow(ctx, `SELECT id FROM clients ORDER BY disabled, created_at NULLS LAST, id LIMIT 1`).Scan(&s.client)
	if errors.Is(err, pgx.ErrNoRows) {
		return errors.New("loadgen: seed: the database has no clients; register one (e.g. nhsid-load setup) or pass --client")
	}
	if err != nil {
		return fmt.Errorf("loadgen: seed: pick client: %w", err)
	}
	return nil
}

// seedServiceShare is the share of the token rows a run adds that are
// client_credentials access tokens (1 in seedServiceShare), written last.
const seedServiceShare = 4

// seedTokens writes the token rows in two phases. Grants of people (codes,
// access and refresh tokens with their person's session, about 1.4 kB a
// row) go in first, with COPY. Each page is filled up to the fillfactor,
// and the room left over is too small for another grant row but fits a
// client_credentials row (about 0.6 kB) on nearly every page. Once a
// VACUUM has told the free space map of that room (autovacuum does, soon
// after), the first million or so small rows nhsid writes would each land
// in a different old page, and each page's first change after a
// checkpoint writes the whole page to the WAL: four times the WAL per
// client_credentials token (round 11 of docs/performance.md). A live
// database's small rows fill that room as it appears. So the service
// tokens, a quarter of the rows, go in last, after a VACUUM, with
// ordinary INSERTs, and fill it.
func (s *seeder) seedTokens(ctx context.Context) error {
	cols := []string{"signature_hash", "kind", "request_id", "client_id", "requested_at", "scopes", "granted_scopes",
		"audiences", "granted_audiences", "form_data", "subject", "session", "sid", "active", "expires_at", "created_at",
		"access_signature_hash", "first_used_at", "grace_used", "revoked_at"}
	all := s.o.Tokens - s.res.ExistingTokens
	service := all / seedServiceShare
	total := all - service
	gen := &tokenGen{s: s, now: time.Now().UTC()}
	start := time.Now()
	for done := 0; done < total; {
		n := min(s.o.BatchSize, total-done)
		gen.reset(n)
		err := pgx.BeginFunc(ctx, s.conn, func(tx pgx.Tx) error {
			c, err := tx.CopyFrom(ctx, pgx.Identifier{"oauth_tokens"}, cols, gen)
			if err != nil {
				return fmt.Errorf("loadgen: seed: copy oauth_tokens: %w", err)
			}
			if int(c) != n {
				return fmt.Errorf("loadgen: seed: copy oauth_tokens: %d of %d rows", c, n)
			}
			return nil
		})
		if err != nil {
			return err
		}
		for k, v := range gen.kinds {
			s.res.TokensByKind[k] += v
		}
		done += n
		s.res.Tokens = done
		if tick(done-n, done, total) {
			s.progress("tokens", done, total, start)
		}
	}
	return s.seedServiceTokens(ctx, gen, service)
}

// seedServiceTokens inserts n client_credentials access tokens of the
// token client, one INSERT per batch (see seedTokens), after a VACUUM:
// the free space map's upper levels learn of the pages' room only then,
// and an INSERT finds room through them.
func (s *seeder) seedServiceTokens(ctx context.Context, gen *tokenGen, n int) error {
	if n == 0 {
		return nil
	}
	start := time.Now()
	if _, err := s.conn.Exec(ctx, "VACUUM oauth_tokens"); err != nil {
		return fmt.Errorf("loadgen: seed: vacuum oauth_tokens: %w", err)
	}
	s.progress("vacuum", 1, 1, start)
	const q = `INSERT INTO oauth_tokens (signature_hash, kind, request_id, client_id, requested_at, form_data, subject,
		session, active, expires_at, created_at)
		SELECT h, 'access', r, $1, ra, 'grant_type=client_credentials', $1, sess, true, e, c
		FROM unnest($2::bytea[], $3::text[], $4::timestamptz[], $5::bytea[], $6::timestamptz[], $7::timestamptz[])
			AS u(h, r, ra, sess, e, c)`
	var (
		hashes, sessions                 [][]byte
		ids                              []string
		requested, expires, createdTimes []time.Time
	)
	for done := 0; done < n; {
		k := min(s.o.BatchSize, n-done)
		hashes, sessions, ids = hashes[:0], sessions[:0], ids[:0]
		requested, expires, createdTimes = requested[:0], expires[:0], createdTimes[:0]
		for range k {
			rat, created, exp := gen.serviceTimes()
			sess, err := json.Marshal(serviceSession(s.client, exp))
			if err != nil {
				return fmt.Errorf("loadgen: seed: service session: %w", err)
			}
			hashes = append(hashes, gen.signature(SeedServiceKind))
			ids = append(ids, SeedRequestPrefix+randUUID(s.rng))
			sessions = append(sessions, sess)
			requested, expires, createdTimes = append(requested, rat), append(expires, exp), append(createdTimes, created)
		}
		if _, err := s.conn.Exec(ctx, q, s.client, hashes, ids, requested, sessions, expires, createdTimes); err != nil {
			return fmt.Errorf("loadgen: seed: insert service tokens: %w", err)
		}
		s.res.TokensByKind[idp.TokenKindAccess] += k
		s.res.ServiceTokens += k
		s.res.Tokens += k
		done += k
		if tick(done-k, done, n) {
			s.progress("service tokens", done, n, start)
		}
	}
	return nil
}

// serviceSession is the session nhsid's token endpoint stores with a
// client_credentials access token.
func serviceSession(client string, exp time.Time) *idp.Session {
	s := idp.NewSession()
	s.ForClient(client)
	s.SetExpiresAt(fosite.AccessToken, exp)
	return s
}

var (
	seedScopes = [][]string{
		{"openid", "profile", "email", "nhsperson", "professionalmemberships", "offline_access"},
		{"openid", "profile", "nationalrbacaccess", "associatedorgs", "offline_access"},
		{"openid", "email", "nhsperson", "nationalrbacaccess", "offline_access"},
	}
	noArgs = []string{}
)

// seedGrant is one authorisation: the rows of its kinds share its request
// id, subject, SSO session and fosite session.
type seedGrant struct {
	requestID, subject, sid, form string
	scopes                        []string
	requested, created            time.Time
	rows                          []seedRow
	session                       []byte
	codeSession                   []byte
}

type seedRow struct {
	kind       string
	hash       []byte
	active     bool
	expires    time.Time
	accessHash []byte
	firstUsed  *time.Time
	revoked    *time.Time
}

// tokenGen is a pgx.CopyFromSource producing n token rows, grant by grant.
type tokenGen struct {
	s      *seeder
	now    time.Time
	left   int
	grant  seedGrant
	next   int // next row of grant
	values []any
	kinds  map[string]int
}

// reset starts a batch of n rows; a grant cut short by the last batch
// continues in the next.
func (g *tokenGen) reset(n int) {
	g.left = n
	g.kinds = map[string]int{}
}

// Next implements pgx.CopyFromSource.
func (g *tokenGen) Next() bool {
	if g.left == 0 {
		return false
	}
	if g.next >= len(g.grant.rows) {
		g.newGrant()
		g.next = 0
	}
	gr := &g.grant
	row := &gr.rows[g.next]
	g.next++
	g.left--
	g.kinds[row.kind]++

	sess := gr.session
	form := gr.form
	switch row.kind {
	case idp.TokenKindCode, idp.TokenKindPKCE, idp.TokenKindOIDC:
		sess = gr.codeSession
		form = g.codeForm(row.kind)
	}
	var expires *time.Time
	if !row.expires.IsZero() {
		expires = &row.expires
	}
	var access any
	if row.accessHash != nil {
		access = row.accessHash
	}
	g.values = append(g.values[:0], row.hash, row.kind, gr.requestID, g.s.client, gr.requested, gr.scopes, gr.scopes,
		noArgs, noArgs, form, gr.subject, sess, gr.sid, row.active, expires, gr.created,
		access, row.firstUsed, false, row.revoked)
	return true
}

// Values implements pgx.CopyFromSource.
func (g *tokenGen) Values() ([]any, error) { return g.values, nil }

// Err implements pgx.CopyFromSource.
func (g *tokenGen) Err() error { return nil }

func (g *tokenGen) codeForm(kind string) string {
	r := g.s.rng
	scope := strings.Join(g.grant.scopes, "+")
	switch kind {
	case idp.TokenKindPKCE:
		return "client_id=" + g.s.client + "&code_challenge=" + randB64(r, 32) +
			"&code_challenge_method=S256&response_type=code&scope=" + scope
	case idp.TokenKindOIDC:
		return "client_id=" + g.s.client + "&nonce=" + randB64(r, 12) + "&response_type=code&scope=" + scope
	}
	return "client_id=" + g.s.client + "&redirect_uri=https%3A%2F%2Frp.example.nhs.uk%2Fcallback&response_type=code&scope=" + scope
}

// signature returns a fresh random token signature (as fosite's HMAC
// strategy makes them: 32 bytes, base64url) and its stored hash.
func (g *tokenGen) signature(kind string) []byte {
	sig := randB64(g.s.rng, 32)
	if g.s.o.onToken != nil {
		g.s.o.onToken(kind, sig)
	}
	h := sha256.Sum256([]byte(sig))
	return h[:]
}

// newGrant draws the next grant. Grants are spread in age so that about a
// third of the access tokens and more than half of the refresh tokens are
// live, and the rest expired (awaiting the purge, as in a real database):
// 80% exchanged codes with an access and a refresh token, 10% with an
// access token only, 7% a used authorization code, 3% a code still pending
// exchange (code, PKCE and OIDC rows).
func (g *tokenGen) newGrant() {
	r := g.s.rng
	gr := &g.grant
	gr.rows = gr.rows[:0]
	idx := r.IntN(g.s.seeded)
	gr.subject = SeedPersonUID(idx)
	gr.requestID = SeedRequestPrefix + randUUID(r)
	gr.sid = randB64(r, 16)
	gr.scopes = seedScopes[r.IntN(len(seedScopes))]

	age := g.age()
	kindDraw := r.IntN(100)
	if kindDraw >= 97 { // pending: codes live for minutes
		age = time.Duration(r.Int64N(int64(2 * seedCodeTTL)))
	}
	auth := g.now.Add(-age - time.Duration(r.Int64N(int64(8*time.Hour)))).Truncate(time.Second)
	gr.requested = g.now.Add(-age).Truncate(time.Microsecond)
	gr.created = gr.requested.Add(time.Duration(5+r.IntN(20)) * time.Millisecond)
	rat := gr.requested.Truncate(time.Second)
	codeExp := gr.requested.Add(seedCodeTTL)
	accessExp := rat.Add(seedAccessTTL)
	refreshExp := rat.Add(seedRefreshTTL)

	v := sessionVariant{aal3: r.IntN(10) < 7, role: len(g.s.roles) > 0 && r.IntN(10) < 7}
	vals := sessionValues{subject: gr.subject, sid: gr.sid, ial: seedIAL(idx), authTime: auth, rat: rat, expCode: codeExp}
	if v.role {
		vals.role = seedRoleID(idx)
	}
	codeVar := v
	codeVar.exp = expCode
	gr.codeSession = g.s.sessions[codeVar].fill(gr.codeSession[:0], vals)
	vals.expAccess, vals.expRefresh = accessExp, refreshExp

	switch {
	case kindDraw < 80:
		v.exp = expRefresh
		gr.session = g.s.sessions[v].fill(gr.session[:0], vals)
		ah := g.signature(idp.TokenKindAccess)
		gr.rows = append(gr.rows, seedRow{kind: idp.TokenKindAccess, hash: ah, active: true, expires: accessExp})
		ref := seedRow{kind: idp.TokenKindRefresh, hash: g.signature(idp.TokenKindRefresh), active: true, expires: refreshExp, accessHash: ah}
		switch n := r.IntN(100); {
		case n < 15: // rotated
			t := gr.requested.Add(time.Duration(r.Int64N(int64(seedAccessTTL))))
			ref.active, ref.firstUsed = false, &t
		case n < 18: // revoked
			t := gr.requested.Add(time.Duration(r.Int64N(int64(seedAccessTTL))))
			ref.active, ref.revoked = false, &t
		}
		gr.rows = append(gr.rows, ref)
		gr.form = "client_id=" + g.s.client + "&grant_type=authorization_code"
	case kindDraw < 90:
		v.exp = expAccess
		gr.session = g.s.sessions[v].fill(gr.session[:0], vals)
		gr.rows = append(gr.rows, seedRow{kind: idp.TokenKindAccess, hash: g.signature(idp.TokenKindAccess), active: true, expires: accessExp})
		gr.form = "client_id=" + g.s.client + "&grant_type=authorization_code"
	case kindDraw < 97:
		gr.rows = append(gr.rows, seedRow{kind: idp.TokenKindCode, hash: g.signature(idp.TokenKindCode), active: false, expires: codeExp})
	default:
		gr.rows = append(gr.rows,
			seedRow{kind: idp.TokenKindCode, hash: g.signature(idp.TokenKindCode), active: true, expires: codeExp},
			seedRow{kind: idp.TokenKindPKCE, hash: g.signature(idp.TokenKindPKCE), active: true, expires: codeExp},
			seedRow{kind: idp.TokenKindOIDC, hash: g.signature(idp.TokenKindOIDC), active: true, expires: codeExp})
	}
}

// serviceTimes draws a service token's requested, created and expiry
// times: spread in age like the grants' access tokens, so about a third
// are live.
func (g *tokenGen) serviceTimes() (requested, created, expires time.Time) {
	r := g.s.rng
	age := g.age()
	requested = g.now.Add(-age).Truncate(time.Microsecond)
	created = requested.Add(time.Duration(2+r.IntN(8)) * time.Millisecond)
	return requested, created, requested.Truncate(time.Second).Add(seedAccessTTL)
}

// age draws how long ago a grant was made: a third within an access
// token's life, a quarter more within a refresh token's, the rest up to a
// week older (expired, awaiting the purge).
func (g *tokenGen) age() time.Duration {
	r := g.s.rng
	switch n := r.IntN(100); {
	case n < 35:
		return time.Duration(r.Int64N(int64(seedAccessTTL)))
	case n < 60:
		return seedAccessTTL + time.Duration(r.Int64N(int64(seedRefreshTTL-seedAccessTTL)))
	default:
		return seedRefreshTTL + time.Duration(r.Int64N(int64(7*24*time.Hour)))
	}
}

func randB64(r *rand.Rand, n int) string {
	b := make([]byte, n)
	fillRand(r, b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func randUUID(r *rand.Rand) string {
	var b [16]byte
	fillRand(r, b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

func fillRand(r *rand.Rand, b []byte) {
	for len(b) >= 8 {
		binary.LittleEndian.PutUint64(b, r.Uint64())
		b = b[8:]
	}
	if len(b) > 0 {
		var t [8]byte
		binary.LittleEndian.PutUint64(t[:], r.Uint64())
		copy(b, t[:])
	}
}

// newSeedRand is a fast generator seeded from crypto/rand, so signatures
// differ on every run (they are filler, not secrets).
func newSeedRand() *rand.Rand {
	var seed [32]byte
	if _, err := io.ReadFull(crand.Reader, seed[:]); err != nil {
		// crypto/rand does not fail on supported platforms; fall back to
		// the runtime's seed rather than panic.
		binary.LittleEndian.PutUint64(seed[:], rand.Uint64())
		binary.LittleEndian.PutUint64(seed[8:], rand.Uint64())
	}
	return rand.New(rand.NewChaCha8(seed))
}

// ---- fosite session JSON ----

// The session column holds idp.Session as JSON. Marshalling millions of
// them is slow, so each variant is marshalled once with sentinel values
// and split into a template whose slots are filled per grant; the test
// checks that a filled template equals the real marshalling.

type sessionExp int

const (
	expCode    sessionExp = iota // authorize code only
	expAccess                    // code and access token
	expRefresh                   // code, access and refresh token
)

type sessionVariant struct {
	exp  sessionExp
	aal3 bool
	role bool
}

type sessionValues struct {
	subject, sid, role             string
	ial                            int
	authTime, rat                  time.Time
	expCode, expAccess, expRefresh time.Time
}

type slotKind int

const (
	slotSubject slotKind = iota
	slotSID
	slotRole
	slotIAL
	slotAuthTime
	slotAuthUnix
	slotRat
	slotExpCode
	slotExpAccess
	slotExpRefresh
)

type sessionTemplate struct {
	parts [][]byte // len(slots)+1
	slots []slotKind
}

// Sentinels are chosen so that they cannot occur elsewhere in the JSON.
var (
	sentinelTime = func(sec int) time.Time { return time.Date(1901, 2, 3, 4, 5, sec, 0, time.UTC) }
	sentinels    = sessionValues{
		subject: "zzSUBJECTzz", sid: "zzSIDzz", role: "zzROLEzz", ial: 7,
		authTime: sentinelTime(1), rat: sentinelTime(2),
		expCode: sentinelTime(3), expAccess: sentinelTime(4), expRefresh: sentinelTime(5),
	}
)

// seedSession builds the session nhsid's authorize endpoint would (see
// idp.Provider.grantSession) for the given values.
func seedSession(client string, v sessionVariant, x sessionValues) *idp.Session {
	aal, acr, amr := 2, "AAL2_ANY", []string{"swk", "mfa"}
	if v.aal3 {
		aal, acr, amr = 3, "AAL3_ANY", []string{"hwk", "mfa"}
	}
	s := idp.NewSession()
	s.Subject = x.subject
	s.SID = x.sid
	s.AAL = aal
	s.AMR = amr
	s.ClientID = client
	c := s.IDTokenClaims()
	c.Subject = x.subject
	c.AuthTime = x.authTime
	c.RequestedAt = x.rat
	c.AuthenticationContextClassReference = acr
	c.AuthenticationMethodsReferences = amr
	c.Extra["sid"] = x.sid
	c.Extra["azp"] = client
	c.Extra["nhsid_useruid"] = x.subject
	c.Extra["id_assurance_level"] = strconv.Itoa(x.ial)
	c.Extra["authentication_assurance_level"] = strconv.Itoa(aal)
	if v.role {
		s.SelectedRoleID = x.role
		c.Extra["selected_roleid"] = x.role
	}
	s.IDTokenHeaders().Add("x-nhsid-alg", "RS256")
	s.JWTClaims.Subject = x.subject
	s.JWTClaims.Extra["client_id"] = client
	s.JWTClaims.Extra["auth_time"] = x.authTime.Unix()
	s.JWTClaims.Extra["acr"] = acr
	s.JWTClaims.Extra["sid"] = x.sid
	s.SetExpiresAt(fosite.AuthorizeCode, x.expCode)
	if v.exp >= expAccess {
		s.SetExpiresAt(fosite.AccessToken, x.expAccess)
	}
	if v.exp >= expRefresh {
		s.SetExpiresAt(fosite.RefreshToken, x.expRefresh)
	}
	return s
}

func quoted(s string) []byte { return []byte(`"` + s + `"`) }

func timeJSON(t time.Time) []byte {
	b, _ := t.MarshalJSON() // sentinel times are always in range
	return b
}

func newSessionTemplate(client string, v sessionVariant) (*sessionTemplate, error) {
	raw, err := json.Marshal(seedSession(client, v, sentinels))
	if err != nil {
		return nil, fmt.Errorf("loadgen: seed: session template: %w", err)
	}
	marks := []struct {
		kind slotKind
		text []byte
	}{
		{slotSubject, quoted(sentinels.subject)},
		{slotSID, quoted(sentinels.sid)},
		{slotRole, quoted(sentinels.role)},
		{slotIAL, quoted(strconv.Itoa(sentinels.ial))},
		{slotAuthTime, timeJSON(sentinels.authTime)},
		{slotAuthUnix, []byte(strconv.FormatInt(sentinels.authTime.Unix(), 10))},
		{slotRat, timeJSON(sentinels.rat)},
		{slotExpCode, timeJSON(sentinels.expCode)},
		{slotExpAccess, timeJSON(sentinels.expAccess)},
		{slotExpRefresh, timeJSON(sentinels.expRefresh)},
	}
	t := &sessionTemplate{}
	rest := raw
	for {
		at, which := -1, -1
		for k, m := range marks {
			if i := bytes.Index(rest, m.text); i >= 0 && (at < 0 || i < at) {
				at, which = i, k
			}
		}
		if at < 0 {
			break
		}
		t.parts = append(t.parts, rest[:at])
		t.slots = append(t.slots, marks[which].kind)
		rest = rest[at+len(marks[which].text):]
	}
	t.parts = append(t.parts, rest)
	// A sentinel left in a form the template does not know would be
	// written verbatim into every row.
	for _, p := range t.parts {
		for _, bad := range []string{"1901-", sentinels.subject, sentinels.sid, sentinels.role} {
			if bytes.Contains(p, []byte(bad)) {
				return nil, fmt.Errorf("loadgen: seed: session template: unmatched sentinel %q", bad)
			}
		}
	}
	return t, nil
}

// fill appends the session JSON for x to dst.
func (t *sessionTemplate) fill(dst []byte, x sessionValues) []byte {
	for i, slot := range t.slots {
		dst = append(dst, t.parts[i]...)
		switch slot {
		case slotSubject:
			dst = strconv.AppendQuote(dst, x.subject)
		case slotSID:
			dst = strconv.AppendQuote(dst, x.sid)
		case slotRole:
			dst = strconv.AppendQuote(dst, x.role)
		case slotIAL:
			dst = append(dst, '"')
			dst = strconv.AppendInt(dst, int64(x.ial), 10)
			dst = append(dst, '"')
		case slotAuthUnix:
			dst = strconv.AppendInt(dst, x.authTime.Unix(), 10)
		case slotAuthTime:
			dst = appendTimeJSON(dst, x.authTime)
		case slotRat:
			dst = appendTimeJSON(dst, x.rat)
		case slotExpCode:
			dst = appendTimeJSON(dst, x.expCode)
		case slotExpAccess:
			dst = appendTimeJSON(dst, x.expAccess)
		case slotExpRefresh:
			dst = appendTimeJSON(dst, x.expRefresh)
		}
	}
	return append(dst, t.parts[len(t.parts)-1]...)
}

// appendTimeJSON appends t as time.Time.MarshalJSON does.
func appendTimeJSON(dst []byte, t time.Time) []byte {
	dst = append(dst, '"')
	dst = t.AppendFormat(dst, time.RFC3339Nano)
	return append(dst, '"')
}

func (s *seeder) buildSessions() error {
	s.sessions = map[sessionVariant]*sessionTemplate{}
	for _, exp := range []sessionExp{expCode, expAccess, expRefresh} {
		for _, aal3 := range []bool{false, true} {
			for _, role := range []bool{false, true} {
				v := sessionVariant{exp: exp, aal3: aal3, role: role}
				t, err := newSessionTemplate(s.client, v)
				if err != nil {
					return err
				}
				s.sessions[v] = t
			}
		}
	}
	return nil
}

// ---- clean ----

// CleanResult counts the rows CleanSeed removed.
type CleanResult struct {
	Tokens, Positions, PersonOrgs, Persons, Orgs int
	Elapsed                                      time.Duration
}

func (r *CleanResult) String() string {
	return fmt.Sprintf("removed %d token rows, %d positions, %d person_orgs, %d persons and %d organisations in %s",
		r.Tokens, r.Positions, r.PersonOrgs, r.Persons, r.Orgs, r.Elapsed.Round(time.Millisecond))
}

// CleanSeed removes everything Seed wrote (and nothing else), in one
// transaction, then analyses the tables.
func CleanSeed(ctx context.Context, databaseURL string, progress io.Writer) (*CleanResult, error) {
	if err := CheckDatabaseLoopback(databaseURL); err != nil {
		return nil, err
	}
	start := time.Now()
	conn, err := pgx.Connect(ctx, databaseURL)
	if err != nil {
		return nil, fmt.Errorf("loadgen: seed: connect: %w", err)
	}
	defer conn.Close(context.Background())
	res := &CleanResult{}
	seededPeople := `SELECT uid FROM people WHERE email LIKE '%@` + SeedEmailDomain + `'`
	steps := []struct {
		name string
		q    string
		n    *int
	}{
		{"token rows", `DELETE FROM oauth_tokens WHERE request_id LIKE '` + SeedRequestPrefix + `%'`, &res.Tokens},
		{"positions", `DELETE FROM positions WHERE created_by = '` + SeedActor + `' AND person_uid IN (` + seededPeople + `)`, &res.Positions},
		{"person_orgs", `DELETE FROM person_orgs WHERE person_uid IN (` + seededPeople + `)`, &res.PersonOrgs},
		{"persons", `DELETE FROM people WHERE email LIKE '%@` + SeedEmailDomain + `'`, &res.Persons},
		{"organisations", `DELETE FROM organisations o WHERE o.code ~ '^` + SeedOrgPrefix + `[0-9]{4}$'
			AND NOT EXISTS (SELECT 1 FROM person_orgs po WHERE po.org_code = o.code)
			AND NOT EXISTS (SELECT 1 FROM positions p WHERE p.org_code = o.code)
			AND NOT EXISTS (SELECT 1 FROM organisations c WHERE c.parent_code = o.code)`, &res.Orgs},
	}
	err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		for _, st := range steps {
			tag, err := tx.Exec(ctx, st.q)
			if err != nil {
				return fmt.Errorf("loadgen: seed: clean %s: %w", st.name, err)
			}
			*st.n = int(tag.RowsAffected())
			if progress != nil {
				fmt.Fprintf(progress, "clean: %d %s %s\n", *st.n, st.name, time.Since(start).Round(100*time.Millisecond))
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for _, t := range []string{"organisations", "people", "person_orgs", "positions", "oauth_tokens"} {
		if _, err := conn.Exec(ctx, "ANALYZE "+t); err != nil {
			return nil, fmt.Errorf("loadgen: seed: analyze %s: %w", t, err)
		}
	}
	res.Elapsed = time.Since(start)
	return res, nil
}
