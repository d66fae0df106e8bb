// Command nhsid-load is nhsid's load generator. `setup` enrols many people
// with software authenticators and registers the clients it needs through
// the admin API (token in NHSID_TOKEN), saving them to a state file; `run`
// drives a running nhsid over HTTP with one or more scenarios (login,
// client_credentials, refresh, introspect, userinfo, saml-sso, mixed), closed-loop or
// at a fixed arrival rate, and prints throughput, latency percentiles,
// errors by kind, the ratio to each scenario's limit and the CPU split
// between nhsid and PostgreSQL; `limit` runs only the limit benchmarks;
// `seed` bulk-loads filler people and token rows into nhsid's database for
// scale measurements (and `seed --clean` removes them).
// Targets must be loopback; every run is bounded and stops by itself.
// See docs/performance.md.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/nhsid/nhsid/internal/loadgen"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := newRoot().ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "nhsid-load:", err)
		stop()
		os.Exit(1)
	}
}

func newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:           "nhsid-load",
		Short:         "Load generator and limit benchmarks for a local nhsid",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(setupCmd(), runCmd(), limitCmd(), seedCmd())
	return root
}

func setupCmd() *cobra.Command {
	var o loadgen.SetupOptions
	var state string
	cmd := &cobra.Command{
		Use:   "setup",
		Short: "Enrol people with software authenticators and register the load clients",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.AdminToken = os.Getenv("NHSID_TOKEN")
			start := time.Now()
			st, err := loadgen.Setup(cmd.Context(), o)
			if err != nil {
				return err
			}
			if err := st.Save(state); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "enrolled %d people, registered clients %s (web, private_key_jwt), %s (web, client_secret_basic) and %s (service) in %s; state in %s\n",
				len(st.Users), st.RP.ID, st.WebSecret.ID, st.Service.ID, time.Since(start).Round(time.Millisecond), state)
			return nil
		},
	}
	cmd.Flags().StringVar(&o.Issuer, "issuer", "http://localhost:8080", "nhsid public URL (loopback only)")
	cmd.Flags().StringVar(&o.AdminURL, "admin", "http://127.0.0.1:8081", "nhsid admin URL (loopback only)")
	cmd.Flags().IntVar(&o.Users, "users", 200, "people to enrol")
	cmd.Flags().IntVar(&o.Concurrency, "concurrency", 8, "parallel enrolments")
	cmd.Flags().StringVar(&state, "state", "nhsid-load.json", "state file to write")
	return cmd
}

// ints parses "8,32".
func ints(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil {
			return nil, fmt.Errorf("bad number %q", f)
		}
		out = append(out, n)
	}
	return out, nil
}

func scenarios(s string) []string {
	if s == "all" {
		return loadgen.Scenarios
	}
	return strings.Split(s, ",")
}

func runCmd() *cobra.Command {
	var (
		state, scen, conc, jsonOut, limitDB, pgDB, cpuProf, refreshAuth string
		dur, warmup                                                     time.Duration
		rate                                                            float64
		repeat, pid                                                     int
		limitMem, newDevices, steps                                     bool
	)
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Drive nhsid with scenarios and print the results (and ratios to the limits)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, err := loadgen.LoadState(state)
			if err != nil {
				return err
			}
			cs, err := ints(conc)
			if err != nil {
				return err
			}
			if repeat < 1 || repeat > 20 {
				return errors.New("--repeat must be 1..20")
			}
			if cpuProf != "" {
				// The generator's own CPU profile, to keep its cost per
				// request (which shares the machine with nhsid) low.
				f, err := os.Create(cpuProf)
				if err != nil {
					return err
				}
				defer f.Close()
				if err := pprof.StartCPUProfile(f); err != nil {
					return err
				}
				defer pprof.StopCPUProfile()
			}
			var probe *loadgen.CPUProbe
			if pid > 0 || pgDB != "" {
				probe = &loadgen.CPUProbe{PID: pid, Database: pgDB}
			}
			var all, medians []*loadgen.Summary
			for _, sc := range scenarios(scen) {
				for _, c := range cs {
					var runs []*loadgen.Summary
					for r := 0; r < repeat; r++ {
						s, err := loadgen.Run(cmd.Context(), st, loadgen.Options{Scenario: sc, Concurrency: c, Duration: dur, Warmup: warmup, Rate: rate, NewDevices: newDevices, RefreshAuth: refreshAuth, CPU: probe})
						if err != nil {
							return err
						}
						if limitDB != "" || limitMem {
							l, err := loadgen.Limit(cmd.Context(), loadgen.LimitOptions{Op: sc, Concurrency: c, Duration: dur, DatabaseURL: limitDB})
							if err != nil {
								return err
							}
							s.Limit, s.Ratio = l, s.Throughput/l
						}
						fmt.Fprintf(cmd.ErrOrStderr(), "%s c=%d run %d: %.0f/s p99 %.1f ms errors %d limit %.0f/s\n",
							sc, c, r+1, s.Throughput, s.P99ms, s.Errors, s.Limit)
						runs = append(runs, s)
					}
					all = append(all, runs...)
					medians = append(medians, loadgen.Median(runs))
				}
			}
			// The browsers keep their device cookies for the next run.
			if err := st.Save(state); err != nil {
				return err
			}
			if repeat > 1 {
				fmt.Fprintf(cmd.OutOrStdout(), "medians of %d runs\n", repeat)
			}
			if err := loadgen.WriteTable(cmd.OutOrStdout(), medians); err != nil {
				return err
			}
			if steps {
				fmt.Fprintln(cmd.OutOrStdout())
				if err := loadgen.WriteSteps(cmd.OutOrStdout(), medians); err != nil {
					return err
				}
			}
			if jsonOut != "" {
				b, _ := json.MarshalIndent(map[string]any{"date": time.Now().UTC(), "medians": medians, "runs": all}, "", " ")
				if err := os.WriteFile(jsonOut, b, 0o644); err != nil {
					return err
				}
			}
			for _, m := range medians {
				if m.Errors > 0 {
					return fmt.Errorf("%d errors", m.Errors)
				}
				if m.WarmupErrors > 0 { // summed over the runs, like Errors
					return fmt.Errorf("%s: %d errors in the warm-up", m.Scenario, m.WarmupErrors)
				}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&state, "state", "nhsid-load.json", "state file from setup")
	f.StringVar(&scen, "scenario", "all", "comma-separated scenarios, or all: "+strings.Join(loadgen.Scenarios, ", "))
	f.StringVar(&conc, "concurrency", "8", "virtual clients (comma-separated for several runs, e.g. 8,32)")
	f.DurationVar(&dur, "duration", 10*time.Second, "measured time per run (max 10m)")
	f.DurationVar(&warmup, "warmup", 0, "run each scenario this long before the measured time and leave it out of the figures (a server just started opens connections, fills caches and grows its heap under its first requests)")
	f.Float64Var(&rate, "rate", 0, "open loop: fixed arrival rate per second (0: closed loop)")
	f.StringVar(&refreshAuth, "refresh-auth", loadgen.AuthSecretBasic, "client authentication of the refreshes (refresh, mixed): "+loadgen.AuthSecretBasic+" (like for like with the refresh limit) or "+loadgen.AuthPrivateKeyJWT+" (one ES256 signature and verification and a jti record more)")
	f.BoolVar(&newDevices, "new-devices", false, "every sign-in from a browser never seen before (default: each person's browser keeps nhsid's device cookie, never the session, and run saves it in the state file for the next run)")
	f.IntVar(&repeat, "repeat", 1, "runs per configuration; the table shows medians")
	f.StringVar(&limitDB, "limit-db", "", "PostgreSQL URL for the limit benchmark after each run (scratch schema, dropped)")
	f.BoolVar(&limitMem, "limit-memory", false, "run the limit benchmark without a database (for a memory-store nhsid)")
	f.IntVar(&pid, "pid", 0, "nhsid's process id, to measure its CPU")
	f.StringVar(&pgDB, "pg-database", "", "nhsid's database name, to measure its PostgreSQL backends' CPU")
	f.StringVar(&jsonOut, "json", "", "write the JSON summary to this file")
	f.StringVar(&cpuProf, "cpuprofile", "", "write the load generator's own CPU profile to this file")
	f.BoolVar(&steps, "steps", false, "also print each request step's rate and latencies (always in the JSON summary)")
	return cmd
}

func limitCmd() *cobra.Command {
	var (
		ops, conc, db string
		dur           time.Duration
	)
	cmd := &cobra.Command{
		Use:   "limit",
		Short: "Run only the limit benchmarks (the unavoidable work per operation, no HTTP)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cs, err := ints(conc)
			if err != nil {
				return err
			}
			list := strings.Split(ops, ",")
			if ops == "all" {
				list = append(append([]string{}, loadgen.LimitOps...), loadgen.Mixed)
			}
			for _, op := range list {
				for _, c := range cs {
					r, err := loadgen.Limit(cmd.Context(), loadgen.LimitOptions{Op: op, Concurrency: c, Duration: dur, DatabaseURL: db})
					if err != nil {
						return err
					}
					fmt.Fprintf(cmd.OutOrStdout(), "%-20s c=%-4d %10.0f/s\n", op, c, r)
				}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&ops, "op", "all", "comma-separated operations, or all")
	cmd.Flags().StringVar(&conc, "concurrency", "8", "workers (comma-separated)")
	cmd.Flags().DurationVar(&dur, "duration", 5*time.Second, "time per operation")
	cmd.Flags().StringVar(&db, "db", "", "PostgreSQL URL (empty: in memory)")
	return cmd
}

func seedCmd() *cobra.Command {
	var (
		o     loadgen.SeedOptions
		clean bool
	)
	cmd := &cobra.Command{
		Use:   "seed",
		Short: "Bulk-load filler people and OAuth token rows into nhsid's database (for scale runs)",
		Long: `seed writes filler data straight into the PostgreSQL database of an
already-migrated nhsid with COPY, for measuring throughput at scale: people
(with an organisation membership and a position in a non-RA job role from
the loaded role catalogue, spread over seeded organisations SEED0000...)
and oauth_tokens rows: people's grants (mostly access and refresh tokens,
some authorization codes with their PKCE and OIDC rows; subjects drawn
from the seeded people), then a quarter of the rows as client_credentials
access tokens, written with INSERT so that they fill the room COPY left
in each page, as small rows do in a live database; live and expired;
owned by --client or the first client.

It tops the database up to the requested counts, so running it again adds
nothing. Everything it writes is tagged (emails @` + loadgen.SeedEmailDomain + `,
organisation codes ` + loadgen.SeedOrgPrefix + `NNNN, request ids ` + loadgen.SeedRequestPrefix + `...) and --clean removes exactly
that. Only loopback hosts and unix sockets are accepted. nhsid's purge of
expired OAuth rows deletes expired seeded rows too; run seed again before
measuring to top them up.`,
		Example: `  nhsid-load seed --db postgres://postgres@127.0.0.1:5432/nhsid
  nhsid-load seed --db postgres://postgres@127.0.0.1:5432/nhsid --persons 2000 --tokens 10000
  nhsid-load seed --db postgres://postgres@127.0.0.1:5432/nhsid --clean`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.Progress = cmd.ErrOrStderr()
			if clean {
				r, err := loadgen.CleanSeed(cmd.Context(), o.DatabaseURL, o.Progress)
				if err != nil {
					return err
				}
				fmt.Fprintln(cmd.OutOrStdout(), r)
				return nil
			}
			r, err := loadgen.Seed(cmd.Context(), o)
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), r)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.DatabaseURL, "db", "", "nhsid's PostgreSQL URL (loopback or unix socket only; schema migrated)")
	f.IntVar(&o.Persons, "persons", 1_000_000, fmt.Sprintf("seeded people the database should hold (max %d)", loadgen.MaxSeedPersons))
	f.IntVar(&o.Tokens, "tokens", 5_000_000, fmt.Sprintf("seeded oauth_tokens rows the database should hold (max %d)", loadgen.MaxSeedTokens))
	f.IntVar(&o.Orgs, "orgs", 1000, fmt.Sprintf("seeded organisations to spread people over (max %d)", loadgen.MaxSeedOrgs))
	f.StringVar(&o.ClientID, "client", "", "client owning the token rows (default: the first client in the database)")
	f.IntVar(&o.BatchSize, "batch", 50_000, "rows per COPY or INSERT, each in its own transaction")
	f.BoolVar(&clean, "clean", false, "remove every seeded row instead of seeding")
	return cmd
}
