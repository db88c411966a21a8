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
	etcd     *prometheus.CounterVec
	ops      *opsMetrics // registered by New
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
		etcd: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pushdeploy_etcd_requests_total",
			Help: "Round trips to etcd, by operation (get, txn, watch…).",
		}, []string{"op"}),
	}
	m.reg.MustRegister(m.webhooks, m.deploys, m.duration, m.etcd,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}
