package postgres_test

import (
	"context"
	"testing"

	"github.com/nhsid/nhsid/internal/testdb"
	"github.com/nhsid/nhsid/policy"
	"github.com/nhsid/nhsid/store/postgres"
	"github.com/nhsid/nhsid/store/storetest"
)

func TestPostgresRiskConformance(t *testing.T) {
	storetest.RunRiskTests(t, func(t *testing.T) storetest.RiskStore { return postgres.New(testdb.Pool(t)) })
}

// TestQueueRiskProfileUpdate: a sign-in's profile update waits in its
// write pipeline and commits with it; when the profile changed between the
// read and the send, the queued write does not apply and complete makes
// the update on the current profile, so neither change is lost. Without a
// pipeline, or for a profile not stored yet, nothing is queued.
func TestQueueRiskProfileUpdate(t *testing.T) {
	s := postgres.New(testdb.Pool(t))
	ctx := context.Background()
	const uid = "555000000301"
	if err := s.CreatePerson(ctx, policy.Person{UID: uid, GivenName: "Ada", FamilyName: "Lovelace", Status: policy.StatusActive}); err != nil {
		t.Fatal(err)
	}
	addSignIn := func(p *policy.RiskProfile) error { p.SignIns++; return nil }
	read, err := s.GetRiskProfile(ctx, uid)
	if err != nil {
		t.Fatal(err)
	}
	pctx, err := s.BeginPipeline(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, queued, err := s.QueueRiskProfileUpdate(pctx, read, addSignIn); queued || err != nil {
		t.Fatalf("profile not stored yet: queued %v, %v", queued, err)
	}
	if _, err := s.UpdateRiskProfile(ctx, uid, addSignIn); err != nil {
		t.Fatal(err)
	}

	signIns := func() int {
		t.Helper()
		p, err := s.GetRiskProfile(ctx, uid)
		if err != nil {
			t.Fatal(err)
		}
		return p.SignIns
	}
	for _, changedMeanwhile := range []bool{false, true} {
		before := signIns()
		read, err := s.GetRiskProfile(ctx, uid)
		if err != nil {
			t.Fatal(err)
		}
		if _, queued, err := s.QueueRiskProfileUpdate(ctx, read, addSignIn); queued || err != nil {
			t.Fatalf("without a pipeline: queued %v, %v", queued, err)
		}
		pctx, err := s.BeginPipeline(ctx)
		if err != nil {
			t.Fatal(err)
		}
		complete, queued, err := s.QueueRiskProfileUpdate(pctx, read, addSignIn)
		if !queued || err != nil {
			t.Fatalf("queued %v, %v", queued, err)
		}
		if signIns() != before {
			t.Fatal("written before the pipeline was sent")
		}
		want := before + 1
		if changedMeanwhile {
			if _, err := s.UpdateRiskProfile(ctx, uid, addSignIn); err != nil {
				t.Fatal(err)
			}
			want++
		}
		if err := s.SendPipeline(pctx); err != nil {
			t.Fatal(err)
		}
		if err := complete(ctx); err != nil {
			t.Fatal(err)
		}
		if got := signIns(); got != want {
			t.Errorf("changed meanwhile %v: %d sign-ins, want %d", changedMeanwhile, got, want)
		}
	}
}
