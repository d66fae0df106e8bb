package server

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/nhsid/nhsid/authn"
	"github.com/nhsid/nhsid/internal/config"
	"github.com/nhsid/nhsid/internal/jobs"
	"github.com/nhsid/nhsid/policy"
)

// riskPolicyConfig converts the configuration section to the engine's.
func riskPolicyConfig(c config.Risk) policy.RiskConfig {
	out := policy.RiskConfig{
		Disabled: c.Disabled, Thresholds: policy.RiskThresholds(c.Thresholds), Weights: c.Weights,
		SensitiveClients: c.SensitiveClients, GeoIPFile: c.GeoIPFile, Dormancy: c.Dormancy,
		MaxTravelKmh: c.MaxTravelKmh, FailureBurst: c.FailureBurst, LearningSignIns: c.LearningSignIns,
		Retention: c.Retention, MaxDecisions: c.MaxDecisions,
	}
	if len(c.Clients) > 0 {
		out.Clients = map[string]policy.RiskThresholds{}
		for id, t := range c.Clients {
			out.Clients[id] = policy.RiskThresholds(t)
		}
	}
	for _, n := range c.TrustedNetworks {
		out.TrustedNetworks = append(out.TrustedNetworks, policy.TrustedNetwork(n))
	}
	return out
}

// buildRisk makes the sign-in risk engine: geo (tests) or the configured
// GeoIP file, and the store's risk profiles. It returns nil when the
// engine is disabled.
func buildRisk(c config.Risk, geo policy.GeoIP, st any, log *slog.Logger) (*authn.Risk, error) {
	if c.Disabled {
		return nil, nil
	}
	rs, ok := st.(policy.RiskStore)
	if !ok {
		return nil, nil
	}
	if geo == nil && c.GeoIPFile != "" {
		f, err := os.Open(c.GeoIPFile)
		if err != nil {
			return nil, fmt.Errorf("risk.geoip_file: %w", err)
		}
		defer f.Close()
		t, err := policy.ParseGeoCSV(f)
		if err != nil {
			return nil, fmt.Errorf("risk.geoip_file: %w", err)
		}
		geo = t
	}
	e, err := policy.NewRiskEngine(riskPolicyConfig(c), geo)
	if err != nil {
		return nil, err
	}
	return &authn.Risk{Engine: e, Store: rs, Notifier: authn.LogRiskNotifier{Log: log}}, nil
}

// purgeRiskProfiles deletes profiles not updated within the retention
// period, daily, until ctx ends.
func purgeRiskProfiles(ctx context.Context, r *authn.Risk, now func() time.Time, log *slog.Logger) {
	if r == nil {
		return
	}
	purge := func(ctx context.Context) error {
		n, err := r.Store.DeleteRiskProfilesBefore(ctx, now().Add(-r.Engine.Config().Retention))
		if err == nil && n > 0 {
			log.Info("risk: purged profiles past retention", "count", n)
		}
		return err
	}
	onErr := func(err error) { log.Warn("risk: purge profiles", "err", err.Error()) }
	// At start, then daily.
	if err := purge(ctx); err != nil && ctx.Err() == nil {
		onErr(err)
	}
	jobs.Every(ctx, 24*time.Hour, nil, purge, onErr)
}
