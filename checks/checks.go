// Package checks implements the checks a rollout passes through between
// stages (rollout.Checker): a PromQL query against a Prometheus server with
// a condition on its result, an HTTP GET that must answer 2xx, and a local
// command that must exit 0. It is the only package that imports the
// Prometheus API client.
package checks

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"os/exec"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/api"
	v1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"

	"github.com/rolloutbot/rolloutbot/rollout"
)

// Spec is one check as configured (rollout.checks).
type Spec struct {
	Name string `yaml:"name"`
	// Kind is prometheus, http or command.
	Kind string `yaml:"kind"`
	// Server is the Prometheus server's base URL, e.g. http://prometheus:9090.
	Server string `yaml:"server"`
	// Query is PromQL; {version} and {stage} are replaced by the rollout's
	// version and the percent of the stage that just ended.
	Query string `yaml:"query"`
	// Condition every sample of the query's result must meet, e.g. "< 0.01".
	Condition string `yaml:"condition"`
	// URL is what the http check GETs; {version} and {stage} are replaced.
	URL string `yaml:"url"`
	// Command is run locally with /bin/sh; {version} is replaced by the
	// validated version in single quotes, {stage} by the percent.
	Command string `yaml:"command"`
	// Timeout bounds one run of the check. Default: 10s.
	Timeout time.Duration `yaml:"timeout"`
	// OnError is what an inconclusive result does: halt (the default: fail
	// closed) or continue.
	OnError string `yaml:"on_error"`
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$`)

// Validate names the field that is wrong; field is where the spec sits in the
// configuration, e.g. "rollout.checks[0]".
func (s Spec) Validate(field string) error {
	if !nameRE.MatchString(s.Name) {
		return fmt.Errorf("%s.name: %q must be letters, digits and _ . - (at most 63)", field, s.Name)
	}
	field = fmt.Sprintf("%s (%s)", field, s.Name)
	switch s.Kind {
	case "prometheus":
		if u, err := url.Parse(s.Server); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("%s.server: %q is not an http(s) URL of a Prometheus server", field, s.Server)
		}
		if strings.TrimSpace(s.Query) == "" {
			return fmt.Errorf("%s.query: empty", field)
		}
		if _, err := ParseCondition(s.Condition); err != nil {
			return fmt.Errorf("%s.condition: %w", field, err)
		}
	case "http":
		if u, err := url.Parse(s.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("%s.url: %q is not an http(s) URL", field, s.URL)
		}
	case "command":
		if strings.TrimSpace(s.Command) == "" {
			return fmt.Errorf("%s.command: empty", field)
		}
	default:
		return fmt.Errorf("%s.kind: %q is not prometheus, http or command", field, s.Kind)
	}
	if s.Timeout < 0 {
		return fmt.Errorf("%s.timeout: %s must not be negative", field, s.Timeout)
	}
	if s.OnError != "" && s.OnError != "halt" && s.OnError != "continue" {
		return fmt.Errorf("%s.on_error: %q is not halt or continue", field, s.OnError)
	}
	return nil
}

// New makes the rollout's checks from their specs, validated first. hc is
// the HTTP client of the http and prometheus checks (nil: a default one).
func New(specs []Spec, hc *http.Client) ([]rollout.Check, error) {
	if hc == nil {
		hc = &http.Client{}
	}
	seen := map[string]bool{}
	var out []rollout.Check
	for i, s := range specs {
		field := fmt.Sprintf("rollout.checks[%d]", i)
		if err := s.Validate(field); err != nil {
			return nil, err
		}
		if seen[s.Name] {
			return nil, fmt.Errorf("%s.name: %q is used twice", field, s.Name)
		}
		seen[s.Name] = true
		c := rollout.Check{Name: s.Name, ContinueOnError: s.OnError == "continue", Timeout: s.Timeout}
		switch s.Kind {
		case "prometheus":
			client, err := api.NewClient(api.Config{Address: s.Server, Client: hc})
			if err != nil {
				return nil, fmt.Errorf("%s.server: %w", field, err)
			}
			cond, _ := ParseCondition(s.Condition)
			c.Checker = &Prometheus{api: v1.NewAPI(client), query: s.Query, cond: cond}
			c.Description = fmt.Sprintf("prometheus: %s %s", s.Query, cond)
		case "http":
			c.Checker = &HTTP{client: hc, url: s.URL}
			c.Description = "http: GET " + s.URL + " answers 2xx"
		case "command":
			c.Checker = &Command{command: s.Command}
			c.Description = "command: " + s.Command + " exits 0"
		}
		out = append(out, c)
	}
	return out, nil
}

// Condition is a comparison a value must meet, e.g. "< 0.01".
type Condition struct {
	Op    string // <, <=, >, >=, ==, !=
	Value float64
}

var condRE = regexp.MustCompile(`^\s*(<=|>=|==|!=|<|>)\s*(\S+)\s*$`)

// ParseCondition reads "< 0.01", "== 0", ">= 99.5".
func ParseCondition(s string) (Condition, error) {
	m := condRE.FindStringSubmatch(s)
	if m == nil {
		return Condition{}, fmt.Errorf("%q is not a comparison such as \"< 0.01\" or \"== 0\"", s)
	}
	v, err := strconv.ParseFloat(m[2], 64)
	if err != nil || math.IsNaN(v) {
		return Condition{}, fmt.Errorf("%q: %q is not a number", s, m[2])
	}
	return Condition{Op: m[1], Value: v}, nil
}

// Holds reports whether v meets the condition; NaN never does.
func (c Condition) Holds(v float64) bool {
	switch c.Op {
	case "<":
		return v < c.Value
	case "<=":
		return v <= c.Value
	case ">":
		return v > c.Value
	case ">=":
		return v >= c.Value
	case "==":
		return v == c.Value
	case "!=":
		return v != c.Value && !math.IsNaN(v)
	}
	return false
}

// String is the condition as written in the configuration, e.g. "< 0.01".
func (c Condition) String() string { return c.Op + " " + strconv.FormatFloat(c.Value, 'g', -1, 64) }

// expand replaces {version} and {stage} in s. The version is validated
// before anything is done with it.
func expand(s string, t rollout.CheckTarget, quote func(string) string) (string, error) {
	if err := rollout.ValidateVersion(t.Version); err != nil {
		return "", err
	}
	return strings.NewReplacer("{version}", quote(t.Version), "{stage}", strconv.Itoa(t.Stage)).Replace(s), nil
}

func plain(s string) string { return s }

// Prometheus runs a PromQL query and compares every sample of its result
// with the condition. No sample at all is inconclusive: a query that finds
// no data has not shown the new version is fine.
type Prometheus struct {
	api   v1.API
	query string
	cond  Condition
}

// Check implements rollout.Checker.
func (p *Prometheus) Check(ctx context.Context, t rollout.CheckTarget) rollout.CheckResult {
	res := rollout.CheckResult{Want: p.cond.String()}
	q, err := expand(p.query, t, plain)
	if err != nil {
		res.Outcome, res.Err = rollout.CheckInconclusive, err.Error()
		return res
	}
	val, _, _, err := p.api.Query(ctx, q, time.Now())
	if err != nil {
		res.Outcome, res.Err = rollout.CheckInconclusive, "query: "+err.Error()
		return res
	}
	type sample struct {
		labels string
		v      float64
	}
	var samples []sample
	switch v := val.(type) {
	case *model.Scalar:
		samples = append(samples, sample{v: float64(v.Value)})
	case model.Vector:
		for _, s := range v {
			samples = append(samples, sample{labels: s.Metric.String(), v: float64(s.Value)})
		}
	default:
		res.Outcome, res.Err = rollout.CheckInconclusive, fmt.Sprintf("the query answered a %s, not a number or an instant vector", val.Type())
		return res
	}
	if len(samples) == 0 {
		res.Outcome, res.Err = rollout.CheckInconclusive, "no data: the query returned no sample"
		return res
	}
	sort.SliceStable(samples, func(i, j int) bool { return samples[i].labels < samples[j].labels })
	res.Outcome = rollout.CheckPass
	shown := samples[0]
	for _, s := range samples {
		if !p.cond.Holds(s.v) {
			res.Outcome, shown = rollout.CheckFail, s
			break
		}
	}
	res.Value = strconv.FormatFloat(shown.v, 'g', 6, 64)
	if len(samples) > 1 && shown.labels != "" {
		res.Value += " for " + shown.labels
	}
	return res
}

// HTTP GETs a URL that must answer 2xx within the check's timeout.
type HTTP struct {
	client *http.Client
	url    string
}

// Check implements rollout.Checker.
func (h *HTTP) Check(ctx context.Context, t rollout.CheckTarget) rollout.CheckResult {
	res := rollout.CheckResult{Want: "HTTP 2xx"}
	u, err := expand(h.url, t, url.PathEscape)
	if err != nil {
		res.Outcome, res.Err = rollout.CheckInconclusive, err.Error()
		return res
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		res.Outcome, res.Err = rollout.CheckInconclusive, err.Error()
		return res
	}
	resp, err := h.client.Do(req)
	if err != nil {
		res.Outcome, res.Err = rollout.CheckInconclusive, "GET: "+err.Error()
		return res
	}
	_ = resp.Body.Close()
	res.Value = resp.Status
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		res.Outcome = rollout.CheckPass
	} else {
		res.Outcome = rollout.CheckFail
	}
	return res
}

// Command runs a local command with /bin/sh that must exit 0.
type Command struct {
	command string
}

// Check implements rollout.Checker.
func (c *Command) Check(ctx context.Context, t rollout.CheckTarget) rollout.CheckResult {
	res := rollout.CheckResult{Want: "exit 0"}
	cmd, err := expand(c.command, t, func(v string) string { return "'" + v + "'" })
	if err != nil {
		res.Outcome, res.Err = rollout.CheckInconclusive, err.Error()
		return res
	}
	var out bytes.Buffer
	ex := exec.CommandContext(ctx, "/bin/sh", "-c", cmd)
	ex.Stdout, ex.Stderr = &out, &out
	ex.WaitDelay = time.Second
	err = ex.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
		res.Outcome, res.Value = rollout.CheckPass, "exit 0"
	case ctx.Err() != nil:
		res.Outcome, res.Err = rollout.CheckInconclusive, "timed out"
	case errors.As(err, &exit):
		res.Outcome, res.Value = rollout.CheckFail, fmt.Sprintf("exit %d", exit.ExitCode())
		if tail := lastLine(out.String()); tail != "" {
			res.Value += ": " + tail
		}
	default:
		res.Outcome, res.Err = rollout.CheckInconclusive, err.Error()
	}
	return res
}

// lastLine is the last non-empty line of s, cut to 200 bytes.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	l := strings.TrimSpace(lines[len(lines)-1])
	if len(l) > 200 {
		l = l[:200] + "…"
	}
	return l
}
