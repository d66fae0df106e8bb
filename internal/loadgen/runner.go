package loadgen

import (
	"context"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"net/http"
	"os"
	"slices"
	"sort"
	"sync"
	"time"
)

// Options configure one Run.
type Options struct {
	Scenario    string
	Concurrency int           // virtual clients (closed loop) or the cap on requests in flight (open loop)
	Duration    time.Duration // measured time, after preparation
	// Warmup, when > 0, runs the scenario this long before the measured
	// time and discards what it recorded: a server just started has its
	// first requests open connections, fill caches and grow its heap.
	Warmup time.Duration
	// Rate, when > 0, is open-loop mode: iterations start at this fixed
	// arrival rate per second whatever the latency, and latency counts from
	// each iteration's scheduled start (so queueing shows).
	Rate float64
	// NewDevices makes every sign-in come from a browser never seen
	// before. By default each person's browser keeps nhsid's device cookie
	// between sign-ins (never the session: each is a full sign-in), as a
	// clinician's workstation does; new devices fill every risk profile to
	// its cap, the worst case for its size.
	NewDevices bool
	// RefreshAuth is how the refresh scenario's client (and mixed's
	// refreshes) authenticates at the token endpoint: client_secret_basic
	// (the default: the web client with a secret, like for like with the
	// refresh limit, whose client authentication is one HMAC) or
	// private_key_jwt (the web client with an ES256 key, as CIS2 relying
	// parties do: one signature in the generator, one verification and a
	// jti record in nhsid more per refresh).
	RefreshAuth string
	// Transport, when set, replaces the shared HTTP transport (tests).
	Transport http.RoundTripper
	// CPU, when set, measures nhsid's and PostgreSQL's CPU over the run.
	CPU *CPUProbe
}

// Stats are latency and counts for one operation.
type Stats struct {
	Count      int     `json:"count"`
	Errors     int     `json:"errors"`
	Throughput float64 `json:"throughput_per_s"`
	P50ms      float64 `json:"p50_ms"`
	P95ms      float64 `json:"p95_ms"`
	P99ms      float64 `json:"p99_ms"`
	MaxMs      float64 `json:"max_ms"`
}

// Summary is the result of one Run.
type Summary struct {
	Scenario    string  `json:"scenario"`
	Mode        string  `json:"mode"` // closed or open
	Concurrency int     `json:"concurrency"`
	Rate        float64 `json:"rate,omitempty"`
	// RefreshAuth is the client authentication of the refreshes (refresh
	// and mixed only).
	RefreshAuth string  `json:"refresh_auth,omitempty"`
	Seconds     float64 `json:"seconds"`
	// WarmupSeconds is the warm-up before the measured time (not in the
	// figures), and WarmupErrors the iterations that failed in it.
	WarmupSeconds float64 `json:"warmup_seconds,omitempty"`
	WarmupErrors  int     `json:"warmup_errors,omitempty"`
	Stats
	Requests    int              `json:"http_requests"`
	RequestRate float64          `json:"http_requests_per_s"`
	ErrorKinds  map[string]int   `json:"errors_by_kind"`
	Ops         map[string]Stats `json:"ops,omitempty"` // per operation (mixed)
	// Steps is per request step (authorize, login/finish, token(code),
	// …): its count, rate, latencies (end to end, as the client saw
	// them) and replies with an error status, over the measured window's
	// requests that got a whole reply.
	Steps map[string]Stats `json:"steps,omitempty"`
	Late  int              `json:"late_starts,omitempty"`
	// Limit and Ratio are filled in when a limit benchmark ran alongside.
	Limit float64 `json:"limit_per_s,omitempty"`
	Ratio float64 `json:"ratio_to_limit,omitempty"`
	// CPU used during the measured time, in cores (1.0 = one core busy).
	NhsidCores    float64 `json:"nhsid_cores,omitempty"`
	PostgresCores float64 `json:"postgres_cores,omitempty"`
	LoadgenCores  float64 `json:"loadgen_cores,omitempty"`
	// FirstError is one full error message, for diagnosis.
	FirstError string `json:"first_error,omitempty"`
}

type sample struct {
	op  string
	dur time.Duration
	err error
}

// Run drives st's nhsid with one scenario and returns its summary. It
// prepares the virtual clients (untimed), runs for opts.Duration and
// stops by itself.
func Run(ctx context.Context, st *State, opts Options) (*Summary, error) {
	if !slices.Contains(Scenarios, opts.Scenario) {
		return nil, fmt.Errorf("loadgen: unknown scenario %q (have %v)", opts.Scenario, Scenarios)
	}
	if opts.Concurrency <= 0 || opts.Concurrency > MaxConcurrency {
		return nil, fmt.Errorf("loadgen: concurrency must be 1..%d", MaxConcurrency)
	}
	if opts.Duration <= 0 || opts.Duration > MaxDuration {
		return nil, fmt.Errorf("loadgen: duration must be in (0, %s]", MaxDuration)
	}
	if opts.Warmup < 0 || opts.Warmup > MaxDuration {
		return nil, fmt.Errorf("loadgen: warm-up must be in [0, %s]", MaxDuration)
	}
	if opts.Rate < 0 || opts.Rate > MaxRate {
		return nil, fmt.Errorf("loadgen: rate must be 0..%d", MaxRate)
	}
	switch opts.RefreshAuth {
	case "":
		opts.RefreshAuth = AuthSecretBasic
	case AuthSecretBasic, AuthPrivateKeyJWT:
	default:
		return nil, fmt.Errorf("loadgen: refresh auth must be %s or %s", AuthSecretBasic, AuthPrivateKeyJWT)
	}
	if opts.RefreshAuth == AuthSecretBasic && st.WebSecret == nil && (opts.Scenario == Refresh || opts.Scenario == Mixed) {
		return nil, fmt.Errorf("loadgen: the state file has no %s web client (it predates it): run setup again, or use %s",
			AuthSecretBasic, AuthPrivateKeyJWT)
	}
	rt := opts.Transport
	if rt == nil {
		tr := newTransport(opts.Concurrency)
		defer tr.CloseIdleConnections()
		rt = tr
	}
	// Each virtual client keeps its own connection (connTransport), unless
	// the caller chose the transport.
	clientRT := func() http.RoundTripper { return rt }
	if opts.Transport == nil {
		var conns []*connTransport
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		clientRT = func() http.RoundTripper {
			c := newConnTransport(rt)
			conns = append(conns, c)
			return c
		}
	}
	// A hard stop whatever happens: duration plus time to prepare and drain.
	ctx, cancel := context.WithTimeout(ctx, opts.Warmup+opts.Duration+2*time.Minute)
	defer cancel()
	sh, err := newShared(ctx, st, rt, opts.Concurrency)
	if err != nil {
		return nil, err
	}
	sh.newDevices = opts.NewDevices
	sh.refreshAuth = opts.RefreshAuth
	if opts.Scenario == SAMLSSO {
		if err := sh.loadSAML(ctx); err != nil {
			return nil, err
		}
	}

	// Prepare the clients in parallel (bounded).
	clients := make([]*vclient, opts.Concurrency)
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		perr error
		sem  = make(chan struct{}, 8)
	)
	for i := range clients {
		c, err := sh.newClient(clientRT())
		if err != nil {
			return nil, err
		}
		clients[i] = c
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			if err := c.prepare(ctx, opts.Scenario); err != nil {
				mu.Lock()
				perr = errors.Join(perr, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if perr != nil {
		return nil, fmt.Errorf("loadgen: prepare %s: %w", opts.Scenario, perr)
	}

	warmupErrors, warmupFirst := 0, ""
	if opts.Warmup > 0 {
		// Run as measured, then drop what the warm-up recorded but its
		// errors. The warm-up's last iterations finish before the
		// measured time starts.
		wper, _, _ := drive(ctx, clients, opts, opts.Warmup, true)
		for _, ss := range wper {
			for _, x := range ss {
				if x.err != nil {
					warmupErrors++
					if warmupFirst == "" {
						warmupFirst = "warm-up: " + x.err.Error()
					}
				}
			}
		}
		for _, c := range clients {
			c.reqs = 0
		}
	}
	var cpu0 CPUTimes
	if opts.CPU != nil {
		cpu0 = opts.CPU.Read()
	}
	self0 := procCPU(os.Getpid())
	start := time.Now()
	per, times, late := drive(ctx, clients, opts, opts.Duration, false)
	elapsed := time.Since(start)
	var cpu1 CPUTimes
	if opts.CPU != nil {
		cpu1 = opts.CPU.Read()
	}
	self1 := procCPU(os.Getpid())
	if ctx.Err() != nil {
		return nil, fmt.Errorf("loadgen: run: %w", ctx.Err())
	}

	s := &Summary{Scenario: opts.Scenario, Mode: "closed", Concurrency: opts.Concurrency, Rate: opts.Rate, RefreshAuth: refreshAuthOf(opts),
		Seconds: elapsed.Seconds(), WarmupSeconds: opts.Warmup.Seconds(), WarmupErrors: warmupErrors, ErrorKinds: map[string]int{}, Ops: map[string]Stats{}, Late: late}
	if opts.Rate > 0 {
		s.Mode = "open"
	}
	cpu := cpu1.Since(cpu0)
	s.NhsidCores = cpu.Nhsid / elapsed.Seconds()
	s.PostgresCores = cpu.Postgres / elapsed.Seconds()
	s.LoadgenCores = (self1 - self0) / elapsed.Seconds()
	var all []time.Duration
	byOp := map[string][]time.Duration{}
	opErr := map[string]int{}
	for _, ss := range per {
		for _, x := range ss {
			all = append(all, x.dur)
			byOp[x.op] = append(byOp[x.op], x.dur)
			if x.err != nil {
				s.ErrorKinds[ErrorKind(x.err)]++
				opErr[x.op]++
				if s.FirstError == "" {
					s.FirstError = x.err.Error()
				}
			}
		}
	}
	if s.FirstError == "" {
		s.FirstError = warmupFirst
	}
	for _, c := range clients {
		s.Requests += c.reqs
	}
	s.RequestRate = float64(s.Requests) / elapsed.Seconds()
	s.Stats = stats(all, elapsed)
	for _, n := range s.ErrorKinds {
		s.Errors += n
	}
	for op, d := range byOp {
		o := stats(d, elapsed)
		o.Errors = opErr[op]
		s.Ops[op] = o
	}
	byStep := map[string][]time.Duration{}
	stepErr := map[string]int{}
	for _, t := range times {
		for step, d := range t.d {
			byStep[step] = append(byStep[step], d...)
			stepErr[step] += t.errs[step]
		}
	}
	if len(byStep) > 0 {
		s.Steps = map[string]Stats{}
		for step, d := range byStep {
			st := stats(d, elapsed)
			st.Errors = stepErr[step]
			s.Steps[step] = st
		}
	}
	return s, nil
}

// drive runs the scenario with clients for d, closed or open loop as opts
// say, and returns each client's samples and step times, and the number
// of open-loop iterations that started late. At the end of d it cuts the
// iterations in flight short, unless drain: then it lets them finish, so
// that every client knows its newest tokens (a refresh cut short may have
// rotated them in nhsid all the same).
func drive(ctx context.Context, clients []*vclient, opts Options, d time.Duration, drain bool) ([][]sample, []*stepTimes, int) {
	runCtx, stop := context.WithTimeout(ctx, d)
	defer stop()
	iterCtx := runCtx
	if drain {
		iterCtx = ctx
	}
	per := make([][]sample, len(clients))
	times := make([]*stepTimes, len(clients))
	for i := range times {
		times[i] = newStepTimes()
	}
	var wg sync.WaitGroup
	start := time.Now()
	late := 0
	if opts.Rate == 0 {
		for i, c := range clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				rnd := mrand.New(mrand.NewPCG(uint64(i), uint64(start.UnixNano())))
				cctx := withStepTimes(iterCtx, times[i])
				for runCtx.Err() == nil {
					t0 := time.Now()
					op, err := c.run(cctx, opts.Scenario, rnd)
					if !drain && runCtx.Err() != nil && err != nil {
						break // cut short by the end of the run
					}
					per[i] = append(per[i], sample{op, time.Since(t0), err})
				}
			}()
		}
		wg.Wait()
		return per, times, late
	}
	free := make(chan int, len(clients))
	for i := range clients {
		free <- i
	}
	interval := time.Duration(float64(time.Second) / opts.Rate)
	rnd := mrand.New(mrand.NewPCG(1, uint64(start.UnixNano())))
loop:
	for n := 0; ; n++ {
		due := start.Add(time.Duration(n) * interval)
		if d := time.Until(due); d > 0 {
			select {
			case <-time.After(d):
			case <-runCtx.Done():
				break loop
			}
		}
		var i int
		select {
		case i = <-free:
		case <-runCtx.Done():
			break loop
		}
		if time.Since(due) > interval {
			late++
		}
		seed := rnd.Uint64()
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { free <- i }()
			op, err := clients[i].run(withStepTimes(iterCtx, times[i]), opts.Scenario, mrand.New(mrand.NewPCG(seed, 2)))
			if !drain && runCtx.Err() != nil && err != nil {
				return
			}
			per[i] = append(per[i], sample{op, time.Since(due), err})
		}()
	}
	wg.Wait()
	return per, times, late
}

func stats(d []time.Duration, elapsed time.Duration) Stats {
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	st := Stats{Count: len(d), Throughput: float64(len(d)) / elapsed.Seconds()}
	if len(d) == 0 {
		return st
	}
	q := func(p float64) float64 {
		i := int(p*float64(len(d))+0.5) - 1
		i = max(0, min(i, len(d)-1))
		return ms(d[i])
	}
	st.P50ms, st.P95ms, st.P99ms, st.MaxMs = q(0.50), q(0.95), q(0.99), ms(d[len(d)-1])
	return st
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// Client authentication methods for Options.RefreshAuth.
const (
	AuthSecretBasic   = "client_secret_basic"
	AuthPrivateKeyJWT = "private_key_jwt"
)

func refreshAuthOf(opts Options) string {
	if opts.Scenario == Refresh || opts.Scenario == Mixed {
		return opts.RefreshAuth
	}
	return ""
}
