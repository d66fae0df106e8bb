package policy

// The contextual sign-in risk engine (issue 11). It is pure: no I/O, no
// clock and no randomness of its own. Callers give it the person's profile
// (RiskProfile, kept by a RiskStore), what is known about this sign-in
// (RiskContext) and optionally a GeoIP lookup; it answers with the signals
// it found, each with a weight and a reason a person can read, a score and
// a level. The level can only raise what a sign-in needs (RequiredAAL); it
// never lowers a client's minimum or the request's acr_values.

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"time"
)

// RiskLevel is the outcome of an evaluation.
type RiskLevel string

// Risk levels.
const (
	RiskLow    RiskLevel = "low"
	RiskMedium RiskLevel = "medium"
	RiskHigh   RiskLevel = "high"
)

// Signal names.
const (
	SignalNewDevice           = "new_device"
	SignalNewNetwork          = "new_network"
	SignalNewCountry          = "new_country"
	SignalOutsideHours        = "outside_usual_hours"
	SignalImpossibleTravel    = "impossible_travel"
	SignalSensitiveClientNew  = "sensitive_client_first_use"
	SignalFailureBurst        = "failures_before_success"
	SignalDormantCredential   = "dormant_credential"
	SignalAuthenticatorRevoke = "authenticator_revoked"
)

// DefaultRiskWeights are the weights of the signals unless configured.
var DefaultRiskWeights = map[string]int{
	SignalNewDevice:           30,
	SignalNewNetwork:          20,
	SignalNewCountry:          30,
	SignalOutsideHours:        25,
	SignalImpossibleTravel:    100,
	SignalSensitiveClientNew:  20,
	SignalFailureBurst:        30,
	SignalDormantCredential:   20,
	SignalAuthenticatorRevoke: 100,
}

// Signal is one reason a sign-in looks unusual.
type Signal struct {
	Name   string `json:"name"`
	Weight int    `json:"weight"`
	// Reason is a sentence for the person, the RA and the audit trail.
	Reason string `json:"reason"`
}

// RiskThresholds turn a score into a level: Medium <= score < High is
// medium, High <= score is high.
type RiskThresholds struct {
	Medium int `yaml:"medium" json:"medium"`
	High   int `yaml:"high" json:"high"`
}

// TrustedNetwork is an organisation network (an HSCN range, a trust's
// egress) whose addresses are never "new".
type TrustedNetwork struct {
	Name string `yaml:"name"`
	CIDR string `yaml:"cidr"`
}

// RiskConfig configures the engine. The zero value, after WithDefaults, is
// a working configuration.
type RiskConfig struct {
	// Disabled turns the engine off: every sign-in is low risk and nothing
	// is profiled.
	Disabled bool `yaml:"disabled"`
	// Thresholds apply to every client without its own entry in Clients.
	Thresholds RiskThresholds `yaml:"thresholds"`
	// Clients overrides the thresholds per client id.
	Clients map[string]RiskThresholds `yaml:"clients"`
	// Weights override DefaultRiskWeights by signal name; 0 keeps the
	// default, a negative weight disables the signal.
	Weights map[string]int `yaml:"weights"`
	// TrustedNetworks are organisation networks.
	TrustedNetworks []TrustedNetwork `yaml:"trusted_networks"`
	// SensitiveClients are client ids whose first use by a person is a
	// signal.
	SensitiveClients []string `yaml:"sensitive_clients"`
	// GeoIPFile is a local CSV file (cidr,country,city,lat,lon) of network
	// locations. Without it there are no country or travel signals.
	GeoIPFile string `yaml:"geoip_file"`
	// Dormancy is how long a credential must go unused for its next use
	// to be a signal. Default 90 days.
	Dormancy time.Duration `yaml:"dormancy"`
	// MaxTravelKmh is the fastest believable travel between sign-ins.
	// Default 900 km/h.
	MaxTravelKmh float64 `yaml:"max_travel_kmh"`
	// MinTravelKm ignores jumps shorter than this (GeoIP is coarse).
	// Default 200 km.
	MinTravelKm float64 `yaml:"min_travel_km"`
	// FailureBurst is how many failed attempts just before a success make
	// a signal. Default 3.
	FailureBurst int `yaml:"failure_burst"`
	// LearningSignIns is how many successful sign-ins build the hours
	// profile before "outside usual hours" can fire. Default 5.
	LearningSignIns int `yaml:"learning_sign_ins"`
	// Retention is how long profile entries (devices, networks, clients,
	// decisions) are kept after they were last seen. Default 180 days.
	Retention time.Duration `yaml:"retention"`
	// MaxDecisions is how many recent decisions a profile keeps. Default 20.
	MaxDecisions int `yaml:"max_decisions"`
	// MaxEntries caps each of devices, networks and clients; the least
	// recently seen go first. Default 50.
	MaxEntries int `yaml:"max_entries"`
}

// WithDefaults returns c with unset fields given their defaults.
func (c RiskConfig) WithDefaults() RiskConfig {
	if c.Thresholds == (RiskThresholds{}) {
		c.Thresholds = RiskThresholds{Medium: 40, High: 80}
	}
	if c.Dormancy == 0 {
		c.Dormancy = 90 * 24 * time.Hour
	}
	if c.MaxTravelKmh == 0 {
		c.MaxTravelKmh = 900
	}
	if c.MinTravelKm == 0 {
		c.MinTravelKm = 200
	}
	if c.FailureBurst == 0 {
		c.FailureBurst = 3
	}
	if c.LearningSignIns == 0 {
		c.LearningSignIns = 5
	}
	if c.Retention == 0 {
		c.Retention = 180 * 24 * time.Hour
	}
	if c.MaxDecisions == 0 {
		c.MaxDecisions = 20
	}
	if c.MaxEntries == 0 {
		c.MaxEntries = 50
	}
	return c
}

// Validate reports every problem with c at once.
func (c RiskConfig) Validate() error {
	var errs []error
	check := func(name string, t RiskThresholds) {
		if t.Medium <= 0 || t.High <= t.Medium {
			errs = append(errs, fmt.Errorf("risk: %s thresholds need 0 < medium < high", name))
		}
	}
	check("global", c.Thresholds)
	for id, t := range c.Clients {
		check("client "+id, t)
	}
	for name := range c.Weights {
		if _, ok := DefaultRiskWeights[name]; !ok {
			errs = append(errs, fmt.Errorf("risk: unknown signal %q in weights", name))
		}
	}
	for _, n := range c.TrustedNetworks {
		if _, err := netip.ParsePrefix(n.CIDR); err != nil {
			errs = append(errs, fmt.Errorf("risk: trusted network %q: %w", n.Name, err))
		}
	}
	if c.Dormancy < 0 || c.Retention < 0 || c.MaxTravelKmh < 0 || c.MaxDecisions < 0 || c.MaxEntries < 0 {
		errs = append(errs, errors.New("risk: durations and limits must not be negative"))
	}
	return errors.Join(errs...)
}

// Location is where a network is, as a GeoIP file says.
type Location struct {
	Country string  `json:"country,omitempty"`
	City    string  `json:"city,omitempty"`
	Lat     float64 `json:"lat"`
	Lon     float64 `json:"lon"`
}

// String names the place for people ("Leeds, GB").
func (l Location) String() string {
	switch {
	case l.City != "" && l.Country != "":
		return l.City + ", " + l.Country
	case l.City != "":
		return l.City
	}
	return l.Country
}

// GeoIP looks up where an address is. Implementations read a local file;
// the engine never calls out.
type GeoIP interface {
	Lookup(ip netip.Addr) (Location, bool)
}

// RiskContext is what is known about one sign-in.
type RiskContext struct {
	Now time.Time
	// DeviceID is the hash of the browser's device cookie (random, no
	// fingerprinting); empty when the browser had none.
	DeviceID string
	IP       netip.Addr
	ClientID string
	// CredentialID is the authenticator used (base64url).
	CredentialID string
	// CredentialLastUsed is when the credential was last used before this
	// sign-in (zero: never); CredentialCreated when it was registered.
	CredentialLastUsed, CredentialCreated time.Time
	// RecentFailures is the number of failed attempts just before this one.
	RecentFailures int
	// AuthenticatorRevoked is true when the metadata service reports the
	// authenticator model REVOKED.
	AuthenticatorRevoked bool
}

// Seen is when a profile entry was first and last seen.
type Seen struct {
	First time.Time `json:"first"`
	Last  time.Time `json:"last"`
	Count int       `json:"count"`
}

// RiskDecision is one evaluated sign-in as kept in the profile and shown
// to the person.
type RiskDecision struct {
	Time     time.Time `json:"time"`
	ClientID string    `json:"client_id,omitempty"`
	Level    RiskLevel `json:"level"`
	Score    int       `json:"score"`
	Signals  []Signal  `json:"signals,omitempty"`
	// Outcome is what happened: "allowed", "step-up required",
	// "step-up passed" or "denied".
	Outcome string `json:"outcome"`
	// Place is the GeoIP location, when known.
	Place string `json:"place,omitempty"`
}

// Decision outcomes.
const (
	OutcomeAllowed        = "allowed"
	OutcomeStepUpRequired = "step-up required"
	OutcomeStepUpPassed   = "step-up passed"
	OutcomeDenied         = "denied"
)

// Reasons returns the signal reasons, or "usual sign-in" when there were none.
func (d RiskDecision) Reasons() []string {
	if len(d.Signals) == 0 {
		return []string{"usual sign-in"}
	}
	out := make([]string, len(d.Signals))
	for i, s := range d.Signals {
		out[i] = s.Reason
	}
	return out
}

// RiskProfile is what is kept about one person's sign-ins. Only hashes of
// device cookies and network prefixes (never full addresses) are kept.
type RiskProfile struct {
	PersonUID string `json:"person_uid"`
	// SignIns counts successful sign-ins.
	SignIns   int             `json:"sign_ins"`
	Devices   map[string]Seen `json:"devices,omitempty"`
	Networks  map[string]Seen `json:"networks,omitempty"`
	Countries map[string]Seen `json:"countries,omitempty"`
	Clients   map[string]Seen `json:"clients,omitempty"`
	Hours     [7][24]int      `json:"hours"`
	Last      *RiskLastSeen   `json:"last,omitempty"`
	Decisions []RiskDecision  `json:"decisions,omitempty"`
	UpdatedAt time.Time       `json:"updated_at"`
	// Version is the store's version of the profile as read (opaque, never
	// stored in it; empty for a profile not stored yet), which
	// UpdateRiskProfileFrom checks.
	Version string `json:"-"`
}

// RiskLastSeen is the last successful sign-in's time and place.
type RiskLastSeen struct {
	Time     time.Time `json:"time"`
	Location *Location `json:"location,omitempty"`
}

// RiskAssessment is the engine's answer.
type RiskAssessment struct {
	Score   int
	Level   RiskLevel
	Signals []Signal
	// Location of the request, when GeoIP knows it.
	Location *Location
	// Network is the prefix key of the request's address.
	Network string
	// TrustedNetwork names the organisation network, if any.
	TrustedNetwork string
}

// RiskEngine evaluates sign-ins. Build it with NewRiskEngine.
type RiskEngine struct {
	cfg       RiskConfig
	geo       GeoIP
	trusted   []netip.Prefix
	names     []string
	sensitive map[string]bool
}

// NewRiskEngine validates cfg (after defaults). geo may be nil.
func NewRiskEngine(cfg RiskConfig, geo GeoIP) (*RiskEngine, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	e := &RiskEngine{cfg: cfg, geo: geo, sensitive: map[string]bool{}}
	for _, n := range cfg.TrustedNetworks {
		p, _ := netip.ParsePrefix(n.CIDR)
		e.trusted = append(e.trusted, p.Masked())
		e.names = append(e.names, n.Name)
	}
	for _, c := range cfg.SensitiveClients {
		e.sensitive[c] = true
	}
	return e, nil
}

// Config returns the effective configuration.
func (e *RiskEngine) Config() RiskConfig { return e.cfg }

func (e *RiskEngine) weight(name string) int {
	if w, ok := e.cfg.Weights[name]; ok && w != 0 {
		if w < 0 {
			return 0
		}
		return w
	}
	return DefaultRiskWeights[name]
}

// NetworkKey is the prefix a profile remembers for ip: its /24 (IPv4) or
// /48 (IPv6). An invalid address gives "".
func NetworkKey(ip netip.Addr) string {
	if !ip.IsValid() {
		return ""
	}
	ip = ip.Unmap()
	bits := 48
	if ip.Is4() {
		bits = 24
	}
	p, _ := ip.Prefix(bits)
	return p.String()
}

func (e *RiskEngine) trustedName(ip netip.Addr) string {
	ip = ip.Unmap()
	for i, p := range e.trusted {
		if p.Contains(ip) {
			return e.names[i]
		}
	}
	return ""
}

// Evaluate scores a sign-in against p (which it does not change). A nil
// or empty profile has nothing to compare with: the novelty signals wait
// until the person has signed in once (and the hours signal until
// LearningSignIns sign-ins), so enrolment is not itself "unusual".
func (e *RiskEngine) Evaluate(p *RiskProfile, c RiskContext) RiskAssessment {
	var a RiskAssessment
	if e.cfg.Disabled {
		a.Level = RiskLow
		return a
	}
	if p == nil {
		p = &RiskProfile{}
	}
	add := func(name, reason string) {
		if w := e.weight(name); w > 0 {
			a.Signals = append(a.Signals, Signal{Name: name, Weight: w, Reason: reason})
		}
	}
	a.Network = NetworkKey(c.IP)
	if c.IP.IsValid() {
		a.TrustedNetwork = e.trustedName(c.IP)
		if e.geo != nil {
			if l, ok := e.geo.Lookup(c.IP.Unmap()); ok {
				a.Location = &l
			}
		}
	}
	history := p.SignIns > 0
	if history {
		if _, ok := p.Devices[c.DeviceID]; c.DeviceID == "" || !ok {
			add(SignalNewDevice, "new device")
		}
		if a.TrustedNetwork == "" && a.Network != "" {
			if _, ok := p.Networks[a.Network]; !ok {
				add(SignalNewNetwork, "new network")
			}
		}
		if a.Location != nil && a.Location.Country != "" && len(p.Countries) > 0 {
			if _, ok := p.Countries[a.Location.Country]; !ok {
				add(SignalNewCountry, "new country ("+a.Location.Country+")")
			}
		}
	}
	if p.SignIns >= e.cfg.LearningSignIns && !c.Now.IsZero() && !usualHour(p, c.Now) {
		add(SignalOutsideHours, "outside usual hours ("+c.Now.UTC().Format("Mon 15:04")+")")
	}
	if a.Location != nil && p.Last != nil && p.Last.Location != nil && !c.Now.IsZero() {
		km := distanceKm(*p.Last.Location, *a.Location)
		hours := c.Now.Sub(p.Last.Time).Hours()
		if km >= e.cfg.MinTravelKm && (hours <= 0 || km/hours > e.cfg.MaxTravelKmh) {
			add(SignalImpossibleTravel, fmt.Sprintf("impossible travel: %s to %s (%.0f km in %s)",
				p.Last.Location.String(), a.Location.String(), km, roundDuration(c.Now.Sub(p.Last.Time))))
		}
	}
	if c.ClientID != "" && e.sensitive[c.ClientID] {
		if _, ok := p.Clients[c.ClientID]; !ok {
			add(SignalSensitiveClientNew, "first use of a sensitive service")
		}
	}
	if e.cfg.FailureBurst > 0 && c.RecentFailures >= e.cfg.FailureBurst {
		add(SignalFailureBurst, fmt.Sprintf("%d failed attempts before this one", c.RecentFailures))
	}
	if !c.Now.IsZero() && e.cfg.Dormancy > 0 {
		last := c.CredentialLastUsed
		if last.IsZero() {
			last = c.CredentialCreated
		}
		if !last.IsZero() && c.Now.Sub(last) >= e.cfg.Dormancy {
			add(SignalDormantCredential, "security key unused for "+roundDuration(c.Now.Sub(last)))
		}
	}
	if c.AuthenticatorRevoked {
		add(SignalAuthenticatorRevoke, "security key model withdrawn by its maker (REVOKED)")
	}
	for _, s := range a.Signals {
		a.Score += s.Weight
	}
	a.Level = e.level(c.ClientID, a.Score)
	return a
}

func (e *RiskEngine) level(clientID string, score int) RiskLevel {
	t := e.cfg.Thresholds
	if ct, ok := e.cfg.Clients[clientID]; ok {
		t = ct
	}
	switch {
	case score >= t.High:
		return RiskHigh
	case score >= t.Medium:
		return RiskMedium
	}
	return RiskLow
}

// RequiredAAL is the assurance a sign-in needs given the level: required
// is what the client's minimum and acr_values already ask for, and the
// answer is never below it. Medium asks for AAL3; high is a denial (the
// answer is 0 with deny true).
func RequiredAAL(level RiskLevel, required int) (aal int, deny bool) {
	switch level {
	case RiskHigh:
		return 0, true
	case RiskMedium:
		return max(required, 3), false
	}
	return required, false
}

// usualHour reports whether t falls within an hour (either side) of the
// person's earlier sign-ins on that weekday, or on any day when that
// weekday has too little history.
func usualHour(p *RiskProfile, t time.Time) bool {
	t = t.UTC()
	d, h := int(t.Weekday()), t.Hour()
	near := func(day int) int {
		n := 0
		for dh := -1; dh <= 1; dh++ {
			n += p.Hours[day][(h+dh+24)%24]
		}
		return n
	}
	if near(d) > 0 {
		return true
	}
	dayTotal := 0
	for _, n := range p.Hours[d] {
		dayTotal += n
	}
	if dayTotal >= 3 {
		return false
	}
	for day := range 7 {
		if near(day) > 0 {
			return true
		}
	}
	return false
}

// distanceKm is the great-circle distance between a and b.
func distanceKm(a, b Location) float64 {
	const r = 6371.0
	rad := math.Pi / 180
	dLat := (b.Lat - a.Lat) * rad
	dLon := (b.Lon - a.Lon) * rad
	h := math.Sin(dLat/2)*math.Sin(dLat/2) + math.Cos(a.Lat*rad)*math.Cos(b.Lat*rad)*math.Sin(dLon/2)*math.Sin(dLon/2)
	return 2 * r * math.Asin(math.Min(1, math.Sqrt(h)))
}

func roundDuration(d time.Duration) string {
	switch {
	case d >= 48*time.Hour:
		return fmt.Sprintf("%d days", int(d.Hours()/24))
	case d >= time.Hour:
		return fmt.Sprintf("%.0fh", d.Hours())
	}
	return fmt.Sprintf("%.0f min", math.Max(1, d.Minutes()))
}

// Record adds d to the profile's recent decisions (newest first), keeping
// MaxDecisions of those within the retention period.
func (e *RiskEngine) Record(p *RiskProfile, d RiskDecision) {
	p.Decisions = append([]RiskDecision{d}, p.Decisions...)
	e.prune(p, d.Time)
}

// Learn updates the profile after a successful sign-in: the device, the
// network, the country, the hour, the client and the last place and time.
func (e *RiskEngine) Learn(p *RiskProfile, c RiskContext, a RiskAssessment) {
	if e.cfg.Disabled {
		return
	}
	now := c.Now
	touch := func(m *map[string]Seen, key string) {
		if key == "" {
			return
		}
		if *m == nil {
			*m = map[string]Seen{}
		}
		s := (*m)[key]
		if s.First.IsZero() {
			s.First = now
		}
		s.Last = now
		s.Count++
		(*m)[key] = s
	}
	touch(&p.Devices, c.DeviceID)
	if a.TrustedNetwork == "" {
		touch(&p.Networks, a.Network)
	}
	touch(&p.Clients, c.ClientID)
	last := &RiskLastSeen{Time: now}
	if a.Location != nil {
		l := *a.Location
		last.Location = &l
		touch(&p.Countries, l.Country)
	}
	p.Last = last
	u := now.UTC()
	p.Hours[int(u.Weekday())][u.Hour()]++
	p.SignIns++
	e.prune(p, now)
}

// prune drops entries last seen before the retention period and caps
// each map and the decision list.
func (e *RiskEngine) prune(p *RiskProfile, now time.Time) {
	cut := now.Add(-e.cfg.Retention)
	for _, m := range []map[string]Seen{p.Devices, p.Networks, p.Countries, p.Clients} {
		for k, s := range m {
			if s.Last.Before(cut) {
				delete(m, k)
			}
		}
		if len(m) > e.cfg.MaxEntries {
			keys := make([]string, 0, len(m))
			for k := range m {
				keys = append(keys, k)
			}
			sort.Slice(keys, func(i, j int) bool { return m[keys[i]].Last.After(m[keys[j]].Last) })
			for _, k := range keys[e.cfg.MaxEntries:] {
				delete(m, k)
			}
		}
	}
	p.Decisions = slices.DeleteFunc(p.Decisions, func(d RiskDecision) bool { return d.Time.Before(cut) })
	if len(p.Decisions) > e.cfg.MaxDecisions {
		p.Decisions = p.Decisions[:e.cfg.MaxDecisions]
	}
	if p.Last != nil && p.Last.Time.Before(cut) {
		p.Last = nil
	}
	p.UpdatedAt = now
}

// Summary is a short line for the account page: "new device, new network".
func (d RiskDecision) Summary() string {
	if len(d.Signals) == 0 {
		return "usual sign-in"
	}
	return strings.Join(d.Reasons(), ", ")
}

// RiskStore keeps risk profiles. store/memory and store/postgres
// implement it.
type RiskStore interface {
	// GetRiskProfile returns the person's profile; a person never profiled
	// gets an empty one (PersonUID set), not an error.
	GetRiskProfile(ctx context.Context, personUID string) (RiskProfile, error)
	// UpdateRiskProfile applies fn to the profile (empty when absent)
	// atomically and stores the result. fn may run more than once (a store
	// may try without a lock first and retry under one), so it must change
	// only the profile it is given.
	UpdateRiskProfile(ctx context.Context, personUID string, fn func(*RiskProfile) error) (RiskProfile, error)
	// UpdateRiskProfileFrom is UpdateRiskProfile for a caller holding the
	// profile it has just read with GetRiskProfile: fn is applied to read
	// itself (it may change read's maps) and the result stored if the
	// stored profile is still read's version, without reading it again.
	// Otherwise, or when read has no version, fn runs again on the profile
	// as stored, as in UpdateRiskProfile, so no update is lost.
	UpdateRiskProfileFrom(ctx context.Context, read RiskProfile, fn func(*RiskProfile) error) error
	// DeleteRiskProfilesBefore deletes profiles not updated since before
	// and returns how many went (retention). A store may keep a profile
	// up to a day longer (PostgreSQL keeps the day of the last update).
	DeleteRiskProfilesBefore(ctx context.Context, before time.Time) (int, error)
}

// RiskNotifier tells people (and their RA, if configured) about a denied
// sign-in.
type RiskNotifier interface {
	NotifyRisk(ctx context.Context, personUID string, d RiskDecision) error
}
