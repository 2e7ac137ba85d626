// Package tap is a small Test Anything Protocol (version 13) producer.
//
// It is written for runv's conformance harness and is API-compatible with
// the subset of github.com/mndrix/tap-go that the opencontainers
// runtime-tools validation suite uses (that package is not in Debian).
// build.sh installs it into the build GOPATH under the import path
// github.com/mndrix/tap-go.
package tap

import (
	"fmt"
	"io"
	"os"
	"strings"

	yaml "gopkg.in/yaml.v2"
)

// T is a TAP producer. Copies made by Todo share the test counter.
type T struct {
	nextTestNumber *int

	// TODO marks the following results as TODO (see Todo).
	TODO bool

	// Writer receives the TAP stream; os.Stdout by default.
	Writer io.Writer
}

// New returns a producer writing to os.Stdout, numbering tests from 1.
func New() *T {
	n := 1
	return &T{nextTestNumber: &n, Writer: os.Stdout}
}

func (t *T) printf(format string, a ...interface{}) {
	fmt.Fprintf(t.Writer, format, a...)
}

// Header prints the TAP version line and, when testCount > 0, the plan.
func (t *T) Header(testCount int) {
	t.printf("TAP version 13\n")
	if testCount > 0 {
		t.printf("1..%d\n", testCount)
	}
}

// Ok reports one test result.
func (t *T) Ok(test bool, description string) {
	ok := "ok"
	if !test {
		ok = "not ok"
	}
	description = escapeNewlines(description)
	switch {
	case t.TODO:
		t.printf("%s %d # TODO %s\n", ok, *t.nextTestNumber, description)
	case description == "":
		t.printf("%s %d\n", ok, *t.nextTestNumber)
	default:
		t.printf("%s %d - %s\n", ok, *t.nextTestNumber, description)
	}
	*t.nextTestNumber++
}

// Fail reports a failed test.
func (t *T) Fail(description string) { t.Ok(false, description) }

// Pass reports a passed test.
func (t *T) Pass(description string) { t.Ok(true, description) }

// Count returns the number of results reported so far.
func (t *T) Count() int { return *t.nextTestNumber - 1 }

// AutoPlan prints a plan for the results reported so far.
func (t *T) AutoPlan() { t.printf("1..%d\n", t.Count()) }

// Todo returns a copy of t whose results carry the TODO directive.
func (t *T) Todo() *T {
	c := *t
	c.TODO = true
	return &c
}

// Skip reports count skipped tests.
func (t *T) Skip(count int, description string) {
	for i := 0; i < count; i++ {
		t.printf("ok %d # SKIP %s\n", *t.nextTestNumber, escapeNewlines(description))
		*t.nextTestNumber++
	}
}

// Diagnostic prints a comment line (multi-line messages stay comments).
func (t *T) Diagnostic(message string) {
	t.printf("# %s\n", escapeNewlines(message))
}

// Diagnosticf is Diagnostic with fmt.Sprintf formatting.
func (t *T) Diagnosticf(format string, a ...interface{}) {
	t.Diagnostic(fmt.Sprintf(format, a...))
}

// YAML prints message as an indented TAP 13 YAML diagnostic block.
func (t *T) YAML(message interface{}) error {
	b, err := yaml.Marshal(message)
	if err != nil {
		return err
	}
	t.printf("  ---\n")
	for _, line := range strings.Split(strings.TrimRight(string(b), "\n"), "\n") {
		t.printf("  %s\n", line)
	}
	t.printf("  ...\n")
	return nil
}

func escapeNewlines(s string) string {
	return strings.Replace(strings.TrimRight(s, "\n"), "\n", "\n# ", -1)
}
