package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/superfly/fly-go/flaps"
)

// runner holds the client and the running tally of step results.
type runner struct {
	ctx     context.Context
	client  *flaps.Client
	cfg     config
	okN     int
	failN   int
	skipN   int
	region  string // region of the launched machine, reused by volumes
	failing []string
}

// stepCtx bounds one API call.
func (r *runner) stepCtx(d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(r.ctx, d)
}

// report prints one line for a step and returns whether it passed.
func (r *runner) report(step string, err error) bool {
	if err != nil {
		r.failN++
		r.failing = append(r.failing, step)
		fmt.Printf("FAIL %s: %s\n", step, describe(err))
		return false
	}
	r.okN++
	fmt.Printf("ok   %s\n", step)
	return true
}

// skipf prints a skipped step (not counted as a failure).
func (r *runner) skipf(step, why string) {
	r.skipN++
	fmt.Printf("skip %s: %s\n", step, why)
}

func (r *runner) summary() int {
	fmt.Printf("\nsummary: %d ok, %d failed, %d skipped\n", r.okN, r.failN, r.skipN)
	if r.failN > 0 {
		fmt.Printf("failed steps: %s\n", strings.Join(r.failing, ", "))
		return 1
	}
	return 0
}

// describe renders an error with the HTTP status and body flaps captured.
func describe(err error) string {
	msg := oneLine(err.Error())
	var fe *flaps.FlapsError
	if errors.As(err, &fe) {
		body := oneLine(string(fe.ResponseBody))
		if len(body) > 1500 {
			body = body[:1500] + "…"
		}
		return fmt.Sprintf("%s [HTTP %d, body: %s]", msg, fe.ResponseStatusCode, body)
	}
	return msg
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// checks collects wrong or missing decoded fields for one step.
type checks []string

func (c *checks) add(format string, args ...any) {
	*c = append(*c, fmt.Sprintf(format, args...))
}

func (c *checks) nonEmpty(field, got string) {
	if got == "" {
		c.add("%s is empty", field)
	}
}

func (c *checks) equal(field string, got, want any) {
	if fmt.Sprint(got) != fmt.Sprint(want) {
		c.add("%s = %q, want %q", field, fmt.Sprint(got), fmt.Sprint(want))
	}
}

func (c *checks) oneOf(field, got string, want ...string) {
	for _, w := range want {
		if got == w {
			return
		}
	}
	c.add("%s = %q, want one of %v", field, got, want)
}

func (c checks) err() error {
	if len(c) == 0 {
		return nil
	}
	return errors.New("decoded response is wrong: " + strings.Join(c, "; "))
}

// verify reports a step whose call succeeded, judging its decoded fields.
func (r *runner) verify(step string, c checks) bool {
	return r.report(step, c.err())
}

func ptr[T any](v T) *T { return &v }
