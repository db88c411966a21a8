package agent

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// metrics are the agent's Prometheus metrics, on a registry of its own (no global state), served
// at /metrics on the webhook listener.
type metrics struct {
	reg      *prometheus.Registry
	webhooks *prometheus.CounterVec
	deploys  *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		webhooks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pushdeploy_webhooks_total",
			Help: "Webhook deliveries answered, by app, HTTP code and outcome.",
		}, []string{"app", "code", "status"}),
		deploys: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pushdeploy_deploys_total",
			Help: "Deploys that reached a final status, by app and status.",
		}, []string{"app", "status"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "pushdeploy_deploy_duration_seconds",
			Help:    "Time from a deploy's start to its final status.",
			Buckets: prometheus.ExponentialBuckets(0.05, 2, 14),
		}, []string{"app", "status"}),
	}
	m.reg.MustRegister(m.webhooks, m.deploys, m.duration,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}
