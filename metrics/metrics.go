// Package metrics exposes rolloutbot's Prometheus metrics: rollouts and
// rollbacks by outcome, hosts by status, host update durations, SSH errors,
// waits, lease lapses, and Slack API calls and rate limits. It hears the
// engine as a rollout.Notifier and the Slack client through an
// http.RoundTripper; it is the only package that imports the Prometheus
// client.
package metrics

import (
	"net/http"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/rolloutbot/rolloutbot/rollout"
)

// Metrics holds the collectors, in a registry of its own (no globals).
type Metrics struct {
	reg        *prometheus.Registry
	rollouts   *prometheus.CounterVec
	hosts      *prometheus.CounterVec
	rollbacks  *prometheus.CounterVec
	undoHosts  *prometheus.CounterVec
	duration   *prometheus.HistogramVec
	sshErrors  *prometheus.CounterVec
	inFlight   prometheus.Gauge
	active     prometheus.Gauge
	slackCalls *prometheus.CounterVec
	slack429   *prometheus.CounterVec
	waited     *prometheus.CounterVec
	waiting    *prometheus.GaugeVec
	lapses     prometheus.Counter
}

var _ rollout.Notifier = (*Metrics)(nil)

// New registers the collectors.
func New() *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		rollouts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rolloutbot_rollouts_total", Help: "Rollouts that ended, by outcome (completed, halted, failed); their rollbacks are counted in rolloutbot_rollbacks_total.",
		}, []string{"outcome"}),
		hosts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rolloutbot_hosts_total", Help: "Host updates that ended, by status.",
		}, []string{"status"}),
		rollbacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rolloutbot_rollbacks_total", Help: "Rollbacks of a rollout that ended, by outcome (rolled_back, halted, failed).",
		}, []string{"outcome"}),
		undoHosts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rolloutbot_rollback_hosts_total", Help: "Hosts whose part of a rollback ended, by status (restored, failed, left, not_needed).",
		}, []string{"status"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "rolloutbot_host_update_duration_seconds", Help: "Time from a host's first step to its result, by status and the step it ended in.",
			Buckets: prometheus.ExponentialBuckets(0.05, 2, 14),
		}, []string{"status", "step"}),
		sshErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rolloutbot_ssh_errors_total", Help: "Hosts that could not be reached or verified over SSH, by step.",
		}, []string{"step"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "rolloutbot_hosts_in_flight", Help: "Hosts being updated now.",
		}),
		active: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "rolloutbot_rollout_active", Help: "1 while this process drives a rollout.",
		}),
		slackCalls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rolloutbot_slack_api_calls_total", Help: "Slack Web API calls, by method and HTTP status.",
		}, []string{"method", "code"}),
		slack429: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rolloutbot_slack_rate_limited_total", Help: "Slack Web API calls answered 429, by method.",
		}, []string{"method"}),
		waited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rolloutbot_rollout_wait_seconds_total", Help: "Time rollouts spent waiting, by reason (frozen: a freeze; window: outside the rollout windows), counted as each wait ends.",
		}, []string{"reason"}),
		waiting: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "rolloutbot_rollout_waiting", Help: "1 while the rollout this process drives waits, by reason (frozen, window).",
		}, []string{"reason"}),
		lapses: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "rolloutbot_lease_lapses_total", Help: "Times the driver in this process let its lease run out (the store slow or away, the process paused): no host starts until the store renews it, or the driver stops if another process took over.",
		}),
	}
	m.reg.MustRegister(m.waited, m.waiting, m.lapses)
	m.reg.MustRegister(m.rollouts, m.hosts, m.rollbacks, m.undoHosts, m.duration, m.sshErrors, m.inFlight, m.active, m.slackCalls, m.slack429,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Handler serves /metrics.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// Notify implements rollout.Notifier.
func (m *Metrics) Notify(ev rollout.Event) {
	switch ev.Kind {
	case rollout.EventStarted:
		m.active.Set(1)
	case rollout.EventHostStarted:
		m.inFlight.Inc()
	case rollout.EventHostDone:
		m.inFlight.Dec()
		h := ev.Host
		if ev.Progress.Rollout.Phase == rollout.PhaseRollingBack {
			m.undoHosts.WithLabelValues(string(h.Undo.Status)).Inc()
			return
		}
		m.hosts.WithLabelValues(string(h.Status)).Inc()
		if !h.StartedAt.IsZero() && !h.FinishedAt.IsZero() {
			m.duration.WithLabelValues(string(h.Status), string(h.Step)).Observe(h.FinishedAt.Sub(h.StartedAt).Seconds())
		}
		if h.Status == rollout.StatusFailed && (h.Step == rollout.StepConnect || h.Step == rollout.StepVersion) {
			m.sshErrors.WithLabelValues(string(h.Step)).Inc()
		}
	case rollout.EventWaiting:
		m.waiting.WithLabelValues(string(ev.Progress.Rollout.Phase)).Set(1)
	case rollout.EventWaitOver:
		reason := string(ev.Progress.Rollout.Phase)
		m.waiting.WithLabelValues(reason).Set(0)
		m.waited.WithLabelValues(reason).Add(ev.Pause.Seconds())
	case rollout.EventLeaseRanOut:
		m.lapses.Inc()
	case rollout.EventStopped:
		// Another process, or the next start, drives it now.
		m.active.Set(0)
		m.inFlight.Set(0)
		m.waiting.Reset()
	case rollout.EventEnded:
		m.active.Set(0)
		m.inFlight.Set(0)
		r := ev.Progress.Rollout
		if r.Undo != nil {
			m.rollbacks.WithLabelValues(string(r.Phase)).Inc()
			return
		}
		m.rollouts.WithLabelValues(string(r.Phase)).Inc()
	}
}

// RoundTripper counts the Slack Web API calls made through next.
func (m *Metrics) RoundTripper(next http.RoundTripper) http.RoundTripper {
	if next == nil {
		next = http.DefaultTransport
	}
	return roundTripper(func(r *http.Request) (*http.Response, error) {
		resp, err := next.RoundTrip(r)
		method := r.URL.Path[strings.LastIndexByte(r.URL.Path, '/')+1:]
		if strings.Contains(r.URL.Path, "/hooks/") || strings.Contains(r.URL.Path, "/commands/") {
			method = "response_url"
		}
		code := "error"
		if err == nil {
			code = http.StatusText(resp.StatusCode)
			if resp.StatusCode == http.StatusTooManyRequests {
				m.slack429.WithLabelValues(method).Inc()
			}
		}
		m.slackCalls.WithLabelValues(method, code).Inc()
		return resp, err
	})
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
