package storetest

import (
	"context"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nhsid/nhsid/policy"
	"github.com/nhsid/nhsid/store"
)

func policyTests() []suiteTest {
	return []suiteTest{
		{"Organisation/RoundTrip", testOrganisationRoundTrip},
		{"Organisation/List", testOrganisationList},
		{"Person/RoundTrip", testPersonRoundTrip},
		{"Person/Update", testPersonUpdate},
		{"Person/ConcurrentUpdate", testPersonConcurrentUpdate},
		{"Person/List", testPersonList},
		{"Person/Search", testPersonSearch},
	}
}

func testOrganisationRoundTrip(t *testing.T, s Store) {
	ctx := context.Background()
	parent := policy.Organisation{Code: "RX1", Name: "Example NHS Trust", CreatedAt: t0}
	child := policy.Organisation{Code: "RX1AB", Name: "Example Hospital", ParentCode: "RX1", CreatedAt: t0.Add(time.Hour)}
	noErr(t, "create parent", s.CreateOrganisation(ctx, parent))
	noErr(t, "create child", s.CreateOrganisation(ctx, child))

	got, err := s.GetOrganisation(ctx, "RX1AB")
	noErr(t, "get", err)
	equal(t, "organisation", got, child)

	dup := parent
	dup.Name = "Other"
	isErr(t, "duplicate code", s.CreateOrganisation(ctx, dup), store.ErrExists)
	got, err = s.GetOrganisation(ctx, "RX1")
	noErr(t, "get after duplicate", err)
	equal(t, "organisation after failed duplicate", got, parent)

	_, err = s.GetOrganisation(ctx, "NOPE")
	isErr(t, "missing organisation", err, store.ErrNotFound)
}

func testOrganisationList(t *testing.T, s Store) {
	ctx := context.Background()
	codes := []string{"D4", "A1", "E5", "C3", "B2"}
	for _, c := range codes {
		noErr(t, "create "+c, s.CreateOrganisation(ctx, policy.Organisation{Code: c, Name: "Org " + c, CreatedAt: t0}))
	}
	list := func(after string, limit int) []string {
		t.Helper()
		orgs, err := s.ListOrganisations(ctx, after, limit)
		noErr(t, "list", err)
		var out []string
		for _, o := range orgs {
			if o.Name != "Org "+o.Code || !o.CreatedAt.Equal(t0) {
				t.Fatalf("listed organisation incomplete: %+v", o)
			}
			out = append(out, o.Code)
		}
		return out
	}
	tests := []struct {
		name  string
		after string
		limit int
		want  []string
	}{
		{name: "first page", after: "", limit: 2, want: []string{"A1", "B2"}},
		{name: "second page", after: "B2", limit: 2, want: []string{"C3", "D4"}},
		{name: "last page", after: "D4", limit: 2, want: []string{"E5"}},
		{name: "past the end", after: "E5", limit: 2, want: nil},
		{name: "cursor between codes", after: "B", limit: 1, want: []string{"B2"}},
		{name: "no limit", after: "", limit: 0, want: []string{"A1", "B2", "C3", "D4", "E5"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			equal(t, "codes", list(tt.after, tt.limit), tt.want)
		})
	}
}

func newPerson(uid string) policy.Person {
	return policy.Person{
		UID:              uid,
		Title:            "Dr",
		GivenName:        "Ada",
		MiddleNames:      "Mary",
		FamilyName:       "Lovelace",
		DisplayName:      "Dr Ada Lovelace",
		Email:            "ada.lovelace@example.nhs.uk",
		IDAssuranceLevel: 3,
		Registrations:    map[string]string{"gmc": "1234567", "nmc": "12A3456B"},
		Status:           policy.StatusActive,
		CreatedAt:        t0,
		UpdatedAt:        t0.Add(time.Minute),
	}
}

func testPersonRoundTrip(t *testing.T, s Store) {
	ctx := context.Background()
	p := newPerson("555000000001")
	noErr(t, "create", s.CreatePerson(ctx, p))

	// The store must not alias the caller's map.
	p.Registrations["gmc"] = "changed after create"
	p = newPerson(p.UID)

	got, err := s.GetPerson(ctx, p.UID)
	noErr(t, "get", err)
	equal(t, "person", got, p)

	got.Registrations["gmc"] = "mutated copy"
	again, err := s.GetPerson(ctx, p.UID)
	noErr(t, "get again", err)
	equal(t, "registrations after mutating a returned copy", again.Registrations["gmc"], "1234567")

	bare := policy.Person{UID: "555000000002", GivenName: "Bo", FamilyName: "Peep", Status: policy.StatusActive}
	noErr(t, "create bare", s.CreatePerson(ctx, bare))
	got, err = s.GetPerson(ctx, bare.UID)
	noErr(t, "get bare", err)
	equal(t, "person without registrations or times", got, bare)

	isErr(t, "duplicate uid", s.CreatePerson(ctx, newPerson(p.UID)), store.ErrExists)
	_, err = s.GetPerson(ctx, "999999999999")
	isErr(t, "missing person", err, store.ErrNotFound)
}

func testPersonUpdate(t *testing.T, s Store) {
	ctx := context.Background()
	p := newPerson("555000000010")
	noErr(t, "create", s.CreatePerson(ctx, p))

	want := p
	want.FamilyName = "King"
	want.Registrations = map[string]string{"gmc": "7654321"}
	want.Status = policy.StatusClosed
	want.UpdatedAt = t0.Add(time.Hour)
	got, err := s.UpdatePerson(ctx, p.UID, func(x *policy.Person) error {
		equal(t, "updater sees current record", *x, p)
		x.UID = "000000000000" // ignored: the key cannot change
		x.FamilyName = want.FamilyName
		x.Registrations = map[string]string{"gmc": "7654321"}
		x.Status = want.Status
		x.UpdatedAt = want.UpdatedAt
		return nil
	})
	noErr(t, "update", err)
	equal(t, "returned person", got, want)
	stored, err := s.GetPerson(ctx, p.UID)
	noErr(t, "get", err)
	equal(t, "stored person", stored, want)
	_, err = s.GetPerson(ctx, "000000000000")
	isErr(t, "uid change ignored", err, store.ErrNotFound)

	_, err = s.UpdatePerson(ctx, p.UID, func(x *policy.Person) error {
		x.FamilyName = "Aborted"
		return errAbort
	})
	isErr(t, "updater error returned", err, errAbort)
	stored, err = s.GetPerson(ctx, p.UID)
	noErr(t, "get after abort", err)
	equal(t, "person after aborted update", stored, want)

	called := false
	_, err = s.UpdatePerson(ctx, "999999999999", func(*policy.Person) error { called = true; return nil })
	isErr(t, "update missing", err, store.ErrNotFound)
	if called {
		t.Fatal("updater called for a missing person")
	}
}

func testPersonConcurrentUpdate(t *testing.T, s Store) {
	ctx := context.Background()
	p := newPerson("555000000020")
	p.Registrations = map[string]string{"counter": "0"}
	noErr(t, "create", s.CreatePerson(ctx, p))

	const n = 20
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Go(func() {
			_, err := s.UpdatePerson(ctx, p.UID, func(x *policy.Person) error {
				c, err := strconv.Atoi(x.Registrations["counter"])
				if err != nil {
					return err
				}
				x.Registrations["counter"] = strconv.Itoa(c + 1)
				return nil
			})
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		noErr(t, "concurrent update", err)
	}
	got, err := s.GetPerson(ctx, p.UID)
	noErr(t, "get", err)
	equal(t, "counter after concurrent increments (lost update?)", got.Registrations["counter"], strconv.Itoa(n))
}

func testPersonList(t *testing.T, s Store) {
	ctx := context.Background()
	for _, uid := range []string{"555000000003", "555000000001", "555000000002"} {
		noErr(t, "create", s.CreatePerson(ctx, newPerson(uid)))
	}
	all, err := s.ListPeople(ctx, "", 0)
	noErr(t, "list all", err)
	if len(all) != 3 {
		t.Fatalf("listed %d people, want 3", len(all))
	}
	equal(t, "listed person", all[0], newPerson("555000000001"))

	var uids []string
	after := ""
	for {
		page, err := s.ListPeople(ctx, after, 2)
		noErr(t, "list page", err)
		if len(page) == 0 {
			break
		}
		if len(page) > 2 {
			t.Fatalf("page of %d with limit 2", len(page))
		}
		for _, p := range page {
			uids = append(uids, p.UID)
		}
		after = page[len(page)-1].UID
	}
	equal(t, "paged uids", uids, []string{"555000000001", "555000000002", "555000000003"})
}

func testPersonSearch(t *testing.T, s Store) {
	ctx := context.Background()
	for _, p := range []policy.Person{
		{UID: "555000000001", GivenName: "Ada", FamilyName: "Lovelace", Email: "ada.lovelace@example.nhs.uk"},
		{UID: "555000000002", GivenName: "Grace", FamilyName: "Hopper", DisplayName: "Dr Grace Hopper", Email: "GHopper@Example.NHS.uk"},
		{UID: "555000000003", GivenName: "Mary", FamilyName: "Love", Email: ""},
		{UID: "555000000004", GivenName: "Joan", FamilyName: "O'Brien_Smith", Email: "joan%x@example.nhs.uk"},
		{UID: "555000000005", GivenName: "Ada", FamilyName: "Byron", Status: policy.StatusClosed},
	} {
		noErr(t, "create", s.CreatePerson(ctx, p))
	}
	uids := func(ps []policy.Person) []string {
		out := []string{}
		for _, p := range ps {
			out = append(out, p.UID)
		}
		return out
	}
	for _, tt := range []struct {
		name, q string
		want    []string
	}{
		{"family name", "love", []string{"555000000001", "555000000003"}},
		{"family name, more of it", "lovel", []string{"555000000001"}},
		{"given name", "ada", []string{"555000000001", "555000000005"}},
		{"full name", "Ada  Love", []string{"555000000001"}},
		{"display name", "dr grace", []string{"555000000002"}},
		{"email, any case", "ghopper@example", []string{"555000000002"}},
		{"whole email", "ada.lovelace@example.nhs.uk", []string{"555000000001"}},
		{"not the middle of a name", "velace", []string{}},
		{"not the middle of an email", "example.nhs.uk", []string{}},
		{"underscore is itself", "o'brien_", []string{"555000000004"}},
		{"underscore is not a wildcard", "o'brie_", []string{}},
		{"percent is itself", "joan%x", []string{"555000000004"}},
		{"percent is not a wildcard", "j%x", []string{}},
		{"empty finds no one", "", []string{}},
		{"bytes that are not UTF-8 are dropped", "lov\xffe\xc3", []string{"555000000001", "555000000003"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.SearchPeople(ctx, policy.SearchKey(tt.q), "", 0)
			noErr(t, "search", err)
			equal(t, "found", uids(got), tt.want)
		})
	}
	page, err := s.SearchPeople(ctx, "ada", "", 1)
	noErr(t, "first page", err)
	equal(t, "first page", uids(page), []string{"555000000001"})
	page, err = s.SearchPeople(ctx, "ada", "555000000001", 1)
	noErr(t, "second page", err)
	equal(t, "second page", uids(page), []string{"555000000005"})
	equal(t, "a found person is whole", page[0].FamilyName, "Byron")
}
