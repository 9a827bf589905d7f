package conformance

import (
	"encoding/xml"
	"fmt"
	"os"
	"sort"
	"strings"
)

// Result is what happened to one spec.
type Result string

// The results of a spec that ran or was skipped at run time.
const (
	Passed  Result = "passed"
	Failed  Result = "failed"
	Skipped Result = "skipped"
)

// Spec is one spec of the report: its full name, its result, and for a
// failed or skipped spec the message (the failure, or why it skipped).
type Spec struct {
	Name    string
	Result  Result
	Message string
}

// junitSuites is the part of Ginkgo's JUnit report that is read here.
type junitSuites struct {
	Suites []struct {
		Cases []struct {
			Name    string `xml:"name,attr"`
			Status  string `xml:"status,attr"`
			Skipped *struct {
				Message string `xml:"message,attr"`
			} `xml:"skipped"`
			Failure *struct {
				Message string `xml:"message,attr"`
				Text    string `xml:",chardata"`
			} `xml:"failure"`
			Error *struct {
				Message string `xml:"message,attr"`
			} `xml:"error"`
		} `xml:"testcase"`
	} `xml:"testsuite"`
}

// ReadJUnit reads the specs of the e2e suite's JUnit report at path. Specs
// that the focus did not select (Ginkgo lists them as skipped with the bare
// message "skipped") and the suite's setup and teardown nodes
// ([SynchronizedBeforeSuite] …, which are not specs) are left out; a failed
// setup node counts as a failed spec, so that a broken run does not look
// clean. The specs come sorted by name.
func ReadJUnit(path string) ([]Spec, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read junit report: %w", err)
	}
	var r junitSuites
	if err := xml.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("parse junit report %s: %w", path, err)
	}
	var specs []Spec
	for _, s := range r.Suites {
		for _, c := range s.Cases {
			// Ginkgo names a spec "[It] <full text>"; the text is its name.
			sp := Spec{Name: strings.TrimPrefix(c.Name, "[It] ")}
			switch {
			case c.Failure != nil || c.Error != nil || (c.Status != "passed" && c.Status != "skipped" && c.Status != "pending"):
				sp.Result = Failed
				switch {
				case c.Failure != nil:
					// The suite's reporter leaves the attribute empty and
					// writes the failure as the element's text.
					sp.Message = c.Failure.Message
					if sp.Message == "" {
						sp.Message = strings.TrimPrefix(strings.TrimSpace(c.Failure.Text), "[FAILED] ")
						sp.Message = strings.TrimPrefix(sp.Message, "[PANICKED] ")
					}
				case c.Error != nil:
					sp.Message = c.Error.Message
				default:
					sp.Message = c.Status
				}
			case c.Skipped != nil || c.Status == "skipped" || c.Status == "pending":
				msg := ""
				if c.Skipped != nil {
					msg = c.Skipped.Message
				}
				if msg == "skipped" || msg == "pending" || msg == "" {
					continue // not selected
				}
				sp.Result, sp.Message = Skipped, strings.TrimPrefix(msg, "skipped - ")
			default:
				sp.Result = Passed
			}
			if strings.HasPrefix(c.Name, "[SynchronizedBeforeSuite]") || strings.HasPrefix(c.Name, "[SynchronizedAfterSuite]") ||
				strings.HasPrefix(c.Name, "[BeforeSuite]") || strings.HasPrefix(c.Name, "[AfterSuite]") ||
				strings.HasPrefix(c.Name, "[ReportAfterSuite]") || strings.HasPrefix(c.Name, "[ReportBeforeSuite]") {
				if sp.Result != Failed {
					continue
				}
			}
			specs = append(specs, sp)
		}
	}
	sort.Slice(specs, func(i, j int) bool { return specs[i].Name < specs[j].Name })
	return specs, nil
}

// Counts are the numbers of specs by result.
type Counts struct{ Passed, Failed, Skipped int }

// Count counts specs by result.
func Count(specs []Spec) Counts {
	var c Counts
	for _, s := range specs {
		switch s.Result {
		case Passed:
			c.Passed++
		case Failed:
			c.Failed++
		case Skipped:
			c.Skipped++
		}
	}
	return c
}

// Total is the number of specs counted.
func (c Counts) Total() int { return c.Passed + c.Failed + c.Skipped }

// String is "P passed, F failed, S skipped of T (X% passed)".
func (c Counts) String() string {
	pct := 0.0
	if c.Total() > 0 {
		pct = 100 * float64(c.Passed) / float64(c.Total())
	}
	return fmt.Sprintf("%d passed, %d failed, %d skipped of %d selected (%.1f%% passed)", c.Passed, c.Failed, c.Skipped, c.Total(), pct)
}
