package agent

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pushdeploy/pushdeploy/state"
)

// opsMetrics are the metrics an operator alerts on: what runs, when it last deployed, what
// waits, what was reverted or halted.
type opsMetrics struct {
	lastSuccess *prometheus.GaugeVec
	reverted    *prometheus.CounterVec
	halted      *prometheus.CounterVec
	// fleetHalts counts this host's failures that halted a commit for the whole fleet
	// (apps.<app>.fleet.halt_on_failure): releaseSlot increments it.
	fleetHalts *prometheus.CounterVec
}

var (
	releaseInfoDesc = prometheus.NewDesc("pushdeploy_release_info",
		"The release each app runs: 1, with the commit in label sha.", []string{"app", "sha"}, nil)
	queueDepthDesc = prometheus.NewDesc("pushdeploy_queue_depth",
		"Deploys, restarts, rollbacks and configuration changes waiting in the app's queue (not the one running).", []string{"app"}, nil)
)

func newOpsMetrics(reg prometheus.Registerer, a *Agent) *opsMetrics {
	m := &opsMetrics{
		lastSuccess: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "pushdeploy_last_success_timestamp_seconds",
			Help: "When the app's last successful deploy, restart, rollback or configuration change ended (Unix time).",
		}, []string{"app"}),
		reverted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pushdeploy_rollouts_reverted_total",
			Help: "Rollouts that failed and were put back, by app and kind (deploy, rollback, config).",
		}, []string{"app", "kind"}),
		halted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pushdeploy_rollouts_halted_total",
			Help: "Rollouts that failed and halted where they were (auto_revert off), by app.",
		}, []string{"app"}),
		fleetHalts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pushdeploy_fleet_halts_total",
			Help: "Rollouts halted across the fleet by this host's coordinator, by app.",
		}, []string{"app"}),
	}
	reg.MustRegister(m.lastSuccess, m.reverted, m.halted, m.fleetHalts, queueCollector{a})
	return m
}

// queueCollector reads what runs and what waits when scraped: a readlink and a lock per app.
type queueCollector struct{ a *Agent }

func (c queueCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- releaseInfoDesc
	ch <- queueDepthDesc
}

func (c queueCollector) Collect(ch chan<- prometheus.Metric) {
	for _, name := range c.a.appNames() {
		if sha, err := c.a.store.Current(name); err == nil && sha != "" {
			ch <- prometheus.MustNewConstMetric(releaseInfoDesc, prometheus.GaugeValue, 1, name, sha)
		}
		ap := c.a.apps[name]
		ap.mu.Lock()
		n := 0
		if ap.pending != nil {
			n++
		}
		if ap.config != nil {
			n++
		}
		ap.mu.Unlock()
		ch <- prometheus.MustNewConstMetric(queueDepthDesc, prometheus.GaugeValue, float64(n), name)
	}
}

// loadLastSuccess sets each app's last success time from the history, at start.
func (a *Agent) loadLastSuccess() error {
	for _, name := range a.appNames() {
		hist, err := a.state.History(name, 0)
		if err != nil {
			return err
		}
		for _, d := range hist {
			if d.Status == state.StatusSucceeded {
				a.metrics.ops.lastSuccess.WithLabelValues(name).Set(float64(d.Finished.Unix()))
				break
			}
		}
	}
	return nil
}
