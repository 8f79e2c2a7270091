package main

import (
	"fmt"
	"io"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
)

func printHeader(res *results) {
	m := res.Machine
	fmt.Printf("execdb-perf %s\n", res.Started.Format("2006-01-02 15:04 MST"))
	fmt.Printf("machine: %s CPUs (%s), %s; load average at start %s\n", m["cpus"], m["cpu"], m["memory"], m["load_at_start"])
	fmt.Printf("execdb: %s\nPostgreSQL %s; %s; %s", m["execdb"], m["postgresql"], m["pgbench"], m["go"])
	if v := m["rabbitmq"]; v != "" {
		fmt.Printf("; RabbitMQ %s", v)
	}
	fmt.Println()
	if load, err := strconv.ParseFloat(strings.Fields(m["load_at_start"] + " x")[0], 64); err == nil && load > 1 {
		fmt.Printf("WARNING: the machine is not quiet (load average %s): other work competes for the CPUs, and the ratios suffer too\n", m["load_at_start"])
	}
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func join(xs []float64, format string) string {
	parts := make([]string, len(xs))
	for i, x := range xs {
		parts[i] = fmt.Sprintf(format, x)
	}
	return strings.Join(parts, " ")
}

// report prints the table of ratios and what else the run found.
func report(out io.Writer, c config, res *results) {
	top := c.conns[len(c.conns)-1]
	summary := map[string]float64{} // what the targets are checked against
	fmt.Fprintf(out, "\n== ExecDB against baselines on this machine: median of %d interleaved rounds of %s each ==\n\n", len(res.Rounds), c.duration)
	short := map[string]string{"statements": "stmts", "cte": "cte"}
	fmt.Fprintf(out, "%-10s %5s", "HTTP on PG", "conns")
	for _, f := range c.forms {
		fmt.Fprintf(out, " %11s", "pgbench "+short[f])
	}
	fmt.Fprintf(out, " %9s", "ExecDB")
	for _, f := range c.forms {
		fmt.Fprintf(out, " %9s", "÷"+short[f])
	}
	fmt.Fprintf(out, "  %-17s %7s %7s %7s\n", "per round ÷"+short[c.forms[0]], "p50 ms", "p99 ms", "CPU ms")
	for _, workload := range []string{"creates", "lives"} {
		for _, n := range c.conns {
			k := key(workload, n)
			pg, ratio := map[string][]float64{}, map[string][]float64{}
			var ex, p50, p99, cpu []float64
			for _, r := range res.Rounds {
				h := r.HTTP[k]
				if h == nil {
					continue
				}
				ex, p50, p99, cpu = append(ex, h.UnitRate), append(p50, h.All.P50), append(p99, h.All.P99), append(cpu, h.ServeCPU)
				for _, f := range c.forms {
					if p := r.PGBench[k+"/"+f]; p != nil {
						pg[f], ratio[f] = append(pg[f], p.TPS), append(ratio[f], h.UnitRate/p.TPS)
					}
				}
			}
			name := "creates/s"
			if workload == "lives" {
				name = "lives/s"
			}
			fmt.Fprintf(out, "%-10s %5d", name, n)
			for _, f := range c.forms {
				fmt.Fprintf(out, " %11.0f", median(pg[f]))
			}
			fmt.Fprintf(out, " %9.0f", median(ex))
			for _, f := range c.forms {
				fmt.Fprintf(out, " %8.2f×", median(ratio[f]))
				summary[k+"/"+f] = median(ratio[f])
			}
			fmt.Fprintf(out, "  %-17s %7.1f %7.1f %7.2f\n", join(ratio[c.forms[0]], "%.2f"), median(p50), median(p99), median(cpu))
		}
	}
	fmt.Fprintf(out, "pgbench stmts: BEGIN, a statement a row, COMMIT (a round trip each); pgbench cte: the same rows in one\n"+
		"statement a transaction (one round trip); both -M prepared, -j %d. A job life is 3 requests and 3 pgbench\n"+
		"transactions: transitions/s = 3 × lives/s, the same ratio. ÷: the median of the rounds' ratios. p50/p99 are\n"+
		"ExecDB's, over all requests of a run; CPU: serve's own CPU time per 2xx request.\n", c.threads)

	if res.Rounds[0].SQLite != nil {
		var lives, p99, cpu []float64
		for _, r := range res.Rounds {
			lives, p99, cpu = append(lives, r.SQLite.UnitRate), append(p99, r.SQLite.All.P99), append(cpu, r.SQLite.ServeCPU)
		}
		summary["sqlite"] = 3 * median(lives)
		fmt.Fprintf(out, "\nSQLite, job lives @%d: %.0f lives/s = %.0f transitions/s (per round: %s transitions/s), p99 %.1f ms, serve CPU %.2f ms/request\n",
			top, median(lives), 3*median(lives), join(scale(lives, 3), "%.0f"), median(p99), median(cpu))
	}

	if len(res.Bus) > 0 {
		var null, ex, ratio, cpu, p99 []float64
		for _, p := range res.Bus {
			null, ex = append(null, p.Null.AppliedRate), append(ex, p.ExecDB.AppliedRate)
			ratio, cpu = append(ratio, p.ExecDB.AppliedRate/p.Null.AppliedRate), append(cpu, p.ExecDB.ServeCPU)
			p99 = append(p99, p.ExecDB.Latency.P99)
		}
		summary["bus"] = median(ratio)
		fmt.Fprintf(out, "\nBus, %d job lives (%d messages) a run: null pipeline %.0f messages/s, ExecDB %.0f messages/s = %.0f%% of the null pipeline (per round: %s%%);\n"+
			"  ExecDB serve CPU %.3f ms/message; publish-to-announcement p99 %.0f ms (saturated: queueing)\n",
			res.Bus[0].ExecDB.Jobs, res.Bus[0].ExecDB.Messages, median(null), median(ex), 100*median(ratio), join(scale(ratio, 100), "%.0f"),
			median(cpu), median(p99))
	}

	fmt.Fprintf(out, "\np99 at %d connections, ms (median of rounds):\n", top)
	line := func(label string, get func(r *round) *httpRun) {
		var parts []string
		for _, kind := range []string{"create", "start", "finish"} {
			var xs []float64
			for _, r := range res.Rounds {
				if h := get(r); h != nil {
					if s, ok := h.Kinds[kind]; ok {
						xs = append(xs, s.P99)
					}
				}
			}
			if len(xs) > 0 {
				parts = append(parts, fmt.Sprintf("%s %.1f", kind, median(xs)))
			}
		}
		var all []float64
		for _, r := range res.Rounds {
			if h := get(r); h != nil {
				all = append(all, h.All.P99)
			}
		}
		if len(all) > 0 {
			summary["p99 "+label] = median(all)
			fmt.Fprintf(out, "  %-28s %s (all requests %.1f; max of rounds' max %.0f)\n", label, strings.Join(parts, ", "), median(all), maxOf(res, get))
		}
	}
	line("creates, PostgreSQL:", func(r *round) *httpRun { return r.HTTP[key("creates", top)] })
	line("job lives, PostgreSQL:", func(r *round) *httpRun { return r.HTTP[key("lives", top)] })
	line("job lives, SQLite:", func(r *round) *httpRun { return r.SQLite })

	fmt.Fprintf(out, "\npeak RSS of serve (VmHWM):")
	for i, s := range res.Serves {
		summary["rss"] = max(summary["rss"], s.PeakRSS)
		sep := ","
		if i == 0 {
			sep = ""
		}
		fmt.Fprintf(out, "%s %s %.0f MB", sep, s.Name, s.PeakRSS)
	}
	fmt.Fprintln(out)

	// Everything that was not a clean 2xx.
	trouble := false
	for i, r := range res.Rounds {
		runs := map[string]*httpRun{}
		for k, h := range r.HTTP {
			runs["PostgreSQL "+k] = h
		}
		if r.SQLite != nil {
			runs["SQLite "+key("lives", top)] = r.SQLite
		}
		names := make([]string, 0, len(runs))
		for k := range runs {
			names = append(names, k)
		}
		sort.Strings(names)
		for _, k := range names {
			if t := runs[k].trouble(); t != "" {
				trouble = true
				fmt.Fprintf(out, "round %d, %s:%s\n", i+1, k, t)
				for _, s := range runs[k].Samples {
					fmt.Fprintf(out, "    first %s\n", s)
				}
			}
		}
		for k, p := range r.PGBench {
			if p.Failed > 0 {
				trouble = true
				fmt.Fprintf(out, "round %d, pgbench %s: %d failed transactions\n", i+1, k, p.Failed)
			}
		}
	}
	if !trouble {
		fmt.Fprintln(out, "every HTTP request of the measured runs was answered 2xx; no pgbench transaction failed")
	}
	for _, s := range res.Serves {
		fmt.Fprintf(out, "serve log (%s): %d errors, %d warnings\n", s.Name, s.Errors, s.Warnings)
		for _, f := range s.First {
			fmt.Fprintf(out, "    %s\n", f)
		}
	}
	for _, k := range res.Kill {
		if k.Load == nil {
			continue
		}
		verdict := "nothing answered 2xx was lost"
		if k.Missing > 0 || k.Behind > 0 {
			verdict = "LOST WRITES"
		}
		fmt.Fprintf(out, "kill -9 (%s, lives @%d): %d jobs answered 2xx, %d missing and %d behind after the restart: %s; serve ready %.1fs after the kill;\n"+
			"    during the run: %d requests answered (%d 2xx), %d transport errors%s\n",
			k.Serve, k.Load.Conns, k.Jobs, k.Missing, k.Behind, verdict, k.BackAfter, k.Load.Requests, k.Load.OK, k.Load.TransportErrors, statusList(k.Load.notOK()))
	}

	targets(out, c, summary)

	var busy []float64
	for _, r := range res.Rounds {
		for _, h := range r.HTTP {
			busy = append(busy, h.MachineBusy)
		}
		for _, p := range r.PGBench {
			busy = append(busy, p.MachineBusy)
		}
	}
	fmt.Fprintf(out, "\nmachine CPU busy during the HTTP and pgbench runs: median %.0f%%, lowest %.0f%%; load average at start %s, at the end %s\n",
		median(busy), slices.Min(busy), res.Machine["load_at_start"], loadAvg())
	fmt.Fprintf(out, "took %s\n", res.Finished.Sub(res.Started).Round(1e9))
	if c.jsonPath != "" {
		fmt.Fprintf(out, "every run's figures: %s\n", c.jsonPath)
	}
	fmt.Fprintf(out, "rerun: go run ./cmd/execdb-perf %s\n", strings.Join(os.Args[1:], " "))
}

func scale(xs []float64, f float64) []float64 {
	out := make([]float64, len(xs))
	for i, x := range xs {
		out[i] = x * f
	}
	return out
}

func maxOf(res *results, get func(r *round) *httpRun) float64 {
	m := 0.0
	for _, r := range res.Rounds {
		if h := get(r); h != nil {
			m = max(m, h.All.Max)
		}
	}
	return m
}

func statusList(m map[string]int) string {
	if len(m) == 0 {
		return ""
	}
	var parts []string
	for code, n := range m {
		parts = append(parts, fmt.Sprintf("%d× %s", n, code))
	}
	sort.Strings(parts)
	return ", not 2xx: " + strings.Join(parts, ", ")
}

// targets checks the figures against the targets of issue 14.
func targets(out io.Writer, c config, m map[string]float64) {
	top := c.conns[len(c.conns)-1]
	fmt.Fprintf(out, "\nissue 14's targets, this run:\n")
	verdict := func(ok bool) string {
		if ok {
			return "met"
		}
		return "NOT met"
	}
	row := func(target, got string, ok bool) {
		fmt.Fprintf(out, "  %-40s %-34s %s\n", target, got, verdict(ok))
	}
	for _, t := range []struct {
		workload, label string
		min             float64
	}{{"creates", "creates ≥ 1.50× pgbench", 1.5}, {"lives", "transitions ≥ 1.20× pgbench", 1.2}} {
		for _, f := range c.forms {
			var got []string
			ok := true
			for _, n := range c.conns {
				r := m[key(t.workload, n)+"/"+f]
				got = append(got, fmt.Sprintf("@%d %.2f×", n, r))
				ok = ok && r >= t.min
			}
			row(t.label+" "+f, strings.Join(got, ", "), ok)
		}
	}
	cr, lv := m["p99 creates, PostgreSQL:"], m["p99 job lives, PostgreSQL:"]
	row(fmt.Sprintf("p99 < 25 ms at %d connections", top), fmt.Sprintf("creates %.1f ms, lives %.1f ms", cr, lv), cr < 25 && lv < 25)
	if v, ok := m["sqlite"]; ok {
		row("SQLite ≥ 2,000 transitions/s", fmt.Sprintf("%.0f transitions/s", v), v >= 2000)
	}
	if v, ok := m["bus"]; ok {
		row("bus ≥ 70% of the null pipeline", fmt.Sprintf("%.0f%%", 100*v), v >= 0.7)
	}
	row("serve RSS < 100 MB throughout", fmt.Sprintf("peak %.0f MB", m["rss"]), m["rss"] < 100)
}
