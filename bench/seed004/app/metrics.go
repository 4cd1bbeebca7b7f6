package main

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc/status"
)

type metrics struct {
	registry *prometheus.Registry
	calls    *prometheus.CounterVec
	latency  *prometheus.HistogramVec
}

func newMetrics() *metrics {
	m := &metrics{
		registry: prometheus.NewRegistry(),
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "app_grpc_calls_total",
			Help: "gRPC calls by method and status code.",
		}, []string{"method", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "app_grpc_call_seconds",
			Help:    "gRPC call latency by method.",
			Buckets: prometheus.DefBuckets,
		}, []string{"method"}),
	}
	m.registry.MustRegister(m.calls, m.latency)
	return m
}

func (m *metrics) observe(method string, err error, d time.Duration) {
	m.calls.WithLabelValues(method, status.Code(err).String()).Inc()
	m.latency.WithLabelValues(method).Observe(d.Seconds())
}

func serveMetrics(addr string, m *metrics) error {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{}))
	return http.ListenAndServe(addr, mux)
}
