package main

import (
	"strings"
	"testing"
	"time"

	"github.com/pushdeploy/pushdeploy/internal/testenv"
	"github.com/pushdeploy/pushdeploy/renv"
)

// The password startAuthEtcd gives the user "deployer", unusual enough to look for in
// what the commands print.
const deployerPassword = "pw-Hq5t9Wc3"

// startAuthEtcd starts an etcd where the user "deployer" may read and write the default
// prefix only.
func startAuthEtcd(t *testing.T) *testenv.Etcd {
	t.Helper()
	return testenv.StartEtcdAuth(t, "deployer", deployerPassword, renv.DefaultPrefix)
}

func TestEnvSettings_Auth(t *testing.T) {
	etcd := startAuthEtcd(t)
	base := []string{"--config=", "--endpoints", etcd.Endpoints[0], "--command-timeout", "3s", "--dial-timeout", "3s"}

	tests := []struct {
		name  string
		flags []string
		env   map[string]string
		value string
	}{
		{"--user NAME:PASSWORD", []string{"--user", "deployer:" + deployerPassword}, nil, "1"},
		{"--user NAME and ETCDCTL_PASSWORD", []string{"--user", "deployer"}, map[string]string{"ETCDCTL_PASSWORD": deployerPassword}, "2"},
		{"ETCDCTL_USER=NAME:PASSWORD", nil, map[string]string{"ETCDCTL_USER": "deployer:" + deployerPassword}, "3"},
		{"ETCDCTL_USER and ETCDCTL_PASSWORD", nil, map[string]string{"ETCDCTL_USER": "deployer", "ETCDCTL_PASSWORD": deployerPassword}, "4"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newEnvCLI(t, append(append([]string{}, base...), tt.flags...)...)
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			if out := c.ok("set", "web/production", "n="+tt.value); !strings.HasPrefix(out, "web/production: set n (revision ") {
				t.Errorf("set printed %q", out)
			}
			if got := c.ok("get", "web/production", "n"); got != tt.value+"\n" {
				t.Errorf("get n: got %q, want %q", got, tt.value+"\n")
			}
		})
	}

	failures := []struct {
		name  string
		flags []string
		env   map[string]string
		want  []string
	}{
		{"a wrong password in --user", []string{"--user", "deployer:wrong-Zt4k8Rm1"}, nil, []string{"authentication failed"}},
		{"a wrong ETCDCTL_PASSWORD", []string{"--user", "deployer"}, map[string]string{"ETCDCTL_PASSWORD": "wrong-Zt4k8Rm1"}, []string{"authentication failed"}},
		{"a wrong password in ETCDCTL_USER", nil, map[string]string{"ETCDCTL_USER": "deployer:wrong-Zt4k8Rm1"}, []string{"authentication failed"}},
		{"no user", nil, nil, []string{"user name is empty"}},
		{"--user without a password", []string{"--user", "deployer"}, nil, []string{"--user deployer", "no password", "ETCDCTL_PASSWORD"}},
		{"outside the granted prefix", []string{"--user", "deployer:" + deployerPassword, "--prefix", "/other/"}, nil, []string{"permission denied"}},
	}
	for _, tt := range failures {
		t.Run(tt.name, func(t *testing.T) {
			c := newEnvCLI(t, append(append([]string{}, base...), tt.flags...)...)
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			for _, args := range [][]string{{"get", "web/production"}, {"set", "web/production", "n=0"}} {
				start := time.Now()
				out, errOut, err := c.run("", args...)
				took := time.Since(start)
				t.Logf("%s: %v (%v)", args[0], err, took)
				if err == nil {
					t.Fatalf("%s: no error, want one; printed:\n%s", args[0], out)
				}
				wantErr(t, args[0], err, tt.want...)
				all := out + errOut + err.Error()
				if strings.Contains(all, "wrong-Zt4k8Rm1") || strings.Contains(all, deployerPassword) {
					t.Errorf("%s printed a password:\n%s", args[0], all)
				}
				if took >= 3*time.Second {
					t.Errorf("%s took %v, want less than the 3s command timeout", args[0], took)
				}
			}
		})
	}
	// The refused set changed nothing.
	c := newEnvCLI(t, append(base, "--user", "deployer:"+deployerPassword)...)
	if got := c.ok("get", "web/production", "n"); got != "4\n" {
		t.Errorf("get n after the refused commands: got %q, want 4", got)
	}
}
