//go:build bench

package main

import (
	"bufio"
	"fmt"
	"io"
	"maps"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"
)

// summary is the medians of one configuration's successful runs of one
// workload.
type summary struct {
	runs, failed          int
	wall                  time.Duration
	linesPerSec           float64
	pluginCPU, dockerdCPU float64 // seconds per million lines
	pluginCores           float64 // plugin CPU seconds per second of wall time
	pluginRSS, dockerdRSS float64 // MiB
	peakReset             bool
	lost                  float64 // the largest share of lines lost in a run
}

// median returns the median of xs (the mean of the middle two for an even
// count); 0 for none.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Sorted(slices.Values(xs))
	m := len(s) / 2
	if len(s)%2 == 1 {
		return s[m]
	}
	return (s[m-1] + s[m]) / 2
}

// summarize returns the medians of rs, which are runs of one workload and
// configuration.
func summarize(rs []result) summary {
	var s summary
	var wall, lps, pcpu, dcpu, cores, prss, drss []float64
	s.peakReset = true
	for _, r := range rs {
		if r.err != nil {
			s.failed++
			continue
		}
		s.runs++
		mlines := float64(r.workload.total()) / 1e6
		wall = append(wall, r.wall.Seconds())
		lps = append(lps, float64(r.delivered)/r.wall.Seconds())
		s.lost = max(s.lost, 1-float64(r.delivered)/float64(r.sent))
		pcpu = append(pcpu, r.pluginCPU.Seconds()/mlines)
		dcpu = append(dcpu, r.dockerdCPU.Seconds()/mlines)
		cores = append(cores, r.pluginCPU.Seconds()/r.wall.Seconds())
		prss = append(prss, float64(r.pluginRSS)/(1<<20))
		drss = append(drss, float64(r.dockerdRSS)/(1<<20))
		s.peakReset = s.peakReset && r.peakReset
	}
	s.wall = time.Duration(median(wall) * float64(time.Second))
	s.linesPerSec = median(lps)
	s.pluginCPU, s.dockerdCPU, s.pluginCores = median(pcpu), median(dcpu), median(cores)
	s.pluginRSS, s.dockerdRSS = median(prss), median(drss)
	return s
}

// table is the summaries of one workload, by configuration.
type table struct {
	w     workload
	order []string
	sums  map[string]summary
	// walls holds the seconds of every run that succeeded, by
	// configuration and round.
	walls map[string]map[int]float64
}

// roundRatios returns a's time over b's in each round both finished, by
// round: runs of one round alternate closely, so each ratio is taken under
// the same machine load, which the ratio of medians is not.
func (t table) roundRatios(a, b string) []float64 {
	var out []float64
	for _, round := range slices.Sorted(maps.Keys(t.walls[a])) {
		if wb, ok := t.walls[b][round]; ok {
			out = append(out, t.walls[a][round]/wb)
		}
	}
	return out
}

// timeRatio formats a's median time over b's, with the ratios of each round
// when there are several.
func (t table) timeRatio(a, b string) (string, float64) {
	r := t.sums[a].wall.Seconds() / t.sums[b].wall.Seconds()
	out := fmt.Sprintf("%.2f×", r)
	if rs := t.roundRatios(a, b); len(rs) > 1 {
		parts := make([]string, len(rs))
		for i, x := range rs {
			parts[i] = fmt.Sprintf("%.2f", x)
		}
		out += fmt.Sprintf(" (by round %s; their median %.2f×)", strings.Join(parts, ", "), median(rs))
	}
	return out, r
}

func tables(cfg *config, results []result) []table {
	var out []table
	for _, w := range []workload{cfg.single, cfg.many, cfg.wide} {
		if w.containers == 0 {
			continue
		}
		t := table{w: w, sums: map[string]summary{}, walls: map[string]map[int]float64{}}
		byDriver := map[string][]result{}
		for _, r := range results {
			if r.workload == w {
				if _, seen := byDriver[r.driver]; !seen {
					t.order = append(t.order, r.driver)
					t.walls[r.driver] = map[int]float64{}
				}
				byDriver[r.driver] = append(byDriver[r.driver], r)
				if r.err == nil {
					t.walls[r.driver][r.round] = r.wall.Seconds()
				}
			}
		}
		if len(t.order) == 0 {
			continue
		}
		// The order of -drivers, not of the rotated first round.
		slices.SortStableFunc(t.order, func(a, b string) int {
			return slices.Index(cfg.drivers, a) - slices.Index(cfg.drivers, b)
		})
		for name, rs := range byDriver {
			t.sums[name] = summarize(rs)
		}
		out = append(out, t)
	}
	return out
}

// ratio formats a/b as "1.23×", or "–" when either is missing.
func ratio(a, b float64) string {
	if a == 0 || b == 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f×", a/b)
}

func report(out io.Writer, cfg *config, e *env, results []result) {
	w := bufio.NewWriter(out)
	defer w.Flush()
	fmt.Fprintf(w, "### End-to-end: %s\n\n", machine(e))
	fmt.Fprintf(w, "Lines of %d bytes; medians of %d runs per configuration (the wide case: %d); `go run -tags bench ./bench %s`.\n\n",
		cfg.lineSize, cfg.runs, cfg.wideRuns, strings.Join(os.Args[1:], " "))
	ts := tables(cfg, results)
	for _, t := range ts {
		fmt.Fprintf(w, "**%s lines** (%s lines in all)\n\n", t.w, short(t.w.total()))
		fmt.Fprintln(w, "| configuration | time (s) | × drain | × json-file | lines/s | plugin CPU (s/M lines) | dockerd CPU (s/M lines) | plugin peak RSS (MiB) | dockerd peak RSS (MiB) |")
		fmt.Fprintln(w, "|---|--:|--:|--:|--:|--:|--:|--:|--:|")
		floor, jf := t.sums["drain"], t.sums["json-file"]
		for _, name := range t.order {
			s := t.sums[name]
			d := drivers[name]
			label := d.label
			if s.failed > 0 {
				label += fmt.Sprintf(" (%d of %d runs failed)", s.failed, s.failed+s.runs)
			}
			if s.lost > 0 {
				label += fmt.Sprintf(" (**lost up to %.2g%% of lines**: time to the last one delivered)", 100*s.lost)
			}
			if s.runs == 0 {
				fmt.Fprintf(w, "| %s | | | | | | | | |\n", label)
				continue
			}
			pcpu, prss := "–", "–"
			if d.proc != dockerd {
				pcpu, prss = fmt.Sprintf("%.2f", s.pluginCPU), fmt.Sprintf("%.1f", s.pluginRSS)
			}
			fmt.Fprintf(w, "| %s | %.2f | %s | %s | %s | %s | %.2f | %s | %.0f |\n", label, s.wall.Seconds(),
				ratio(s.wall.Seconds(), floor.wall.Seconds()), ratio(s.wall.Seconds(), jf.wall.Seconds()),
				perSec(s.linesPerSec), pcpu, s.dockerdCPU, prss, s.dockerdRSS)
		}
		fmt.Fprintln(w)
	}
	fmt.Fprint(w, notes(results))
	targets(w, ts)
	if cfg.raw {
		rawRuns(w, results)
	}
}

// machine describes where the benchmark ran.
func machine(e *env) string {
	model := ""
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.Lines(string(b)) {
			if v, ok := strings.CutPrefix(line, "model name"); ok {
				model = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	kernel := ""
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		kernel = strings.TrimSpace(string(b))
	}
	return fmt.Sprintf("dockerd %s, Linux %s, %d CPUs (%s)", e.dockerVersion, kernel, runtime.NumCPU(), model)
}

func notes(results []result) string {
	reset := true
	for _, r := range results {
		reset = reset && (r.err != nil || r.peakReset)
	}
	var b strings.Builder
	b.WriteString("Time: from the moment the started containers may begin to print (they wait for a gate file) until every container has exited and every file or receiver holds every line. ")
	b.WriteString("CPU: user + system time of the plugin's process, and of dockerd (which also runs every built-in driver, and feeds every plugin), per million lines. ")
	if reset {
		b.WriteString("Peak RSS: VmHWM during the run (reset before it through /proc/<pid>/clear_refs). ")
	} else {
		b.WriteString("Peak RSS: VmHWM, the process's peak since it started (it could not be reset). ")
	}
	b.WriteString("The drain-only plugin (bench/drainplugin) reads its FIFO and discards it, through its own poll(2) and letting frames gather for 1 ms after a short read (the netpoller row: as soon as they arrive, through Go's network poller); it and Docker's fluentd driver in the cache-disabled row run with `cache-disabled=true`, the plain fluentd row with dockerd's default dual-logging cache.\n\n")
	return b.String()
}

func perSec(v float64) string {
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%.2fM", v/1e6)
	case v >= 1e3:
		return fmt.Sprintf("%.0fk", v/1e3)
	}
	return fmt.Sprintf("%.0f", v)
}

// targets prints issue 6's targets against the medians.
func targets(w io.Writer, ts []table) {
	type row struct{ target, measured, verdict string }
	var rows []row
	verdict := func(ok bool) string {
		if ok {
			return "met"
		}
		return "**missed**"
	}
	// each applies f to every table with the configurations it needs and
	// joins the results, the first table's verdict deciding.
	each := func(target string, need []string, f func(t table) (string, bool)) {
		var parts []string
		v := ""
		for _, t := range ts {
			ok := true
			for _, n := range need {
				s, present := t.sums[n]
				ok = ok && present && s.runs > 0
			}
			if !ok {
				continue
			}
			m, met := f(t)
			parts = append(parts, fmt.Sprintf("%s (%s)", m, t.w))
			if v == "" {
				v = verdict(met)
			}
		}
		if len(parts) > 0 {
			rows = append(rows, row{target, strings.Join(parts, "; "), v})
		}
	}
	each("files only: time ≤ 1.10× drain-only", []string{"logferry", "drain"}, func(t table) (string, bool) {
		m, r := t.timeRatio("logferry", "drain")
		return m, r <= 1.10
	})
	each("files only: plugin CPU ≤ 0.4 s per M lines", []string{"logferry"}, func(t table) (string, bool) {
		c := t.sums["logferry"].pluginCPU
		return fmt.Sprintf("%.2f s", c), c <= 0.4
	})
	for _, ref := range []string{"fluentd", "fluentd-nocache"} {
		each(fmt.Sprintf("Fluentd: ≥ 2× the throughput of Docker's driver (%s row)", drivers[ref].label), []string{"logferry-fluentd", ref},
			func(t table) (string, bool) {
				r := t.sums["logferry-fluentd"].linesPerSec / t.sums[ref].linesPerSec
				return fmt.Sprintf("%.2f×", r), r >= 2
			})
	}
	each("files + Fluentd: time ≤ 1.2× files only", []string{"logferry-fluentd", "logferry"}, func(t table) (string, bool) {
		m, r := t.timeRatio("logferry-fluentd", "logferry")
		return m, r <= 1.2
	})
	each("Elasticsearch: ≥ 100k docs/s on ≤ 1 core", []string{"logferry-es"}, func(t table) (string, bool) {
		s := t.sums["logferry-es"]
		return fmt.Sprintf("%s docs/s at %.2f cores", perSec(s.linesPerSec), s.pluginCores), s.linesPerSec >= 100e3 && s.pluginCores <= 1
	})
	for _, t := range ts {
		if t.w.containers < 100 {
			continue
		}
		for _, name := range []string{"logferry", "logferry-fluentd", "logferry-es"} {
			if s, ok := t.sums[name]; ok && s.runs > 0 {
				rows = append(rows, row{fmt.Sprintf("memory: RSS < 40 MiB with %d containers (%s)", t.w.containers, drivers[name].label),
					fmt.Sprintf("%.1f MiB", s.pluginRSS), verdict(s.pluginRSS < 40)})
			}
		}
	}
	if len(rows) == 0 {
		return
	}
	fmt.Fprintln(w, "**Issue 6's targets** (end-to-end; the first workload decides)")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| target | measured | |")
	fmt.Fprintln(w, "|---|---|---|")
	for _, r := range rows {
		fmt.Fprintf(w, "| %s | %s | %s |\n", r.target, r.measured, r.verdict)
	}
	fmt.Fprintln(w)
}

// rawRuns prints every run.
func rawRuns(w io.Writer, results []result) {
	fmt.Fprintln(w, "**Every run**")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| workload | configuration | round | time (s) | plugin CPU (s) | dockerd CPU (s) | plugin peak RSS (MiB) | error |")
	fmt.Fprintln(w, "|---|---|--:|--:|--:|--:|--:|---|")
	for _, r := range results {
		errText := ""
		if r.err != nil {
			errText = strings.ReplaceAll(r.err.Error(), "|", `\|`)
		}
		fmt.Fprintf(w, "| %s | %s | %d | %.2f | %.2f | %.2f | %.1f | %s |\n", r.workload, r.driver, r.round,
			r.wall.Seconds(), r.pluginCPU.Seconds(), r.dockerdCPU.Seconds(), float64(r.pluginRSS)/(1<<20), errText)
	}
	fmt.Fprintln(w)
}
