package testenv

import (
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// Etcd is a single-member etcd private to one test, started by StartEtcd, StartEtcdTLS,
// StartEtcdWith or StartEtcdServer and stopped in t.Cleanup.
type Etcd struct {
	// Endpoints are the client URLs, "http://127.0.0.1:N" or "https://127.0.0.1:N".
	Endpoints []string
	// Dir holds the data directory, the server's log (etcd.log) and, for TLS, the
	// certificates.
	Dir string
	// CACert, Cert and Key are set for TLS: the CA that signed the server's certificate,
	// and a client certificate and its key the server accepts.
	CACert, Cert, Key string

	mu    sync.Mutex
	start func() error // starts the server on the same ports and data dir
	stop  func()       // stops it; nil while stopped
	pgid  int          // StartEtcdServer: the running binary's process group
}

// StartEtcd starts an in-process etcd (go.etcd.io/etcd/server/v3/embed) on free
// 127.0.0.1 ports with its data in a temporary directory, waits until it serves, and
// closes it in t.Cleanup. Its logs go to Dir/etcd.log.
func StartEtcd(t testing.TB) *Etcd {
	t.Helper()
	return StartEtcdWith(t, nil)
}

// StartEtcdWith is StartEtcd with configure applied to the server's configuration
// before each start (e.g. to lower MaxTxnOps).
func StartEtcdWith(t testing.TB, configure func(*embed.Config)) *Etcd {
	t.Helper()
	return startEmbedded(t, &Etcd{Dir: t.TempDir()}, "http", configure)
}

func startEmbedded(t testing.TB, e *Etcd, scheme string, configure func(*embed.Config)) *Etcd {
	t.Helper()
	var client, peer url.URL
	e.start = func() error {
		cfg := embed.NewConfig()
		cfg.Name = "default"
		cfg.Dir = filepath.Join(e.Dir, "data")
		cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{client}, []url.URL{client}
		cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{peer}, []url.URL{peer}
		cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
		cfg.UnsafeNoFsync = true // the data outlives Stop/Start (a clean Close), not the machine
		if e.Cert != "" {
			cfg.ClientTLSInfo.CertFile = filepath.Join(e.Dir, "server.pem")
			cfg.ClientTLSInfo.KeyFile = filepath.Join(e.Dir, "server-key.pem")
			cfg.ClientTLSInfo.TrustedCAFile = e.CACert
			cfg.ClientTLSInfo.ClientCertAuth = true
		}
		logFile, err := os.OpenFile(filepath.Join(e.Dir, "etcd.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			return err
		}
		enc := zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig())
		lg := zap.New(zapcore.NewCore(enc, zapcore.AddSync(logFile), zap.InfoLevel))
		cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(lg)
		if configure != nil {
			configure(cfg)
		}
		srv, err := embed.StartEtcd(cfg)
		if err != nil {
			logFile.Close()
			return err
		}
		stop := func() { srv.Close(); logFile.Close() }
		select {
		case <-srv.Server.ReadyNotify():
		case err := <-srv.Err():
			stop()
			return fmt.Errorf("etcd exited: %w", err)
		case <-time.After(10 * time.Second):
			stop()
			return fmt.Errorf("etcd not ready after 10s (log in %s)", logFile.Name())
		}
		e.stop = stop
		return nil
	}
	var err error
	for range 5 {
		cport, perr := freePort()
		pport, qerr := freePort()
		if perr != nil || qerr != nil {
			t.Fatalf("pick free ports: %v %v", perr, qerr)
		}
		client = url.URL{Scheme: scheme, Host: fmt.Sprintf("127.0.0.1:%d", cport)}
		peer = url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", pport)}
		os.RemoveAll(filepath.Join(e.Dir, "data")) // a failed attempt's
		if err = e.start(); err == nil {
			e.Endpoints = []string{client.String()}
			t.Cleanup(e.Stop)
			return e
		}
	}
	t.Fatalf("start etcd: %v", err)
	return nil
}

// Stop stops the server; the client port is free once it returns. Stopping a stopped
// server does nothing.
func (e *Etcd) Stop() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.stop != nil {
		e.stop()
		e.stop = nil
	}
}

// Start starts the stopped server again on the same client port and data directory, so
// clients reconnect and find their data, and waits until it serves.
func (e *Etcd) Start(t testing.TB) {
	t.Helper()
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.stop != nil {
		t.Fatal("Etcd.Start: already running")
	}
	var err error
	for range 20 { // the port may linger for a moment after a kill
		if err = e.start(); err == nil {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("restart etcd: %v", err)
}

// StartEtcdServer runs Debian's etcd-server binary (/usr/bin/etcd, 3.4) as a child
// process in its own process group on free 127.0.0.1 ports, for compatibility tests,
// with its data and its output (etcd.log) in Dir, and kills it in t.Cleanup. Stop and
// Start work on it too (Stop kills the process group). It calls Unavailable only when
// the binary is not installed.
func StartEtcdServer(t testing.TB) *Etcd {
	t.Helper()
	bin, err := exec.LookPath("etcd")
	if err != nil {
		if bin = "/usr/bin/etcd"; !fileExists(bin) {
			Unavailable(t, "etcd", "not installed (Debian package etcd-server)")
		}
	}
	e := &Etcd{Dir: t.TempDir()}
	var client, peer string
	e.start = func() error {
		logFile, err := os.OpenFile(filepath.Join(e.Dir, "etcd.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			return err
		}
		defer logFile.Close() // the child has its own descriptor
		cmd := exec.Command(bin, "--name", "default", "--data-dir", filepath.Join(e.Dir, "data"),
			"--listen-client-urls", client, "--advertise-client-urls", client,
			"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
			"--initial-cluster", "default="+peer, "--logger", "zap")
		cmd.Stdout, cmd.Stderr = logFile, logFile
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := cmd.Start(); err != nil {
			return fmt.Errorf("start %s: %w", bin, err)
		}
		exited := make(chan struct{})
		go func() { cmd.Wait(); close(exited) }() // the exit status is uninteresting: stop kills it
		stop := func() { killGroup(cmd.Process.Pid, exited) }
		if !waitEtcdHealth(client, exited) {
			stop()
			return fmt.Errorf("etcd on %s did not become healthy (log in %s)", client, logFile.Name())
		}
		e.stop, e.pgid = stop, cmd.Process.Pid
		return nil
	}
	for range 5 {
		cport, perr := freePort()
		pport, qerr := freePort()
		if perr != nil || qerr != nil {
			t.Fatalf("pick free ports: %v %v", perr, qerr)
		}
		client = fmt.Sprintf("http://127.0.0.1:%d", cport)
		peer = fmt.Sprintf("http://127.0.0.1:%d", pport)
		os.RemoveAll(filepath.Join(e.Dir, "data"))
		if err = e.start(); err == nil {
			e.Endpoints = []string{client}
			t.Cleanup(e.Stop)
			return e
		}
	}
	t.Fatalf("start etcd: %v", err)
	return nil
}

// waitEtcdHealth waits until GET client/health answers 200 (etcd has a leader and
// serves), or the process exits.
func waitEtcdHealth(client string, exited <-chan struct{}) bool {
	hc := &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	return waitReady(exited, func() bool {
		resp, err := hc.Get(client + "/health")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}
