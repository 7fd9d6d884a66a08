// Package metrics holds the worker's Prometheus metrics, under the
// namespace "revoker": the request path counts results and attempts,
// confirmation (package worker/confirm) sets the unconfirmed gauge, and
// cmd/revoker serves them. Package worker imports this package, never the
// reverse.
package metrics

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/revoker/revoker/events"
)

// Metrics are the worker's counters and timings. cmd/ serves them; tests
// read them.
type Metrics struct {
	Results  *prometheus.CounterVec // revoker_results_total{outcome,code}; code is NoCode without an error
	Attempts *prometheus.CounterVec // revoker_attempts_total{status}
	Retries  prometheus.Counter     // revoker_retries_total
	InFlight prometheus.Gauge       // revoker_in_flight
	Duration prometheus.Histogram   // revoker_request_duration_seconds, stored to result stored
	Ready    prometheus.Gauge       // revoker_ready
	Pending  prometheus.Gauge       // revoker_consumer_pending
	Rate     prometheus.Gauge       // revoker_rate_limit_tokens_per_second (deletes/s in force, -1 unlimited; set by the worker)
	Ledger   prometheus.Histogram   // revoker_ledger_seconds, one ledger call
	// LedgerFill is revoker_ledger_fill_ratio: the ledger's bytes over its
	// limit, read with the consumer's state.
	LedgerFill prometheus.Gauge
	// Unconfirmed is revoker_unconfirmed_revocations: keys this process
	// revoked that a later check still found alive (listed by the account,
	// or a leaked key still accepted).
	Unconfirmed prometheus.Gauge
}

// New creates the worker's metrics and registers them with reg, if not
// nil.
func New(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Results: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "revoker", Name: "results_total",
			Help: "Results published, by outcome and error code.",
		}, []string{"outcome", "code"}),
		Attempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "revoker", Name: "attempts_total",
			Help: "Kalshi DELETE attempts, by HTTP status (\"error\" when no response).",
		}, []string{"status"}),
		Retries: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "revoker", Name: "retries_total",
			Help: "DELETE attempts that were retries after a transient failure.",
		}),
		InFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "revoker", Name: "in_flight",
			Help: "Requests being processed.",
		}),
		Duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "revoker", Name: "request_duration_seconds",
			Help:    "Time from a request being stored to its result being stored.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300, 900},
		}),
		Ready: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "revoker", Name: "ready",
			Help: "1 when connected, bound to the consumer and holding a usable credential.",
		}),
		Pending: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "revoker", Name: "consumer_pending",
			Help: "Requests waiting on the durable consumer, not yet delivered.",
		}),
		Ledger: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "revoker", Name: "ledger_seconds",
			Help:    "Time of one ledger call (a JetStream KV read or write).",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 5},
		}),
		LedgerFill: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "revoker", Name: "ledger_fill_ratio",
			Help: "How full the ledger bucket is: its bytes over its limit (0: no limit). Full, it takes no new request.",
		}),
		Unconfirmed: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "revoker", Name: "unconfirmed_revocations",
			Help: "Keys this process revoked that a check after the delete still found alive (listed, or a leaked key still accepted).",
		}),
		Rate: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "revoker", Name: "rate_limit_tokens_per_second",
			Help: "Deletes per second this process may send (-1: unlimited).",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.Results, m.Attempts, m.Retries, m.InFlight, m.Duration, m.Ready, m.Pending, m.Rate, m.Ledger, m.LedgerFill, m.Unconfirmed)
	}
	return m
}

// ObserveAttempt counts one DELETE attempt by its HTTP status (0: no
// answer).
func (m *Metrics) ObserveAttempt(status int) {
	label := "error"
	if status > 0 {
		label = strconv.Itoa(status)
	}
	m.Attempts.WithLabelValues(label).Inc()
}

// NoCode is the code label of revoker_results_total for the outcomes that
// carry no error code (revoked, already_revoked): an empty label would read
// as a missing one on dashboards.
const NoCode = "none"

// ObserveResult counts one stored result.
func (m *Metrics) ObserveResult(r *events.Result) {
	code := NoCode
	if r.Error != nil {
		code = string(r.Error.Code)
	}
	m.Results.WithLabelValues(string(r.Outcome), code).Inc()
}
