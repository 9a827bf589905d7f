package conformance

import (
	"fmt"
	"os"
	"strings"
	"time"
)

// The markers around the generated part of kubelet/README.md.
const (
	tableBegin = "<!-- make conformance: results table begin (generated; edit test/conformance/causes.go) -->"
	tableEnd   = "<!-- make conformance: results table end -->"
)

// Run is the summary of one run that the table is headed with.
type Run struct {
	Counts   Counts
	Duration time.Duration
	Procs    int
	Version  string
	// Full is whether the run ran the whole selection (not --focus).
	Full bool
}

// Table is the Markdown of the results: the counts, then a row for every
// spec that did not pass, with its cause — the argued one of causes.go when
// one matches, else the first line of its failure or skip message.
func Table(run Run, specs []Spec) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s\n\nLast `make conformance` (e2e.test %s, %d ginkgo processes, %s): **%s**.\n\n",
		tableBegin, run.Version, run.Procs, run.Duration.Round(time.Second), run.Counts)
	b.WriteString("| Spec | Result | Cause |\n|---|---|---|\n")
	rows := 0
	for _, s := range specs {
		if s.Result == Passed {
			continue
		}
		rows++
		fmt.Fprintf(&b, "| %s | %s | %s |\n", cell(s.Name), s.Result, cell(Cause(s)))
	}
	if rows == 0 {
		b.WriteString("| (none) | | |\n")
	}
	b.WriteString("\n" + tableEnd + "\n")
	return b.String()
}

// Cause is why s did not pass: an argued cause of causes.go, or its message.
func Cause(s Spec) string {
	for _, c := range causes {
		if strings.Contains(s.Name, c.spec) {
			return c.cause
		}
	}
	msg := strings.TrimSpace(s.Message)
	if i := strings.IndexByte(msg, '\n'); i >= 0 {
		msg = msg[:i]
	}
	if len(msg) > 200 {
		msg = msg[:200] + "…"
	}
	if s.Result == Skipped {
		return "skipped by the suite: " + msg
	}
	return "not analysed yet: " + msg
}

// cell makes s fit in one Markdown table cell.
func cell(s string) string {
	s = strings.ReplaceAll(s, "\n", " ")
	return strings.ReplaceAll(s, "|", `\|`)
}

// UpdateReadme replaces the generated table in the Markdown file path (the
// part between the markers) by table, or appends a section "Conformance"
// holding it when the file has no markers yet.
func UpdateReadme(path, table string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("update %s: %w", path, err)
	}
	s := string(b)
	i, j := strings.Index(s, tableBegin), strings.Index(s, tableEnd)
	switch {
	case i >= 0 && j > i:
		s = s[:i] + table + strings.TrimPrefix(s[j+len(tableEnd):], "\n")
	case i < 0 && j < 0:
		s = strings.TrimRight(s, "\n") + "\n\n## Conformance\n\n`make conformance` runs the upstream e2e suite's " +
			"`[Conformance]` specs of `[sig-node]` and the ConfigMap, Secret, Projected, Downward API, EmptyDir and HostPath " +
			"volume specs of `[sig-storage]` (not `[Serial]`, not `[Disruptive]`) against a Feather node, the only schedulable " +
			"node of a harness cluster, and writes this table. Run it as root, alone on the host (its bridges, iptables chains and " +
			"pods are what other end-to-end tests' leak checks look for): `make conformance` (`PROCS=N` ginkgo processes, default 6); " +
			"`_output/bin/feather-conformance --focus REGEX` reruns some specs; `--report-only` rewrites the table from the last run. " +
			"The images the suite needs are built here: agnhost (built from the pinned module, with busybox standing in for upstream's " +
			"Alpine tools), busybox (Debian's busybox-static), nonewprivs (its program built from the pinned module, setuid in a busybox image) and pause; nginx is not (no static nginx here), and no selected spec uses it.\n\n" + table
	default:
		return fmt.Errorf("update %s: the results table's markers are broken (want %q before %q)", path, tableBegin, tableEnd)
	}
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		return fmt.Errorf("update %s: %w", path, err)
	}
	return nil
}
