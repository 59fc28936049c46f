package receiver

import (
	"github.com/outpost-iot/outpost/receiver/store"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// metrics are the receiver's Prometheus metrics, in a registry of their
// own so that several servers (tests) do not collide.
type metrics struct {
	reg       *prometheus.Registry
	readings  *prometheus.CounterVec
	rejected  *prometheus.CounterVec
	latency   *prometheus.HistogramVec
	storeErrs *prometheus.CounterVec
}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		readings: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outpost_receiver_readings_total",
			Help: "Readings received in committed batches, by transport and result (accepted, duplicate, conflict, corrected; corrected ones are also accepted).",
		}, []string{"transport", "result"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outpost_receiver_batches_rejected_total",
			Help: "Batches refused, by transport and reason (the HTTP status class of the answer).",
		}, []string{"transport", "reason"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "outpost_receiver_batch_duration_seconds",
			Help:    "Time from receiving a batch to committing it.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
		}, []string{"transport"}),
		storeErrs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outpost_receiver_store_errors_total",
			Help: "Database operations that failed, by operation.",
		}, []string{"op"}),
	}
	m.reg.MustRegister(m.readings, m.rejected, m.latency, m.storeErrs,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

func (m *metrics) committed(transport string, r store.Result) {
	m.readings.WithLabelValues(transport, "accepted").Add(float64(r.Accepted))
	m.readings.WithLabelValues(transport, "duplicate").Add(float64(r.Duplicates))
	m.readings.WithLabelValues(transport, "conflict").Add(float64(r.Conflicts))
	m.readings.WithLabelValues(transport, "corrected").Add(float64(r.Corrected))
}
