package storetest

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/nhsid/nhsid/policy"
)

// RiskStore is what RunRiskTests checks: risk profiles belong to people.
type RiskStore interface {
	policy.Store
	policy.RiskStore
}

// RunRiskTests is the conformance suite of policy.RiskStore.
func RunRiskTests(t *testing.T, newStore func(t *testing.T) RiskStore) {
	tests := []struct {
		name string
		run  func(t *testing.T, s RiskStore)
	}{
		{"empty profile", riskEmpty},
		{"round trip", riskRoundTrip},
		{"update error changes nothing", riskUpdateError},
		{"concurrent updates", riskConcurrent},
		{"update from a read profile", riskUpdateFrom},
		{"concurrent updates from read profiles", riskConcurrentFrom},
		{"retention", riskRetention},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.run(t, newStore(t))
		})
	}
}

func riskPerson(t *testing.T, s RiskStore, uid string) {
	t.Helper()
	if err := s.CreatePerson(context.Background(), newPerson(uid)); err != nil {
		t.Fatalf("create person: %v", err)
	}
}

func riskEmpty(t *testing.T, s RiskStore) {
	riskPerson(t, s, "555000000101")
	p, err := s.GetRiskProfile(context.Background(), "555000000101")
	if err != nil {
		t.Fatal(err)
	}
	equal(t, "empty profile", p, policy.RiskProfile{PersonUID: "555000000101"})
}

func sampleRiskProfile(p *policy.RiskProfile) {
	p.SignIns = 3
	p.Devices = map[string]policy.Seen{"dev-hash": {First: t0, Last: t0.Add(time.Hour), Count: 2}}
	p.Networks = map[string]policy.Seen{"192.0.2.0/24": {First: t0, Last: t0, Count: 1}}
	p.Clients = map[string]policy.Seen{"ehr": {First: t0, Last: t0, Count: 3}}
	p.Hours[1][9] = 3
	p.Last = &policy.RiskLastSeen{Time: t0, Location: &policy.Location{Country: "GB", City: "Leeds", Lat: 53.8, Lon: -1.55}}
	p.Decisions = []policy.RiskDecision{{Time: t0, ClientID: "ehr", Level: policy.RiskMedium, Score: 55, Outcome: policy.OutcomeStepUpPassed,
		Signals: []policy.Signal{{Name: policy.SignalNewDevice, Weight: 30, Reason: "new device"}}, Place: "Leeds, GB"}}
	p.UpdatedAt = t0
}

func riskRoundTrip(t *testing.T, s RiskStore) {
	ctx := context.Background()
	uid := "555000000102"
	riskPerson(t, s, uid)
	got, err := s.UpdateRiskProfile(ctx, uid, func(p *policy.RiskProfile) error {
		sampleRiskProfile(p)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := policy.RiskProfile{PersonUID: uid}
	sampleRiskProfile(&want)
	equal(t, "update result", got, want)
	read, err := s.GetRiskProfile(ctx, uid)
	if err != nil {
		t.Fatal(err)
	}
	if read.Version == "" {
		t.Fatal("a stored profile read without a version")
	}
	read.Version = ""
	equal(t, "read back", read, want)
}

func riskRead(t *testing.T, s RiskStore, uid string) policy.RiskProfile {
	t.Helper()
	p, err := s.GetRiskProfile(context.Background(), uid)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func riskUpdateFrom(t *testing.T, s RiskStore) {
	ctx := context.Background()
	uid := "555000000107"
	riskPerson(t, s, uid)
	inc := func(p *policy.RiskProfile) error {
		p.SignIns++
		p.UpdatedAt = t0
		return nil
	}
	// Never stored: no version, so the store creates the row.
	empty := riskRead(t, s, uid)
	if empty.Version != "" {
		t.Fatalf("version %q of a profile never stored", empty.Version)
	}
	noErr(t, "first update", s.UpdateRiskProfileFrom(ctx, empty, inc))
	read := riskRead(t, s, uid)
	if read.SignIns != 1 || read.Version == "" {
		t.Fatalf("after the first update: %d sign-ins, version %q", read.SignIns, read.Version)
	}
	noErr(t, "current update", s.UpdateRiskProfileFrom(ctx, read, inc))
	if p := riskRead(t, s, uid); p.SignIns != 2 || p.Version == read.Version {
		t.Fatalf("after an update from the current version: %d sign-ins, version %q (was %q)", p.SignIns, p.Version, read.Version)
	}
	// A stale read: another update came between the read and this one.
	stale := riskRead(t, s, uid)
	if _, err := s.UpdateRiskProfile(ctx, uid, inc); err != nil {
		t.Fatal(err)
	}
	noErr(t, "stale update", s.UpdateRiskProfileFrom(ctx, stale, inc))
	if p := riskRead(t, s, uid); p.SignIns != 4 {
		t.Fatalf("after an update from a stale read: %d sign-ins, want 4 (lost update)", p.SignIns)
	}
	boom := errors.New("boom")
	err := s.UpdateRiskProfileFrom(ctx, riskRead(t, s, uid), func(p *policy.RiskProfile) error {
		p.SignIns = 99
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("err %v, want boom", err)
	}
	if p := riskRead(t, s, uid); p.SignIns != 4 {
		t.Fatalf("a failed update was kept: %d sign-ins", p.SignIns)
	}
}

func riskConcurrentFrom(t *testing.T, s RiskStore) {
	ctx := context.Background()
	riskConcurrently(t, s, "555000000108", func(uid string) error {
		read, err := s.GetRiskProfile(ctx, uid)
		if err != nil {
			return err
		}
		return s.UpdateRiskProfileFrom(ctx, read, riskIncrement)
	})
}

func riskUpdateError(t *testing.T, s RiskStore) {
	ctx := context.Background()
	uid := "555000000103"
	riskPerson(t, s, uid)
	boom := errors.New("boom")
	_, err := s.UpdateRiskProfile(ctx, uid, func(p *policy.RiskProfile) error {
		p.SignIns = 9
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("err %v, want boom", err)
	}
	p, err := s.GetRiskProfile(ctx, uid)
	if err != nil {
		t.Fatal(err)
	}
	if p.SignIns != 0 {
		t.Fatalf("failed update was kept: %+v", p)
	}
}

func riskConcurrent(t *testing.T, s RiskStore) {
	ctx := context.Background()
	riskConcurrently(t, s, "555000000104", func(uid string) error {
		_, err := s.UpdateRiskProfile(ctx, uid, riskIncrement)
		return err
	})
}

// riskIncrement counts one more sign-in.
func riskIncrement(p *policy.RiskProfile) error {
	p.SignIns++
	p.UpdatedAt = t0
	return nil
}

// riskConcurrently runs update for a new person from 10 goroutines at once
// and checks that no update was lost.
func riskConcurrently(t *testing.T, s RiskStore, uid string, update func(uid string) error) {
	t.Helper()
	riskPerson(t, s, uid)
	const n = 10
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- update(uid)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	p, err := s.GetRiskProfile(context.Background(), uid)
	if err != nil {
		t.Fatal(err)
	}
	if p.SignIns != n {
		t.Fatalf("sign-ins %d, want %d (lost update)", p.SignIns, n)
	}
}

func riskRetention(t *testing.T, s RiskStore) {
	ctx := context.Background()
	for i, uid := range []string{"555000000105", "555000000106"} {
		riskPerson(t, s, uid)
		if _, err := s.UpdateRiskProfile(ctx, uid, func(p *policy.RiskProfile) error {
			p.SignIns = 1
			p.UpdatedAt = t0.Add(time.Duration(i) * 48 * time.Hour)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	n, err := s.DeleteRiskProfilesBefore(ctx, t0.Add(24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Fatalf("deleted %d, want 1", n)
	}
	old, _ := s.GetRiskProfile(ctx, "555000000105")
	kept, _ := s.GetRiskProfile(ctx, "555000000106")
	if old.SignIns != 0 || kept.SignIns != 1 {
		t.Fatalf("retention: old %+v kept %+v", old, kept)
	}
}
