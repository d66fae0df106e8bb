package policy_test

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nhsid/nhsid/policy"
)

// monday10 is a Monday, 10:00 UTC.
var monday10 = time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)

var (
	leeds  = policy.Location{Country: "GB", City: "Leeds", Lat: 53.80, Lon: -1.55}
	london = policy.Location{Country: "GB", City: "London", Lat: 51.51, Lon: -0.13}
	sydney = policy.Location{Country: "AU", City: "Sydney", Lat: -33.87, Lon: 151.21}
)

func testGeo() policy.GeoIP {
	return policy.NewGeoTable(map[netip.Prefix]policy.Location{
		netip.MustParsePrefix("192.0.2.0/24"):    leeds,
		netip.MustParsePrefix("198.51.100.0/24"): london,
		netip.MustParsePrefix("203.0.113.0/24"):  sydney,
	})
}

// profile is a person who signed in from device "dev-1" at Leeds on weekday
// mornings for a week.
func profile(t *testing.T, e *policy.RiskEngine) *policy.RiskProfile {
	t.Helper()
	p := &policy.RiskProfile{PersonUID: "555000000001"}
	for i := range 5 {
		c := policy.RiskContext{Now: monday10.Add(time.Duration(i) * 24 * time.Hour), DeviceID: "dev-1",
			IP: netip.MustParseAddr("192.0.2.10"), ClientID: "ehr"}
		a := e.Evaluate(p, c)
		e.Learn(p, c, a)
	}
	return p
}

func names(s []policy.Signal) []string {
	var out []string
	for _, x := range s {
		out = append(out, x.Name)
	}
	return out
}

func TestRiskEngine(t *testing.T) {
	cfg := policy.RiskConfig{
		TrustedNetworks:  []policy.TrustedNetwork{{Name: "HSCN", CIDR: "10.0.0.0/8"}},
		SensitiveClients: []string{"spine-admin"},
		Clients:          map[string]policy.RiskThresholds{"strict": {Medium: 20, High: 50}},
	}
	e, err := policy.NewRiskEngine(cfg, testGeo())
	if err != nil {
		t.Fatal(err)
	}
	lastSeen := monday10.Add(4 * 24 * time.Hour) // Friday 10:00
	base := policy.RiskContext{Now: lastSeen.Add(72 * time.Hour), DeviceID: "dev-1", IP: netip.MustParseAddr("192.0.2.77"), ClientID: "ehr",
		CredentialLastUsed: lastSeen}
	tests := []struct {
		name  string
		mut   func(c *policy.RiskContext)
		want  []string
		level policy.RiskLevel
	}{
		{"known device, network and hours", func(c *policy.RiskContext) {}, nil, policy.RiskLow},
		{"trusted organisation network is never new", func(c *policy.RiskContext) { c.IP = netip.MustParseAddr("10.1.2.3") }, nil, policy.RiskLow},
		{"new device alone stays low", func(c *policy.RiskContext) { c.DeviceID = "dev-2" }, []string{policy.SignalNewDevice}, policy.RiskLow},
		{"no device cookie counts as new", func(c *policy.RiskContext) { c.DeviceID = "" }, []string{policy.SignalNewDevice}, policy.RiskLow},
		{"new device at 3 a.m. is medium", func(c *policy.RiskContext) {
			c.DeviceID = "dev-2"
			c.Now = time.Date(2026, 3, 9, 3, 12, 0, 0, time.UTC)
		}, []string{policy.SignalNewDevice, policy.SignalOutsideHours}, policy.RiskMedium},
		{"new network in the same city", func(c *policy.RiskContext) { c.IP = netip.MustParseAddr("198.51.100.9") }, []string{policy.SignalNewNetwork}, policy.RiskLow},
		{"London an hour later is possible", func(c *policy.RiskContext) {
			c.IP = netip.MustParseAddr("198.51.100.9")
			c.Now = lastSeen.Add(time.Hour)
		}, []string{policy.SignalNewNetwork}, policy.RiskLow},
		{"Sydney an hour later is impossible travel", func(c *policy.RiskContext) {
			c.IP = netip.MustParseAddr("203.0.113.5")
			c.Now = lastSeen.Add(time.Hour)
		}, []string{policy.SignalNewNetwork, policy.SignalNewCountry, policy.SignalImpossibleTravel}, policy.RiskHigh},
		{"Sydney three days later is a new country, not travel", func(c *policy.RiskContext) {
			c.IP = netip.MustParseAddr("203.0.113.5")
		}, []string{policy.SignalNewNetwork, policy.SignalNewCountry}, policy.RiskMedium},
		{"sensitive client first use", func(c *policy.RiskContext) { c.ClientID = "spine-admin" }, []string{policy.SignalSensitiveClientNew}, policy.RiskLow},
		{"per-client thresholds", func(c *policy.RiskContext) { c.ClientID = "strict"; c.DeviceID = "dev-9" }, []string{policy.SignalNewDevice}, policy.RiskMedium},
		{"burst of failures", func(c *policy.RiskContext) { c.RecentFailures = 4 }, []string{policy.SignalFailureBurst}, policy.RiskLow},
		{"dormant credential", func(c *policy.RiskContext) { c.CredentialLastUsed = c.Now.Add(-200 * 24 * time.Hour) }, []string{policy.SignalDormantCredential}, policy.RiskLow},
		{"never-used credential registered long ago", func(c *policy.RiskContext) {
			c.CredentialLastUsed = time.Time{}
			c.CredentialCreated = c.Now.Add(-100 * 24 * time.Hour)
		}, []string{policy.SignalDormantCredential}, policy.RiskLow},
		{"revoked authenticator is high", func(c *policy.RiskContext) { c.AuthenticatorRevoked = true }, []string{policy.SignalAuthenticatorRevoke}, policy.RiskHigh},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := profile(t, e)
			c := base
			tt.mut(&c)
			a := e.Evaluate(p, c)
			if got := names(a.Signals); !slices.Equal(got, tt.want) {
				t.Fatalf("signals %v, want %v (%+v)", got, tt.want, a.Signals)
			}
			if a.Level != tt.level {
				t.Fatalf("level %s, want %s (score %d)", a.Level, tt.level, a.Score)
			}
			for _, s := range a.Signals {
				if s.Weight <= 0 || s.Reason == "" {
					t.Fatalf("signal %+v lacks a weight or reason", s)
				}
			}
		})
	}
}

func TestRiskEngineWithoutGeoIPSkipsLocationSignals(t *testing.T) {
	e, err := policy.NewRiskEngine(policy.RiskConfig{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	p := profile(t, e)
	a := e.Evaluate(p, policy.RiskContext{Now: monday10.Add(4*24*time.Hour + time.Hour), DeviceID: "dev-1", IP: netip.MustParseAddr("203.0.113.5")})
	if got := names(a.Signals); !slices.Equal(got, []string{policy.SignalNewNetwork}) {
		t.Fatalf("signals %v", got)
	}
}

func TestRiskEngineFirstSignInIsNotUnusual(t *testing.T) {
	e, _ := policy.NewRiskEngine(policy.RiskConfig{}, testGeo())
	a := e.Evaluate(&policy.RiskProfile{}, policy.RiskContext{Now: time.Date(2026, 3, 2, 3, 0, 0, 0, time.UTC), IP: netip.MustParseAddr("203.0.113.5")})
	if len(a.Signals) != 0 || a.Level != policy.RiskLow {
		t.Fatalf("first sign-in: %+v", a)
	}
}

func TestRiskEngineWeightsAndDisable(t *testing.T) {
	e, err := policy.NewRiskEngine(policy.RiskConfig{Weights: map[string]int{policy.SignalNewDevice: 60, policy.SignalNewNetwork: -1}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	p := profile(t, e)
	a := e.Evaluate(p, policy.RiskContext{Now: monday10.Add(time.Hour), DeviceID: "x", IP: netip.MustParseAddr("203.0.113.5")})
	if a.Score != 60 || a.Level != policy.RiskMedium {
		t.Fatalf("%+v", a)
	}
	off, _ := policy.NewRiskEngine(policy.RiskConfig{Disabled: true}, nil)
	if a := off.Evaluate(p, policy.RiskContext{Now: monday10, AuthenticatorRevoked: true}); a.Level != policy.RiskLow || len(a.Signals) != 0 {
		t.Fatalf("disabled engine: %+v", a)
	}
}

func TestRiskConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  policy.RiskConfig
		want string
	}{
		{"defaults", policy.RiskConfig{}, ""},
		{"inverted thresholds", policy.RiskConfig{Thresholds: policy.RiskThresholds{Medium: 50, High: 40}}, "medium < high"},
		{"unknown signal", policy.RiskConfig{Weights: map[string]int{"vibes": 3}}, "unknown signal"},
		{"bad network", policy.RiskConfig{TrustedNetworks: []policy.TrustedNetwork{{Name: "x", CIDR: "nope"}}}, "trusted network"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.WithDefaults().Validate()
			if (err == nil) != (tt.want == "") || (err != nil && !strings.Contains(err.Error(), tt.want)) {
				t.Fatalf("err %v, want %q", err, tt.want)
			}
		})
	}
}

func TestRequiredAALOnlyRaises(t *testing.T) {
	tests := []struct {
		level    policy.RiskLevel
		required int
		want     int
		deny     bool
	}{
		{policy.RiskLow, 2, 2, false},
		{policy.RiskLow, 3, 3, false},
		{policy.RiskMedium, 2, 3, false},
		{policy.RiskMedium, 3, 3, false},
		{policy.RiskHigh, 2, 0, true},
	}
	for _, tt := range tests {
		t.Run(string(tt.level), func(t *testing.T) {
			got, deny := policy.RequiredAAL(tt.level, tt.required)
			if got != tt.want || deny != tt.deny {
				t.Fatalf("RequiredAAL(%s, %d) = %d, %v", tt.level, tt.required, got, deny)
			}
		})
	}
}

func TestRiskProfileRetention(t *testing.T) {
	e, _ := policy.NewRiskEngine(policy.RiskConfig{Retention: 30 * 24 * time.Hour, MaxDecisions: 2}, nil)
	p := profile(t, e)
	for i := range 3 {
		e.Record(p, policy.RiskDecision{Time: monday10.Add(time.Duration(i) * time.Hour), Level: policy.RiskLow, Outcome: policy.OutcomeAllowed})
	}
	if len(p.Decisions) != 2 || !p.Decisions[0].Time.Equal(monday10.Add(2*time.Hour)) {
		t.Fatalf("decisions %+v", p.Decisions)
	}
	later := monday10.Add(60 * 24 * time.Hour)
	c := policy.RiskContext{Now: later, DeviceID: "dev-new", IP: netip.MustParseAddr("198.51.100.1")}
	e.Learn(p, c, e.Evaluate(p, c))
	if _, ok := p.Devices["dev-1"]; ok || len(p.Devices) != 1 || len(p.Decisions) != 0 {
		t.Fatalf("old entries kept: %+v", p)
	}
}

func TestParseGeoCSV(t *testing.T) {
	g, err := policy.ParseGeoCSV(strings.NewReader("cidr,country,city,lat,lon\n# comment\n192.0.2.0/24,GB,Leeds,53.8,-1.55\n192.0.2.128/25,GB,York,53.96,-1.08\n"))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		ip, city string
		ok       bool
	}{{"192.0.2.1", "Leeds", true}, {"192.0.2.200", "York", true}, {"198.51.100.1", "", false}}
	for _, tt := range tests {
		t.Run(tt.ip, func(t *testing.T) {
			l, ok := g.Lookup(netip.MustParseAddr(tt.ip))
			if ok != tt.ok || l.City != tt.city {
				t.Fatalf("Lookup = %+v, %v", l, ok)
			}
		})
	}
	if _, err := policy.ParseGeoCSV(strings.NewReader("bad,GB,x,1,2\n")); err == nil {
		t.Fatal("bad cidr accepted")
	}
}

func BenchmarkRiskEvaluate(b *testing.B) {
	e, _ := policy.NewRiskEngine(policy.RiskConfig{SensitiveClients: []string{"a", "b"}}, testGeo())
	p := &policy.RiskProfile{}
	for i := range 40 {
		c := policy.RiskContext{Now: monday10.Add(time.Duration(i) * 13 * time.Hour), DeviceID: "dev-" + string(rune('a'+i%5)),
			IP: netip.MustParseAddr("192.0.2.10"), ClientID: "ehr"}
		e.Learn(p, c, e.Evaluate(p, c))
	}
	c := policy.RiskContext{Now: monday10.Add(30 * 24 * time.Hour), DeviceID: "dev-z", IP: netip.MustParseAddr("203.0.113.5"), ClientID: "a"}
	b.ReportAllocs()
	for b.Loop() {
		e.Evaluate(p, c)
	}
}
