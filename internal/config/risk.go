package config

import "time"

// Risk configures the contextual sign-in risk engine (policy.RiskConfig,
// issue 11); the server converts it and policy validates it. Zero values
// take the engine's defaults; docs/privacy-risk.md explains what is kept.
type Risk struct {
	// Disabled turns the engine off.
	Disabled bool `yaml:"disabled"`
	// Thresholds turn a score into medium (step-up to AAL3) or high (deny).
	Thresholds RiskThresholds `yaml:"thresholds"`
	// Clients overrides the thresholds per client id.
	Clients map[string]RiskThresholds `yaml:"clients"`
	// Weights override the default weight of a signal by name; negative
	// disables it.
	Weights map[string]int `yaml:"weights"`
	// TrustedNetworks are organisation networks (HSCN ranges) never
	// treated as new.
	TrustedNetworks []RiskNetwork `yaml:"trusted_networks"`
	// SensitiveClients: a person's first use of one is a signal.
	SensitiveClients []string `yaml:"sensitive_clients"`
	// GeoIPFile is a local CSV (cidr,country,city,lat,lon); without it
	// there are no country or impossible-travel signals.
	GeoIPFile       string        `yaml:"geoip_file"`
	Dormancy        time.Duration `yaml:"dormancy"`
	MaxTravelKmh    float64       `yaml:"max_travel_kmh"`
	FailureBurst    int           `yaml:"failure_burst"`
	LearningSignIns int           `yaml:"learning_sign_ins"`
	// Retention is how long profile entries and decisions are kept.
	Retention    time.Duration `yaml:"retention"`
	MaxDecisions int           `yaml:"max_decisions"`
}

// RiskThresholds are the score limits of a level.
type RiskThresholds struct {
	Medium int `yaml:"medium"`
	High   int `yaml:"high"`
}

// RiskNetwork is a named organisation network.
type RiskNetwork struct {
	Name string `yaml:"name"`
	CIDR string `yaml:"cidr"`
}
