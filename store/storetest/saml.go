package storetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nhsid/nhsid/federation/saml"
	"github.com/nhsid/nhsid/store"
)

// RunSAMLTests checks a saml.Store: service provider round trips,
// uniqueness of ID and entity id, updates, pagination, replay detection
// with expiry (also under concurrency) and session participants.
func RunSAMLTests(t *testing.T, newStore func(t *testing.T) saml.Store) {
	ctx := context.Background()
	sp := func(i int) saml.ServiceProvider {
		return saml.ServiceProvider{
			ID: fmt.Sprintf("sp-%02d", i), EntityID: fmt.Sprintf("https://sp%d.example.nhs.uk/saml/metadata", i),
			MetadataXML: []byte(fmt.Sprintf("<md:EntityDescriptor entityID=\"sp%d\"/>", i)),
			ACS: []saml.Endpoint{{Binding: "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST",
				Location: fmt.Sprintf("https://sp%d.example.nhs.uk/acs", i), Index: 1, IsDefault: true}},
			Settings:  saml.Settings{MinAAL: 2, Sign: saml.SignBoth},
			CreatedAt: t0, UpdatedAt: t0,
		}
	}
	tests := []struct {
		name string
		run  func(t *testing.T, s saml.Store)
	}{
		{name: "CreateGetRoundTrip", run: func(t *testing.T, s saml.Store) {
			want := sp(1)
			want.SLO = []saml.Endpoint{{Binding: "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect", Location: "https://sp1.example.nhs.uk/slo"}}
			want.Settings = saml.Settings{MinAAL: 3, Sign: saml.SignAssertion, SelectRole: true,
				AllowedRoles: []string{"R8000"}, Attributes: map[string]string{"uid": "urn:oid:0.9.2342.19200300.100.1.1"}}
			noErr(t, "create", s.CreateServiceProvider(ctx, want))
			got, err := s.GetServiceProvider(ctx, want.ID)
			noErr(t, "get", err)
			equal(t, "get", got, want)
			got, err = s.GetServiceProviderByEntityID(ctx, want.EntityID)
			noErr(t, "get by entity", err)
			equal(t, "get by entity", got, want)
		}},
		{name: "NotFound", run: func(t *testing.T, s saml.Store) {
			_, err := s.GetServiceProvider(ctx, "nope")
			isErr(t, "get", err, store.ErrNotFound)
			_, err = s.GetServiceProviderByEntityID(ctx, "nope")
			isErr(t, "get by entity", err, store.ErrNotFound)
			_, err = s.UpdateServiceProvider(ctx, "nope", func(*saml.ServiceProvider) error { return nil })
			isErr(t, "update", err, store.ErrNotFound)
		}},
		{name: "Uniqueness", run: func(t *testing.T, s saml.Store) {
			noErr(t, "create", s.CreateServiceProvider(ctx, sp(1)))
			isErr(t, "same id", s.CreateServiceProvider(ctx, sp(1)), store.ErrExists)
			dup := sp(2)
			dup.EntityID = sp(1).EntityID
			isErr(t, "same entity id", s.CreateServiceProvider(ctx, dup), store.ErrExists)
		}},
		{name: "Update", run: func(t *testing.T, s saml.Store) {
			noErr(t, "create", s.CreateServiceProvider(ctx, sp(1)))
			t1 := t0.Add(time.Hour)
			got, err := s.UpdateServiceProvider(ctx, sp(1).ID, func(x *saml.ServiceProvider) error {
				x.Settings.MinAAL = 3
				x.Settings.SelectRole = true
				x.EntityID = "changed" // ignored
				x.UpdatedAt = t1
				return nil
			})
			noErr(t, "update", err)
			want := sp(1)
			want.Settings.MinAAL, want.Settings.SelectRole, want.UpdatedAt = 3, true, t1
			equal(t, "update", got, want)
			again, err := s.GetServiceProvider(ctx, want.ID)
			noErr(t, "get", err)
			equal(t, "get after update", again, want)
			_, err = s.UpdateServiceProvider(ctx, want.ID, func(*saml.ServiceProvider) error { return errAbort })
			isErr(t, "abort", err, errAbort)
		}},
		{name: "ListPagination", run: func(t *testing.T, s saml.Store) {
			for i := 5; i >= 1; i-- {
				noErr(t, "create", s.CreateServiceProvider(ctx, sp(i)))
			}
			page, err := s.ListServiceProviders(ctx, "", 2)
			noErr(t, "list", err)
			if len(page) != 2 || page[0].ID != "sp-01" || page[1].ID != "sp-02" {
				t.Fatalf("first page: %+v", page)
			}
			page, err = s.ListServiceProviders(ctx, "sp-02", 0)
			noErr(t, "list", err)
			if len(page) != 3 || page[0].ID != "sp-03" {
				t.Fatalf("second page: %d entries", len(page))
			}
		}},
		{name: "RequestIDReplay", run: func(t *testing.T, s saml.Store) {
			exp := t0.Add(5 * time.Minute)
			noErr(t, "first", s.RememberRequestID(ctx, "sp", "id-1", exp, t0))
			isErr(t, "replay", s.RememberRequestID(ctx, "sp", "id-1", exp, t0.Add(time.Minute)), store.ErrExists)
			noErr(t, "other sp, same id", s.RememberRequestID(ctx, "sp2", "id-1", exp, t0))
			noErr(t, "after expiry", s.RememberRequestID(ctx, "sp", "id-1", exp.Add(10*time.Minute), exp))
			isErr(t, "replay after renewal", s.RememberRequestID(ctx, "sp", "id-1", exp, exp.Add(time.Minute)), store.ErrExists)
		}},
		{name: "RequestIDConcurrent", run: func(t *testing.T, s saml.Store) {
			var wg sync.WaitGroup
			var mu sync.Mutex
			ok, replays := 0, 0
			for range 8 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					err := s.RememberRequestID(ctx, "sp", "id-race", t0.Add(time.Minute), t0)
					mu.Lock()
					defer mu.Unlock()
					switch {
					case err == nil:
						ok++
					case errors.Is(err, store.ErrExists):
						replays++
					default:
						t.Errorf("remember: %v", err)
					}
				}()
			}
			wg.Wait()
			if ok != 1 || replays != 7 {
				t.Fatalf("ok %d, replays %d; want 1 and 7", ok, replays)
			}
		}},
		{name: "Participants", run: func(t *testing.T, s saml.Store) {
			a := saml.Participant{SID: "sid-1", EntityID: "sp-a", NameID: "555000000001", SessionIndex: "sid-1", CreatedAt: t0}
			b := saml.Participant{SID: "sid-1", EntityID: "sp-b", NameID: "555000000001", SessionIndex: "sid-1", CreatedAt: t0.Add(time.Second)}
			noErr(t, "add a", s.AddParticipant(ctx, a))
			noErr(t, "add b", s.AddParticipant(ctx, b))
			noErr(t, "add a again", s.AddParticipant(ctx, a))
			got, err := s.ListParticipants(ctx, "sid-1")
			noErr(t, "list", err)
			equal(t, "participants", got, []saml.Participant{a, b})
			none, err := s.ListParticipants(ctx, "sid-2")
			noErr(t, "list other", err)
			if len(none) != 0 {
				t.Fatalf("other session: %+v", none)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.run(t, newStore(t))
		})
	}
}
