package postgres

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/nhsid/nhsid/authn"
	"github.com/nhsid/nhsid/internal/ratelimit"
	"github.com/nhsid/nhsid/policy"
)

// A sign-in's finish reads, one after another, the flow and then four
// things of the person the assertion names: the person, their credentials,
// their failed sign-ins (the rate limit) and their risk profile. Five
// round trips, each a wake-up of the client and of a backend.
// WithSignInReadAhead lets the first of those reads send all five in one
// round trip (a pgx batch, one statement each, as they would be sent
// alone) and the others be answered from it, each once: a second read of
// the same thing in the context goes to the database as usual.

type signInReadKey struct{}

// readResult is one read-ahead answer.
type readResult[T any] struct {
	v     T
	err   error
	taken bool
}

// signInRead holds one finish's read-ahead.
type signInRead struct {
	s           *Store
	flowID, uid string
	mu          sync.Mutex
	sent        bool
	flow        readResult[authn.Flow]
	person      readResult[policy.Person]
	creds       readResult[[]authn.Credential]
	rate        readResult[ratelimit.State]
	risk        readResult[policy.RiskProfile]
}

// WithSignInReadAhead implements store.SignInReadAheader: in the returned
// context, the first of GetFlow(flowID) (at the zero time, as LoadFlow
// reads), GetPerson(personUID), ListCredentials(personUID),
// RateGet(ratelimit.PersonKey(personUID)) and GetRiskProfile(personUID)
// reads all five at once. Inside a transaction or write pipeline the
// reads go there as usual.
func (s *Store) WithSignInReadAhead(ctx context.Context, flowID, personUID string) context.Context {
	if flowID == "" || personUID == "" {
		return ctx
	}
	return context.WithValue(ctx, signInReadKey{}, &signInRead{s: s, flowID: flowID, uid: personUID})
}

// signInReadOf returns ctx's read-ahead for s, if the reads go to the pool.
func signInReadOf(ctx context.Context, s *Store) *signInRead {
	ra, ok := ctx.Value(signInReadKey{}).(*signInRead)
	if !ok || ra.s != s || !s.outsideTx(ctx) {
		return nil
	}
	return ra
}

// take returns r once the batch has been sent; ok is false when r was
// taken already.
func take[T any](ra *signInRead, ctx context.Context, r *readResult[T]) (readResult[T], bool) {
	ra.mu.Lock()
	defer ra.mu.Unlock()
	if !ra.sent {
		ra.send(ctx)
		ra.sent = true
	}
	if r.taken {
		return readResult[T]{}, false
	}
	r.taken = true
	return *r, true
}

// send reads all five in one batch.
func (ra *signInRead) send(ctx context.Context) {
	b := &pgx.Batch{}
	b.Queue(getFlowSQL, ra.flowID, nullTime(time.Time{}))
	b.Queue(getPersonSQL, ra.uid)
	b.Queue(listCredentialsSQL, ra.uid)
	b.Queue(rateGetSQL, ratelimit.PersonKey(ra.uid))
	b.Queue(getRiskSQL, ra.uid)
	br := ra.s.pool.SendBatch(ctx, b)
	ra.flow.v, ra.flow.err = getFlow(br.QueryRow())
	ra.person.v, ra.person.err = getPerson(ra.uid, br.QueryRow())
	ra.creds.v, ra.creds.err = listCredentials(br.Query())
	ra.rate.v, ra.rate.err = rateGet(br.QueryRow())
	ra.risk.v, ra.risk.err = getRiskProfile(ra.uid, br.QueryRow())
	if err := br.Close(); err != nil {
		err = fmt.Errorf("sign-in reads: %w", translate(err))
		for _, e := range []*error{&ra.flow.err, &ra.person.err, &ra.creds.err, &ra.rate.err, &ra.risk.err} {
			if *e == nil {
				*e = err
			}
		}
	}
}
