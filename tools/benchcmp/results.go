package main

import (
	"bufio"
	"context"
	"debug/buildinfo"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/stratamq/strata/internal/numfmt"
)

// Results are the figures of a run, per scenario, metric and system.
type Results struct {
	Env     Env
	Systems []SystemInfo
	// Scenarios in run order, with values[system key][metric index] holding
	// one value per run.
	Scenarios []*ScenarioResult
	// Load holds the 1-minute load average sampled before each mqttload
	// run and at the end.
	Load []float64
	// MosquittoDB is the size of the snapshot mosquitto wrote when it was
	// stopped (-1: none), evidence that persistence was on.
	MosquittoDB int64
}

// SystemInfo describes a system under test.
type SystemInfo struct {
	Key, Name, Addr, Version string
	Notes                    []string
}

// ScenarioResult is one scenario's figures.
type ScenarioResult struct {
	sc     *scenario
	Title  string
	Args   []string
	values map[string][][]float64
	// cpu and other hold, per system and run, the cores the system under
	// test and other processes used (-1: not measured).
	cpu, other map[string][]float64
	// strata sums Strata's own counters over the runs (nil: not read).
	strata   *internals
	Problems []string
}

func newResults(cfg Config, scens []*scenario) *Results {
	r := &Results{MosquittoDB: -1}
	for _, sc := range scens {
		var args []string
		if sc.flags != nil {
			args = sc.flags(cfg)
		}
		r.Scenarios = append(r.Scenarios, &ScenarioResult{sc: sc, Title: sc.title(cfg), Args: args,
			values: map[string][][]float64{}, cpu: map[string][]float64{}, other: map[string][]float64{}})
	}
	return r
}

func (r *Results) add(sc *scenario, system string, rep *loadReport, u cpuUse) {
	for _, s := range r.Scenarios {
		if s.sc != sc {
			continue
		}
		v := s.values[system]
		if v == nil {
			v = make([][]float64, len(sc.metrics))
		}
		for i, m := range sc.metrics {
			v[i] = append(v[i], m.get(rep))
		}
		s.values[system] = v
		s.cpu[system] = append(s.cpu[system], u.Server)
		s.other[system] = append(s.other[system], u.Other)
		for _, p := range rep.problems() {
			s.Problems = append(s.Problems, system+": "+p)
		}
	}
}

func (r *Results) addInternals(sc *scenario, in *internals) {
	if in == nil {
		return
	}
	for _, s := range r.Scenarios {
		if s.sc != sc {
			continue
		}
		if s.strata == nil {
			s.strata = &internals{}
		}
		s.strata.received += in.received
		s.strata.stored += in.stored
		s.strata.stores += in.stores
		s.strata.commits += in.commits
		s.strata.sent += in.sent
		s.strata.fsyncs += in.fsyncs
		s.strata.dsdMsgs += in.dsdMsgs
		s.strata.dsdBatches += in.dsdBatches
	}
}

func (r *Results) noteLoad() {
	if l, ok := loadAvg(); ok {
		r.Load = append(r.Load, l)
	}
}

func (r *Results) noteMosquittoDB(path string) {
	if fi, err := os.Stat(path); err == nil {
		r.MosquittoDB = fi.Size()
	}
}

// loadAvg is the 1-minute load average from /proc/loadavg.
func loadAvg() (float64, bool) {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0, false
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0, false
	}
	v, err := strconv.ParseFloat(f[0], 64)
	return v, err == nil
}

// Env is the machine and the versions.
type Env struct {
	Date      string
	CPUs      int
	CPUModel  string
	MemGiB    float64
	GoVersion string
	Commit    string
	Mosquitto string
}

// Summary is one line for the log.
func (e Env) Summary() string {
	return fmt.Sprintf("%d × %s, %.0f GiB, %s, Strata %s, %s", e.CPUs, e.CPUModel, e.MemGiB, e.GoVersion, e.Commit, e.Mosquitto)
}

func probeEnv(ctx context.Context, cfg Config) Env {
	e := Env{Date: time.Now().UTC().Format("2006-01-02 15:04 MST"), CPUs: runtime.NumCPU(), GoVersion: runtime.Version(),
		CPUModel: "unknown CPU", Commit: "unknown commit", Mosquitto: mosquittoVersion(ctx, cfg.Mosquitto)}
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				e.CPUModel = strings.TrimSpace(v)
				break
			}
		}
		f.Close()
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if f := strings.Fields(line); len(f) >= 2 && f[0] == "MemTotal:" {
				kb, _ := strconv.ParseFloat(f[1], 64)
				e.MemGiB = kb / (1 << 20)
			}
		}
	}
	e.Commit = cfg.StrataVersion
	if e.Commit == "" {
		e.Commit = commitOf(ctx, filepath.Join(cfg.Bin, "dsd"))
	}
	return e
}

// commitOf is the commit a Go binary was built from, as the go command
// recorded it (vcs.revision, vcs.modified), or else the working tree's
// (built with -buildvcs=false, the binary was most likely built from it).
func commitOf(ctx context.Context, bin string) string {
	var rev, modified string
	if bi, err := buildinfo.ReadFile(bin); err == nil {
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				modified = s.Value
			}
		}
	}
	if rev == "" {
		out, err := exec.CommandContext(ctx, "git", "rev-parse", "HEAD").Output()
		if err != nil {
			return "unknown commit"
		}
		rev = strings.TrimSpace(string(out))
		if st, err := exec.CommandContext(ctx, "git", "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(st) > 0 {
			modified = "true"
		}
	}
	if len(rev) > 7 {
		rev = rev[:7]
	}
	if modified == "true" {
		rev += " with uncommitted changes"
	}
	return rev
}

// row is one line of the table: a metric with both systems' figures.
type row struct {
	scenario, metric string
	cells            [2]string // Strata, mosquitto
	ratio            string
}

// rows builds the table: per metric the median of the runs, with the range
// when there are several, and the ratio Strata ÷ mosquitto of the medians.
// Each scenario ends with the CPU the servers used.
func (r *Results) rows() []row {
	var out []row
	for _, s := range r.Scenarios {
		for i, m := range s.sc.metrics {
			rw := cells(m.label(), m.Unit, s.values["strata"], s.values["mosquitto"], i)
			if i == 0 {
				rw.scenario = s.Title
			}
			out = append(out, rw)
		}
		if measured(s.cpu) {
			out = append(out, cells("server CPU (cores)", "cores", [][]float64{s.cpu["strata"]}, [][]float64{s.cpu["mosquitto"]}, 0))
		}
	}
	return out
}

// measured reports whether every CPU figure was measured.
func measured(m map[string][]float64) bool {
	for _, v := range m {
		if slices.Min(v) < 0 {
			return false
		}
	}
	return len(m) > 0
}

func cells(label, unit string, strata, mosq [][]float64, i int) row {
	rw := row{metric: label, ratio: "–"}
	var med [2]float64
	var have [2]bool
	for k, vals := range [][][]float64{strata, mosq} {
		if len(vals) <= i || len(vals[i]) == 0 {
			rw.cells[k] = "–"
			continue
		}
		med[k], have[k] = median(vals[i]), true
		rw.cells[k] = formatValue(med[k], unit)
		if len(vals[i]) > 1 {
			rw.cells[k] += " (" + formatValue(slices.Min(vals[i]), unit) + "–" + formatValue(slices.Max(vals[i]), unit) + ")"
		}
	}
	if have[0] && have[1] && med[1] != 0 {
		rw.ratio = fmt.Sprintf("%.2f", med[0]/med[1])
	}
	return rw
}

// otherCPU is the range of cores other processes used during the runs.
func (r *Results) otherCPU() (lo, hi float64, ok bool) {
	lo = math.Inf(1)
	for _, s := range r.Scenarios {
		for _, v := range s.other {
			for _, x := range v {
				if x >= 0 {
					lo, hi, ok = min(lo, x), max(hi, x), true
				}
			}
		}
	}
	return lo, hi, ok
}

// machineLine describes the load on the machine during the run.
func (r *Results) machineLine() string {
	s := "load average (1 min) " + r.loadRange()
	if lo, hi, ok := r.otherCPU(); ok {
		s += fmt.Sprintf("; other processes used %.2f–%.2f cores during the measurements", lo, hi)
	}
	return s
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// formatValue prints a figure with its unit: rates with thousands
// separators, milliseconds with 2–3 significant digits.
func formatValue(v float64, unit string) string {
	switch unit {
	case "msgs/s":
		return numfmt.Thousands(int64(math.Round(v)))
	case "%":
		return fmt.Sprintf("%.0f %%", v)
	case "s":
		return fmt.Sprintf("%.2f s", v)
	case "cores":
		return fmt.Sprintf("%.2f", v)
	default: // ms
		switch {
		case v >= 100:
			return numfmt.Thousands(int64(math.Round(v)))
		case v >= 10:
			return fmt.Sprintf("%.1f", v)
		default:
			return fmt.Sprintf("%.2f", v)
		}
	}
}

// loadRange is "min–max" of the sampled load averages.
func (r *Results) loadRange() string {
	if len(r.Load) == 0 {
		return "unknown"
	}
	return fmt.Sprintf("%.2f–%.2f", slices.Min(r.Load), slices.Max(r.Load))
}

// writeText prints the table for a terminal.
func (r *Results) writeText(w io.Writer) error {
	rows := r.rows()
	wS, wM, wA, wB := len("scenario / metric"), 0, len("Strata"), len("mosquitto")
	for _, rw := range rows {
		wM = max(wM, len(rw.metric)+2)
		wA = max(wA, len([]rune(rw.cells[0])))
		wB = max(wB, len([]rune(rw.cells[1])))
	}
	wS = max(wS, wM)
	var b strings.Builder
	fmt.Fprintf(&b, "\n%-*s  %*s  %*s  %s\n", wS, "scenario / metric", wA, "Strata", wB, "mosquitto", "Strata ÷ mosquitto")
	for _, rw := range rows {
		if rw.scenario != "" {
			fmt.Fprintf(&b, "%s\n", rw.scenario)
		}
		fmt.Fprintf(&b, "  %-*s  %*s  %*s  %s\n", wS-2, rw.metric, wA, rw.cells[0], wB, rw.cells[1], rw.ratio)
	}
	first := true
	for _, s := range r.Scenarios {
		if s.strata == nil {
			continue
		}
		if first {
			fmt.Fprintf(&b, "\nStrata's counters (summed over the runs): %s\n", strings.Join(internalsHeader, " | "))
			first = false
		}
		fmt.Fprintf(&b, "  %-8s %s\n", s.sc.Name, strings.Join(s.strata.cells(), " | "))
	}
	fmt.Fprintf(&b, "\n%s; %s\n", r.machineLine(), r.Env.Summary())
	for _, s := range r.Scenarios {
		for _, p := range s.Problems {
			fmt.Fprintf(&b, "note: %s: %s\n", s.sc.Name, p)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// writeMarkdown writes the table with the method: machine, versions,
// configurations and the exact mqttload flags.
func (r *Results) writeMarkdown(w io.Writer, cfg Config) error {
	var b strings.Builder
	e := r.Env
	fmt.Fprintf(&b, "<!-- written by tools/benchcmp (make bench); %s -->\n\n", e.Date)
	fmt.Fprintf(&b, "Machine: %d × %s, %.0f GiB RAM; %s.  \n", e.CPUs, e.CPUModel, e.MemGiB, r.machineLine())
	fmt.Fprintf(&b, "Versions: Strata %s built with %s; %s.  \n", e.Commit, e.GoVersion, e.Mosquitto)
	fmt.Fprintf(&b, "Runs per scenario and system: %d (median, range in brackets); 64-byte payloads, MQTT 5.0, paho.golang publishers, mqttrec subscribers, all on 127.0.0.1.\n\n", cfg.Runs)
	for _, s := range r.Systems {
		fmt.Fprintf(&b, "- %s (%s): %s\n", s.Name, s.Version, strings.Join(s.Notes, "; "))
	}
	b.WriteString("\n| scenario | metric | Strata | mosquitto | Strata ÷ mosquitto |\n| --- | --- | ---: | ---: | ---: |\n")
	for _, rw := range r.rows() {
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s |\n", rw.scenario, rw.metric, rw.cells[0], rw.cells[1], rw.ratio)
	}
	first := true
	for _, s := range r.Scenarios {
		if s.strata == nil {
			continue
		}
		if first {
			b.WriteString("\nStrata's own counters during the runs (gateway and dsd `/metrics`, summed over the runs):\n\n")
			fmt.Fprintf(&b, "| scenario | %s |\n|%s\n", strings.Join(internalsHeader, " | "), strings.Repeat(" ---: |", len(internalsHeader)+1))
			first = false
		}
		fmt.Fprintf(&b, "| %s | %s |\n", s.sc.Name, strings.Join(s.strata.cells(), " | "))
	}
	b.WriteString("\nmqttload flags per scenario (plus `--addr <system> --json --progress 0`):\n\n")
	for _, s := range r.Scenarios {
		if s.sc.run != nil {
			fmt.Fprintf(&b, "- `%s`: %s\n", s.sc.Name, s.sc.how)
			continue
		}
		fmt.Fprintf(&b, "- `%s`: `mqttload %s`\n", s.sc.Name, strings.Join(s.Args, " "))
	}
	var notes []string
	for _, s := range r.Scenarios {
		for _, p := range s.Problems {
			notes = append(notes, fmt.Sprintf("- %s: %s\n", s.sc.Name, p))
		}
	}
	if r.MosquittoDB >= 0 {
		notes = append(notes, fmt.Sprintf("- mosquitto wrote its persistence snapshot (mosquitto.db, %s bytes) when it was stopped after the last scenario.\n", numfmt.Thousands(r.MosquittoDB)))
	}
	if len(notes) > 0 {
		b.WriteString("\nNotes:\n\n")
		for _, n := range notes {
			b.WriteString(n)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// writeResults prints the table and, with --out, writes the Markdown file.
func writeResults(stdout io.Writer, cfg Config, r *Results) error {
	if err := r.writeText(stdout); err != nil {
		return err
	}
	if cfg.Out == "" {
		return nil
	}
	f, err := os.Create(cfg.Out)
	if err != nil {
		return err
	}
	if err := r.writeMarkdown(f, cfg); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "results written to %s\n", cfg.Out)
	return nil
}
