package loadgen

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
)

// WriteTable prints summaries as an aligned table: one row per run, with
// the ratio to the limit where one was measured and the CPU split where it
// was probed.
func WriteTable(w io.Writer, sums []*Summary) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\tmode\tconc\titer/s\tlimit/s\tratio\tp50 ms\tp95 ms\tp99 ms\tmax ms\terrors\treq/s\tnhsid cores\tpg cores\tloadgen cores\t")
	for _, s := range sums {
		mode := s.Mode
		if s.Rate > 0 {
			mode = fmt.Sprintf("open@%g/s", s.Rate)
		}
		limit, ratio := "-", "-"
		if s.Limit > 0 {
			limit, ratio = fmt.Sprintf("%.0f", s.Limit), fmt.Sprintf("%.0f%%", 100*s.Ratio)
		}
		scenario := s.Scenario
		if s.RefreshAuth == AuthPrivateKeyJWT {
			scenario += " (pkjwt)" // the default, client_secret_basic, goes unmarked
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%.0f\t%s\t%s\t%.1f\t%.1f\t%.1f\t%.1f\t%d\t%.0f\t%.2f\t%.2f\t%.2f\t\n",
			scenario, mode, s.Concurrency, s.Throughput, limit, ratio, s.P50ms, s.P95ms, s.P99ms, s.MaxMs,
			s.Errors, s.RequestRate, s.NhsidCores, s.PostgresCores, s.LoadgenCores)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(sums) > 0 && sums[0].WarmupSeconds > 0 {
		fmt.Fprintf(w, "each run after a %gs warm-up, left out of the figures\n", sums[0].WarmupSeconds)
	}
	for _, s := range sums {
		if len(s.ErrorKinds) == 0 {
			continue
		}
		kinds := make([]string, 0, len(s.ErrorKinds))
		for k := range s.ErrorKinds {
			kinds = append(kinds, k)
		}
		sort.Strings(kinds)
		var b strings.Builder
		for _, k := range kinds {
			fmt.Fprintf(&b, "  %6d  %s\n", s.ErrorKinds[k], k)
		}
		fmt.Fprintf(w, "errors in %s (c=%d):\n%s  first: %s\n", s.Scenario, s.Concurrency, b.String(), s.FirstError)
	}
	return nil
}

// Median combines runs of the same configuration: each number is the
// median of that number over the runs; errors are summed.
func Median(runs []*Summary) *Summary {
	if len(runs) == 0 {
		return nil
	}
	out := *runs[0]
	out.ErrorKinds = map[string]int{}
	out.Ops = nil
	out.Errors, out.WarmupErrors = 0, 0
	for _, r := range runs {
		out.Errors += r.Errors
		out.WarmupErrors += r.WarmupErrors
		for k, n := range r.ErrorKinds {
			out.ErrorKinds[k] += n
		}
	}
	med := func(get func(*Summary) float64) float64 {
		v := make([]float64, len(runs))
		for i, r := range runs {
			v[i] = get(r)
		}
		return median(v)
	}
	out.Steps = medianSteps(runs)
	out.Throughput = med(func(s *Summary) float64 { return s.Throughput })
	out.RequestRate = med(func(s *Summary) float64 { return s.RequestRate })
	out.P50ms = med(func(s *Summary) float64 { return s.P50ms })
	out.P95ms = med(func(s *Summary) float64 { return s.P95ms })
	out.P99ms = med(func(s *Summary) float64 { return s.P99ms })
	out.MaxMs = med(func(s *Summary) float64 { return s.MaxMs })
	out.Limit = med(func(s *Summary) float64 { return s.Limit })
	out.Ratio = med(func(s *Summary) float64 { return s.Ratio })
	out.NhsidCores = med(func(s *Summary) float64 { return s.NhsidCores })
	out.PostgresCores = med(func(s *Summary) float64 { return s.PostgresCores })
	out.LoadgenCores = med(func(s *Summary) float64 { return s.LoadgenCores })
	return &out
}

// median is the median of v (which it sorts); 0 for none.
func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	sort.Float64s(v)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}

// medianSteps is, for each step of runs, the median of each number over
// the runs that made the step.
func medianSteps(runs []*Summary) map[string]Stats {
	by := map[string][]Stats{}
	for _, r := range runs {
		for step, st := range r.Steps {
			by[step] = append(by[step], st)
		}
	}
	if len(by) == 0 {
		return nil
	}
	out := make(map[string]Stats, len(by))
	for step, sts := range by {
		med := func(get func(Stats) float64) float64 {
			v := make([]float64, len(sts))
			for i, st := range sts {
				v[i] = get(st)
			}
			return median(v)
		}
		out[step] = Stats{
			Count:      int(med(func(s Stats) float64 { return float64(s.Count) })),
			Errors:     int(med(func(s Stats) float64 { return float64(s.Errors) })),
			Throughput: med(func(s Stats) float64 { return s.Throughput }),
			P50ms:      med(func(s Stats) float64 { return s.P50ms }),
			P95ms:      med(func(s Stats) float64 { return s.P95ms }),
			P99ms:      med(func(s Stats) float64 { return s.P99ms }),
			MaxMs:      med(func(s Stats) float64 { return s.MaxMs }),
		}
	}
	return out
}

// WriteSteps prints each summary's request steps (Summary.Steps), by
// name, as an aligned table.
func WriteSteps(w io.Writer, sums []*Summary) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\tconc\tstep\treq/s\tp50 ms\tp95 ms\tp99 ms\tmax ms\terrors\t")
	for _, s := range sums {
		steps := make([]string, 0, len(s.Steps))
		for step := range s.Steps {
			steps = append(steps, step)
		}
		sort.Strings(steps)
		for _, step := range steps {
			st := s.Steps[step]
			fmt.Fprintf(tw, "%s\t%d\t%s\t%.0f\t%.1f\t%.1f\t%.1f\t%.1f\t%d\t\n",
				s.Scenario, s.Concurrency, step, st.Throughput, st.P50ms, st.P95ms, st.P99ms, st.MaxMs, st.Errors)
		}
	}
	return tw.Flush()
}
