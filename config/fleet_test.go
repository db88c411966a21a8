package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pushdeploy/pushdeploy/fleet"
)

func TestParse_fleet(t *testing.T) {
	dir := t.TempDir()
	secret := filepath.Join(dir, "secret")
	os.WriteFile(secret, []byte("s\n"), 0o600)
	doc := func(top, etcd, app string) string {
		s := "data_dir: " + dir + "\nenvironments: [production]\n" + top
		if etcd != "-" {
			s += "etcd:\n  endpoints: [\"http://127.0.0.1:2379\"]\n" + etcd
		}
		return s + "apps:\n  web:\n    repo: acme/web\n    remote: https://x/y.git\n    secret_file: " + secret + "\n" + app
	}
	tests := []struct {
		name, doc string
		want      *fleet.Policy // with wantErr ""
		wantErr   string
	}{
		{"count", doc("", "", "    fleet: {max_parallel: 2, canary_hosts: 1}\n"), &fleet.Policy{MaxParallel: 2, Canary: 1, HaltOnFailure: true}, ""},
		{"percent, no halt", doc("", "", "    fleet: {max_parallel: \"25%\", halt_on_failure: false}\n"), &fleet.Policy{MaxParallel: 1, MaxPercent: 25}, ""},
		{"defaults", doc("", "", "    fleet: {}\n"), &fleet.Policy{MaxParallel: 1, HaltOnFailure: true}, ""},
		{"without etcd", doc("", "-", "    fleet: {max_parallel: 2}\n"), nil, "apps.web.fleet: needs an etcd section"},
		{"zero", doc("", "", "    fleet: {max_parallel: 0}\n"), nil, "apps.web.fleet.max_parallel: must be a count of at least 1"},
		{"too many percent", doc("", "", "    fleet: {max_parallel: \"150%\"}\n"), nil, "apps.web.fleet.max_parallel: must be a percentage in (0, 100]"},
		{"negative canaries", doc("", "", "    fleet: {canary_hosts: -1}\n"), nil, "apps.web.fleet.canary_hosts: must be 0 or more"},
		{"negative interval", doc("reconcile_interval: -1s\n", "", ""), nil, "reconcile_interval: must be positive"},
		{"short lease", doc("", "  lease_ttl: 1s\n", ""), nil, "etcd.lease_ttl: must be at least 2s"},
		{"prefix clash", doc("", "  prefix: /p/\n  fleet_prefix: /p/\n", ""), nil, "etcd.fleet_prefix: must differ from etcd.prefix"},
		{"bad prefix", doc("", "  fleet_prefix: fleet\n", ""), nil, "etcd.fleet_prefix: must start and end with /"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Parse([]byte(tt.doc), Env{Hostname: "h"})
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got error %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := *cfg.Apps["web"].Fleet.Policy(); got != *tt.want {
				t.Errorf("policy: got %+v, want %+v", got, *tt.want)
			}
			if cfg.ReconcileInterval != DefaultReconcileInterval || cfg.Etcd.FleetPrefix != fleet.DefaultPrefix || cfg.Etcd.LeaseTTL != 10*time.Second {
				t.Errorf("defaults: interval %v, prefix %q, ttl %v", cfg.ReconcileInterval, cfg.Etcd.FleetPrefix, cfg.Etcd.LeaseTTL)
			}
		})
	}
}
