package config

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/pushdeploy/pushdeploy/fleet"
)

// DefaultReconcileInterval is how often the agent asks each app's remote where its branch
// points, to catch up with a push it missed.
const DefaultReconcileInterval = 3 * time.Minute

// Fleet paces an app's deploys across the hosts of an environment (apps.<app>.fleet); it
// needs the etcd section, through which the hosts coordinate.
type Fleet struct {
	// MaxParallel is how many hosts deploy at once: a count (2) or a percentage of the
	// environment's live hosts that run the app ("25%"), rounded up. Default 1.
	MaxParallel string `yaml:"max_parallel"`
	// CanaryHosts deploy a commit first; the other hosts start only when that many have
	// deployed it successfully. Default 0.
	CanaryHosts int `yaml:"canary_hosts"`
	// HaltOnFailure: a commit that fails on a host (after its own revert) is not started by
	// any other host until a later push or `pushdeploy fleet resume`. Default true.
	HaltOnFailure *bool `yaml:"halt_on_failure"`
}

// Policy is the fleet package's form of f; max_parallel was validated.
func (f *Fleet) Policy() *fleet.Policy {
	p := &fleet.Policy{MaxParallel: 1, Canary: f.CanaryHosts, HaltOnFailure: f.HaltOnFailure == nil || *f.HaltOnFailure}
	if pct, ok := strings.CutSuffix(f.MaxParallel, "%"); ok {
		p.MaxPercent, _ = strconv.ParseFloat(pct, 64)
	} else if n, err := strconv.Atoi(f.MaxParallel); err == nil {
		p.MaxParallel = n
	}
	return p
}

// FleetStore is the fleet package's configuration of the etcd section.
func (e *Etcd) FleetStore() fleet.Config {
	return fleet.Config{Conn: e.Renv().Config, Prefix: e.FleetPrefix, LeaseTTL: e.LeaseTTL}
}

func (c *Config) setFleetDefaults() {
	if c.ReconcileInterval == 0 {
		c.ReconcileInterval = DefaultReconcileInterval
	}
	if e := c.Etcd; e != nil {
		if e.FleetPrefix == "" {
			e.FleetPrefix = fleet.DefaultPrefix
		}
		if e.LeaseTTL == 0 {
			e.LeaseTTL = fleet.DefaultLeaseTTL
		}
	}
	for _, a := range c.Apps {
		if a != nil && a.Fleet != nil && a.Fleet.MaxParallel == "" {
			a.Fleet.MaxParallel = "1"
		}
	}
}

func (c *Config) validateFleet() []error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: "+format, append([]any{field}, args...)...))
	}
	if c.ReconcileInterval < 0 {
		bad("reconcile_interval", "must be positive, got %s", c.ReconcileInterval)
	}
	if e := c.Etcd; e != nil {
		if !strings.HasPrefix(e.FleetPrefix, "/") || !strings.HasSuffix(e.FleetPrefix, "/") {
			bad("etcd.fleet_prefix", "must start and end with /, got %q", e.FleetPrefix)
		} else if e.FleetPrefix == e.Prefix {
			bad("etcd.fleet_prefix", "must differ from etcd.prefix (%s): configuration documents live there", e.Prefix)
		}
		if e.LeaseTTL < fleet.MinLeaseTTL {
			bad("etcd.lease_ttl", "must be at least %s (etcd's shortest lease), got %s", fleet.MinLeaseTTL, e.LeaseTTL)
		}
	}
	for name, a := range c.Apps {
		if a == nil || a.Fleet == nil {
			continue
		}
		field := "apps." + name + ".fleet"
		if c.Etcd == nil {
			bad(field, "needs an etcd section: the hosts coordinate through etcd")
		}
		f := a.Fleet
		if pct, ok := strings.CutSuffix(f.MaxParallel, "%"); ok {
			if v, err := strconv.ParseFloat(pct, 64); err != nil || v <= 0 || v > 100 {
				bad(field+".max_parallel", "must be a percentage in (0, 100], got %q", f.MaxParallel)
			}
		} else if n, err := strconv.Atoi(f.MaxParallel); err != nil || n < 1 {
			bad(field+".max_parallel", "must be a count of at least 1 or a percentage such as \"25%%\", got %q", f.MaxParallel)
		}
		if f.CanaryHosts < 0 {
			bad(field+".canary_hosts", "must be 0 or more, got %d", f.CanaryHosts)
		}
	}
	return errs
}
