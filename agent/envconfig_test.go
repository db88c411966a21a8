package agent

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/pushdeploy/pushdeploy/config"
	"github.com/pushdeploy/pushdeploy/internal/etcdconn"
	"github.com/pushdeploy/pushdeploy/internal/testenv"
	"github.com/pushdeploy/pushdeploy/renv"
	"github.com/pushdeploy/pushdeploy/state"
)

// configStore opens a renv store on etcd for the test to change the app's document with.
func configStore(t testing.TB, e *testenv.Etcd) *renv.Store {
	t.Helper()
	s, err := renv.Open(renv.Config{Config: etcdconn.Config{Endpoints: e.Endpoints}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// setConfig sets dotted keys of web/production to JSON values in one transaction and
// returns the revision.
func setConfig(t testing.TB, s *renv.Store, kv ...string) int64 {
	t.Helper()
	_, rev, err := s.Update(t.Context(), "web", "production", func(l renv.Leaves) error {
		for i := 0; i < len(kv); i += 2 {
			path, err := renv.ParseKey(kv[i])
			if err != nil {
				return err
			}
			if kv[i+1] == "" {
				l.Unset(path)
				continue
			}
			if err := l.Set(path, json.RawMessage(kv[i+1])); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return rev
}

// waitKind waits for a deploy of kind newer than after to reach a final status.
func (f *fixture) waitKind(kind, after string) *state.Deploy {
	f.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		list, err := f.agent.state.History("web", 20)
		if err != nil {
			f.t.Fatal(err)
		}
		for _, d := range list {
			if d.Kind == kind && d.ID > after && d.Status.Final() {
				return &d
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	f.t.Fatalf("no %s after %s finished in time", kind, after)
	return nil
}

func etcdGets(a *Agent) float64 { return testutil.ToFloat64(a.metrics.etcd.WithLabelValues("get")) }

// TestAgent_config follows an app's configuration from etcd through a deploy, a change
// (one health-checked rolling restart), a bad change (reverted), a deploy while etcd holds
// the bad one, and an etcd outage (deploys from the cache, then recovers).
func TestAgent_config(t *testing.T) {
	sd := testenv.StartSystemd(t)
	// Debian's etcd 3.4, a process of its own: the outage below is a kill, as a crash is,
	// and the agent's 3.7 client is checked against the oldest server it supports.
	e := testenv.StartEtcdServer(t)
	store := configStore(t, e)
	setConfig(t, store, "greeting", `"hi"`, "secret.token", `"t0p s3cret"`, "workers", `4`)
	hello := testenv.HelloBinary(t)
	port := testenv.FreePorts(t, 2)
	f := newFixture(t, func(c *config.Config) {
		onSystemd(t, c, sd, 300*time.Millisecond)
		c.Etcd = &config.Etcd{Endpoints: e.Endpoints, RequestTimeout: time.Second}
		c.Apps["web"].Config = &config.AppEnv{Debounce: 200 * time.Millisecond}
	})
	deploy := func(version string) *state.Deploy {
		t.Helper()
		f.repo.Write("VERSION", version+"\n", 0o644)
		f.repo.Write("bin/hello", hello, 0o755)
		f.repo.Write("service.json", fmt.Sprintf(`{"services": {"web": {"command": ["bin/hello"], "instances": 2, "port": %d,
			"health": {"http": "/health", "timeout": "200ms", "interval": "100ms", "min_healthy_time": "300ms", "healthy_deadline": "3s"}}}}`, port), 0o644)
		return f.pushAndDeploy(f.repo.Commit("version " + version))
	}
	answers := func(want string) {
		t.Helper()
		for i := range 2 {
			if got := get(fmt.Sprintf("http://127.0.0.1:%d/", port+i)); got != want {
				t.Errorf("instance %d: got %q, want %q", i+1, got, want)
			}
		}
	}
	envFile := f.cfg.Layout().EnvFile("web")

	d := deploy("1")
	if d.Status != state.StatusSucceeded || d.ConfigSource != "etcd" || d.ConfigRev == 0 {
		t.Fatalf("deploy 1: got %s %q, config rev %d from %q; want succeeded with etcd's configuration", d.Status, d.Error, d.ConfigRev, d.ConfigSource)
	}
	answers("hello from version 1 (greeting: hi)")
	st, err := os.Stat(envFile)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("environment file: got %v, %v; want mode 0600", st, err)
	}
	env, _ := os.ReadFile(envFile)
	for _, line := range []string{`GREETING="hi"`, `TOKEN="t0p s3cret"`, `WORKERS="4"`} {
		if !strings.Contains(string(env), "\n"+line+"\n") {
			t.Errorf("environment file has no line %s:\n%s", line, env)
		}
	}
	if unit := sd.Systemctl(t, "cat", "pushdeploy-web-web@1.service"); !strings.Contains(unit, "EnvironmentFile="+envFile) {
		t.Errorf("unit does not read the environment file:\n%s", unit)
	}

	// A change becomes one rolling restart, batch after batch, health-checked.
	start := time.Now()
	setConfig(t, store, "greeting", `"hello"`)
	first := time.Duration(0)
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if get(fmt.Sprintf("http://127.0.0.1:%d/", port)) == "hello from version 1 (greeting: hello)" ||
			get(fmt.Sprintf("http://127.0.0.1:%d/", port+1)) == "hello from version 1 (greeting: hello)" {
			first = time.Since(start)
			break
		}
	}
	c := f.waitKind(state.KindConfig, d.ID)
	t.Logf("env set → first instance answering with the new value: %v (debounce 200ms)", first)
	if c.Status != state.StatusSucceeded || c.SHA != d.SHA {
		t.Fatalf("config change: got %s %q on %.12s, want succeeded on %.12s", c.Status, c.Error, c.SHA, d.SHA)
	}
	answers("hello from version 1 (greeting: hello)")
	log, _ := os.ReadFile(f.cfg.Layout().DeployLog("web", c.ID))
	if n := strings.Count(string(log), `"message":"batch healthy"`); n != 2 {
		t.Errorf("config change: %d batches healthy in its log, want 2:\n%s", n, log)
	}
	if strings.Contains(string(log), "t0p s3cret") {
		t.Errorf("the deploy log shows a secret:\n%s", log)
	}

	// A bad change: the first batch is unhealthy, the previous file comes back.
	good, _ := os.ReadFile(envFile)
	setConfig(t, store, "db_url", `"mysql://db"`)
	bad := f.waitKind(state.KindConfig, c.ID)
	if bad.Status != state.StatusFailed || !strings.HasPrefix(bad.Error, "configuration at etcd revision") || !strings.Contains(bad.Error, "reverted: previous environment file put back, 1 batch(es) restarted on it and healthy; cause: restart units of web: batch 1 of 2: health check") {
		t.Fatalf("bad config change: got %s %q, want failed and put back", bad.Status, bad.Error)
	}
	if now, _ := os.ReadFile(envFile); string(now) != string(good) {
		t.Errorf("environment file after the revert:\n%s\nwant the previous one:\n%s", now, good)
	}
	answers("hello from version 1 (greeting: hello)")
	if st := configStatus(f.cfg, "web"); st == nil || st.Rev != c.ConfigRev || st.BadRev != bad.ConfigRev || !strings.Contains(st.BadWhy, "DB_URL") {
		t.Errorf("status: got %+v, want good revision %d and reverted revision %d with its reason", st, c.ConfigRev, bad.ConfigRev)
	}

	// A push while etcd holds the bad configuration deploys with the last good one, after
	// one round trip to etcd.
	gets := etcdGets(f.agent)
	d2 := deploy("2")
	if n := etcdGets(f.agent) - gets; n != 1 {
		t.Errorf("etcd reads during a deploy: got %v, want 1", n)
	}
	if d2.Status != state.StatusSucceeded || d2.ConfigSource != "cache" {
		t.Fatalf("deploy 2: got %s %q from %q, want succeeded with the cached good configuration", d2.Status, d2.Error, d2.ConfigSource)
	}
	answers("hello from version 2 (greeting: hello)")

	// etcd goes away: a deploy uses the cache and says so; the agent recovers when it is back.
	e.Stop()
	d3 := deploy("3")
	if d3.Status != state.StatusSucceeded || d3.ConfigSource != "cache" {
		t.Fatalf("deploy 3 with etcd down: got %s %q from %q, want succeeded from the cache", d3.Status, d3.Error, d3.ConfigSource)
	}
	if log, _ := os.ReadFile(f.cfg.Layout().DeployLog("web", d3.ID)); !strings.Contains(string(log), "etcd unreachable: using the cached configuration") {
		t.Errorf("deploy 3's log does not say it used the cache:\n%s", log)
	}
	answers("hello from version 3 (greeting: hello)")
	e.Start(t)
	setConfig(t, store, "db_url", "", "greeting", `"back"`)
	back := f.waitKind(state.KindConfig, d3.ID)
	if back.Status != state.StatusSucceeded {
		t.Fatalf("config change after etcd came back: got %s %q", back.Status, back.Error)
	}
	answers("hello from version 3 (greeting: back)")
}

// TestAgent_configWithoutEtcd: an unreachable etcd and no cached configuration fail the
// deploy before anything starts, and a key that cannot be a variable fails it naming the key;
// no environment file is written either way.
func TestAgent_configWithoutEtcd(t *testing.T) {
	e := testenv.StartEtcdServer(t) // killed below: an embedded etcd takes seconds to close
	store := configStore(t, e)
	// Set before the agent starts: its watcher's first read must not find an empty, valid
	// document, which it would roll out (and cache) as the app's configuration.
	setConfig(t, store, "db.host name", `"x"`)
	f := newFixture(t, func(c *config.Config) {
		c.Etcd = &config.Etcd{Endpoints: e.Endpoints, RequestTimeout: 300 * time.Millisecond}
	})
	envFile := f.cfg.Layout().EnvFile("web")

	d := f.pushAndDeploy(f.commit("1"))
	if d.Status != state.StatusFailed || !strings.Contains(d.Error, "db.host name") {
		t.Errorf("deploy with a bad key: got %s %q, want failed naming the key", d.Status, d.Error)
	}
	if f.current() != "" {
		t.Errorf("current: got %.12s, want none", f.current())
	}
	if _, err := os.Stat(envFile); err == nil {
		t.Error("an environment file was written for a configuration that cannot be rendered")
	}
	// PORT and PUSHDEPLOY_* are the units' own, per instance: the environment file, read
	// after them, must not override them.
	setConfig(t, store, "db.host name", "", "port", `8080`)
	d = f.pushAndDeploy(f.commit("1b"))
	if d.Status != state.StatusFailed || !strings.Contains(d.Error, "key port: PORT is set by pushdeploy for each instance") {
		t.Errorf("deploy with a key port: got %s %q, want failed naming it", d.Status, d.Error)
	}

	e.Stop()
	d = f.pushAndDeploy(f.commit("2"))
	if d.Status != state.StatusFailed || !strings.Contains(d.Error, "no cached configuration") {
		t.Errorf("deploy with etcd down and no cache: got %s %q, want failed saying so", d.Status, d.Error)
	}
	if _, err := os.Stat(envFile); err == nil {
		t.Error("an environment file was written with etcd down and no cache")
	}
}

// TestAgent_configTLS reads the configuration from an etcd that requires TLS client
// certificates, with the files named in the agent's etcd section.
func TestAgent_configTLS(t *testing.T) {
	e := testenv.StartEtcdTLS(t)
	store, err := renv.Open(renv.Config{Config: etcdconn.Config{Endpoints: e.Endpoints, CACert: e.CACert, Cert: e.Cert, Key: e.Key}})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	setConfig(t, store, "greeting", `"over tls"`)
	f := newFixture(t, func(c *config.Config) {
		c.Etcd = &config.Etcd{Endpoints: e.Endpoints, CAFile: e.CACert, CertFile: e.Cert, KeyFile: e.Key}
	})
	d := f.pushAndDeploy(f.commit("1"))
	if d.Status != state.StatusSucceeded || d.ConfigSource != "etcd" {
		t.Fatalf("deploy: got %s %q from %q, want succeeded with etcd's configuration", d.Status, d.Error, d.ConfigSource)
	}
	env, err := os.ReadFile(f.cfg.Layout().EnvFile("web"))
	if err != nil || !strings.Contains(string(env), "\nGREETING=\"over tls\"\n") {
		t.Errorf("environment file: got %q, %v; want GREETING from etcd", env, err)
	}
}

func TestReservedNames(t *testing.T) {
	tests := []struct {
		doc, wantErr string
	}{
		{`{"db": {"port": 5432}, "workers": 4}`, ""},
		{`{"port": 8080}`, "key port: PORT is set by pushdeploy for each instance"},
		{`{"pushdeploy": {"sha": "x"}}`, "key pushdeploy.sha: PUSHDEPLOY_SHA is set by pushdeploy"},
		{`{"secret": {"uid": "1"}}`, "key secret.uid: UID is read-only in bash"},
		{`{"ppid": 1}`, "key ppid: PPID is read-only in bash"},
	}
	for _, tt := range tests {
		l, err := renv.Flatten([]byte(tt.doc))
		if err != nil {
			t.Fatal(err)
		}
		err = reservedNames(l)
		if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
			t.Errorf("%s: got %v, want %q", tt.doc, err, tt.wantErr)
		}
	}
}
