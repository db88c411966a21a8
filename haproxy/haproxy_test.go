package haproxy

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pushdeploy/pushdeploy/internal/testenv"
)

// haFixture is a real haproxy whose backend "app" balances two real HTTP servers, web1 and
// web2. GET / answers at once; GET /slow answers only once release is called, after
// announcing itself on entered, so that a test holds a session open as long as it likes.
type haFixture struct {
	ha      *Client
	url     string // the frontend
	client  *http.Client
	entered chan string // the name of the server a /slow request reached
	release func()      // lets every /slow request, past and future, answer
}

func newHAFixture(t *testing.T) *haFixture {
	t.Helper()
	f := &haFixture{entered: make(chan string, 10)}
	released := make(chan struct{})
	var once sync.Once
	f.release = func() { once.Do(func() { close(released) }) }
	var servers []testenv.HAServer
	for _, name := range []string{"web1", "web2"} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/slow" {
				f.entered <- name
				<-released
			}
			io.WriteString(w, name)
		}))
		t.Cleanup(srv.Close)
		t.Cleanup(f.release) // before srv.Close, which waits for the requests under way
		servers = append(servers, testenv.HAServer{Name: name, Port: srv.Listener.Addr().(*net.TCPAddr).Port})
	}
	h := testenv.StartHAProxy(t, "app", servers)
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	f.ha = &Client{Socket: h.Socket}
	f.url = "http://" + h.Addr
	f.client = &http.Client{Transport: tr, Timeout: 10 * time.Second}
	return f
}

// get sends GET path through haproxy and returns the name of the server that answered.
func (f *haFixture) get(t *testing.T, path string) string {
	t.Helper()
	resp, err := f.client.Get(f.url + path)
	if err != nil {
		t.Errorf("GET %s through haproxy: %v", path, err)
		return ""
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Server") != string(body) {
		t.Errorf("GET %s through haproxy: got %s, X-Server %q, body %q; want 200 from the server named", path, resp.Status, resp.Header.Get("X-Server"), body)
	}
	return string(body)
}

// getSlow starts GET /slow in a goroutine, waits until it reached a server, and returns that
// server's name and a func that waits for the answer (call it after f.release).
func (f *haFixture) getSlow(t *testing.T) (server string, wait func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		f.get(t, "/slow")
	}()
	select {
	case server = <-f.entered:
	case <-time.After(5 * time.Second):
		f.release()
		<-done
		t.Fatal("GET /slow reached no server in 5s")
	}
	return server, func() { <-done }
}

func (f *haFixture) wantState(t *testing.T, server, wantAdmin, wantOper, wantStatus string) {
	t.Helper()
	ctx := context.Background()
	admin, oper, err := f.ha.State(ctx, "app", server)
	if err != nil {
		t.Fatal(err)
	}
	status, err := f.ha.Status(ctx, "app", server)
	if err != nil {
		t.Fatal(err)
	}
	if admin != wantAdmin || oper != wantOper || status != wantStatus {
		t.Errorf("app/%s: got admin %s, oper %s, status %q; want %s, %s, %q", server, admin, oper, status, wantAdmin, wantOper, wantStatus)
	}
}

func TestHAProxy_DrainReady(t *testing.T) {
	f := newHAFixture(t)
	ctx := context.Background()
	f.wantState(t, "web1", "ready", "up", "UP")

	if err := f.ha.Drain(ctx, "app", "web1", time.Second); err != nil {
		t.Fatalf("Drain idle server: %v", err)
	}
	f.wantState(t, "web1", "drain", "up", "DRAIN")
	f.wantState(t, "web2", "ready", "up", "UP")
	for i := range 20 { // keep-alive connections too: each request is balanced again
		if got := f.get(t, "/"); got != "web2" {
			t.Fatalf("request %d during drain of web1: answered by %s, want web2", i, got)
		}
	}

	if err := f.ha.Ready(ctx, "app", "web1"); err != nil {
		t.Fatal(err)
	}
	f.wantState(t, "web1", "ready", "up", "UP")
	if err := f.ha.WaitUp(ctx, "app", "web1", time.Second); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for range 4 {
		seen[f.get(t, "/")] = true
	}
	if !seen["web1"] || !seen["web2"] {
		t.Errorf("after Ready: answered by %v, want both servers", seen)
	}

	// Maintenance, and back: Ready leaves any administrative state.
	if err := f.ha.SetState(ctx, "app", "web1", StateMaint); err != nil {
		t.Fatal(err)
	}
	f.wantState(t, "web1", "maint", "down", "MAINT") // maintenance forces it down
	if err := f.ha.Ready(ctx, "app", "web1"); err != nil {
		t.Fatal(err)
	}
	if err := f.ha.WaitUp(ctx, "app", "web1", 2*time.Second); err != nil {
		t.Fatal(err)
	}
}

func TestHAProxy_DrainWaitsForSessions(t *testing.T) {
	f := newHAFixture(t)
	ctx := context.Background()

	// Hold a request on web1 (web2 in maintenance meanwhile, so round robin cannot pick it).
	if err := f.ha.SetState(ctx, "app", "web2", StateMaint); err != nil {
		t.Fatal(err)
	}
	server, wait := f.getSlow(t)
	defer wait()
	defer f.release()
	if server != "web1" {
		t.Fatalf("GET /slow reached %s, want web1", server)
	}
	if err := f.ha.Ready(ctx, "app", "web2"); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]int{"web1": 1, "web2": 0} {
		if n, err := f.ha.Sessions(ctx, "app", name); err != nil || n != want {
			t.Errorf("Sessions(app/%s) with one request held on web1: got %d, %v; want %d", name, n, err, want)
		}
	}

	drained := make(chan error, 1)
	start := time.Now()
	go func() { drained <- f.ha.Drain(ctx, "app", "web1", 10*time.Second) }()
	// While Drain waits: web1 is in drain and new requests all go to web2.
	deadline := time.Now().Add(5 * time.Second)
	for {
		if admin, _, err := f.ha.State(ctx, "app", "web1"); err != nil {
			t.Fatal(err)
		} else if admin == StateDrain {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("web1 not in drain 5s after Drain started")
		}
		time.Sleep(10 * time.Millisecond)
	}
	for i := range 20 {
		if got := f.get(t, "/"); got != "web2" {
			t.Errorf("request %d while web1 drains: answered by %s, want web2", i, got)
		}
	}
	select {
	case err := <-drained:
		t.Fatalf("Drain returned %v while a request was still held on web1", err)
	case <-time.After(300 * time.Millisecond):
	}
	if n, err := f.ha.Sessions(ctx, "app", "web1"); err != nil || n != 1 {
		t.Errorf("Sessions(app/web1) while draining: got %d, %v; want 1", n, err)
	}

	released := time.Now()
	f.release()
	wait()
	select {
	case err := <-drained:
		if err != nil {
			t.Fatalf("Drain after the held request ended: %v", err)
		}
		t.Logf("Drain returned %v after the request ended (%v in all)", time.Since(released).Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
	case <-time.After(5 * time.Second):
		t.Fatal("Drain still waiting 5s after the held request ended")
	}
	if n, err := f.ha.Sessions(ctx, "app", "web1"); err != nil || n != 0 {
		t.Errorf("Sessions(app/web1) after drain: got %d, %v; want 0", n, err)
	}
	f.wantState(t, "web1", "drain", "up", "DRAIN")
	if err := f.ha.Ready(ctx, "app", "web1"); err != nil {
		t.Fatal(err)
	}
	f.wantState(t, "web1", "ready", "up", "UP")
}

func TestHAProxy_DrainTimeout(t *testing.T) {
	f := newHAFixture(t)
	ctx := context.Background()
	if err := f.ha.SetState(ctx, "app", "web2", StateMaint); err != nil {
		t.Fatal(err)
	}
	_, wait := f.getSlow(t)
	defer wait()
	defer f.release()

	start := time.Now()
	err := f.ha.Drain(ctx, "app", "web1", 300*time.Millisecond)
	took := time.Since(start)
	if !errors.Is(err, ErrDrainTimeout) {
		t.Fatalf("Drain with a request held: got %v, want ErrDrainTimeout", err)
	}
	if want := "drain haproxy server app/web1: sessions still open after the drain timeout: 1 left after 300ms"; err.Error() != want {
		t.Errorf("error: got %q, want %q", err, want)
	}
	if took < 300*time.Millisecond || took > 2*time.Second {
		t.Errorf("Drain took %v, want about its 300ms timeout", took)
	}
	// It stays drained: the caller decides.
	if admin, _, err := f.ha.State(ctx, "app", "web1"); err != nil || admin != StateDrain {
		t.Errorf("after the drain timeout: got admin state %q, %v; want drain", admin, err)
	}

	// A cancelled context ends the wait too.
	cctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	if err := f.ha.Drain(cctx, "app", "web1", time.Minute); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Drain with a context ending first: got %v, want context.DeadlineExceeded", err)
	}
}

func TestHAProxy_refusals(t *testing.T) {
	f := newHAFixture(t)
	ctx := context.Background()

	hostile := []string{
		"",
		"web1\nset server app/web2 state maint",
		"web1;set server app/web2 state maint",
		"web1 state maint;set server app/web2",
		"app/web2",
		"web 1",
		"web1\r",
		"web1<<",
		"wéb1",
	}
	for _, name := range hostile {
		for _, call := range []struct {
			what string
			do   func(backend, server string) error
		}{
			{"SetState", func(b, s string) error { return f.ha.SetState(ctx, b, s, StateMaint) }},
			{"Drain", func(b, s string) error { return f.ha.Drain(ctx, b, s, time.Second) }},
			{"Ready", func(b, s string) error { return f.ha.Ready(ctx, b, s) }},
			{"Sessions", func(b, s string) error { _, err := f.ha.Sessions(ctx, b, s); return err }},
			{"Status", func(b, s string) error { _, err := f.ha.Status(ctx, b, s); return err }},
			{"State", func(b, s string) error { _, _, err := f.ha.State(ctx, b, s); return err }},
			{"WaitUp", func(b, s string) error { return f.ha.WaitUp(ctx, b, s, time.Second) }},
		} {
			// Refused before anything is sent, with the name quoted: no raw newline in a log.
			if err := call.do("app", name); err == nil || !strings.Contains(err.Error(), "haproxy server: server: haproxy name") || strings.ContainsAny(err.Error(), "\r\n") {
				t.Errorf("%s(app, %q): got %q, want the server name refused", call.what, name, err)
			}
			if err := call.do(name, "web1"); err == nil || !strings.Contains(err.Error(), "haproxy server: backend: haproxy name") || strings.ContainsAny(err.Error(), "\r\n") {
				t.Errorf("%s(%q, web1): got %q, want the backend name refused", call.what, name, err)
			}
		}
	}
	for _, state := range []string{"", "up", "maint\nset server app/web2 state maint", "ready;shutdown sessions server app/web2"} {
		if err := f.ha.SetState(ctx, "app", "web1", state); err == nil || !strings.Contains(err.Error(), "want ready, drain or maint") {
			t.Errorf("SetState(app, web1, %q): got %v, want the state refused", state, err)
		}
	}
	// Nothing reached haproxy.
	f.wantState(t, "web1", "ready", "up", "UP")
	f.wantState(t, "web2", "ready", "up", "UP")

	// Names haproxy does not know: the error names them and quotes haproxy.
	for _, tc := range []struct {
		what string
		err  error
		want string
	}{
		{"SetState(nope, web1)", f.ha.SetState(ctx, "nope", "web1", StateDrain),
			`set haproxy server nope/web1 state drain: haproxy answered "No such backend."`},
		{"SetState(app, nope)", f.ha.SetState(ctx, "app", "nope", StateDrain),
			`set haproxy server app/nope state drain: haproxy answered "No such server."`},
		{"Drain(app, nope)", f.ha.Drain(ctx, "app", "nope", time.Second),
			`set haproxy server app/nope state drain: haproxy answered "No such server."`},
		{"Sessions(nope, web1)", haErr2(f.ha.Sessions(ctx, "nope", "web1")),
			`count sessions of haproxy server nope/web1: show stat: haproxy answered "No such proxy."`},
		{"Sessions(app, nope)", haErr2(f.ha.Sessions(ctx, "app", "nope")),
			`count sessions of haproxy server app/nope: show stat: haproxy has no server nope in backend app`},
		{"State(nope, web1)", haErr3(f.ha.State(ctx, "nope", "web1")),
			`get state of haproxy server nope/web1: show servers state: haproxy answered "Can't find backend."`},
		{"State(app, nope)", haErr3(f.ha.State(ctx, "app", "nope")),
			`get state of haproxy server app/nope: show servers state: haproxy has no server nope in backend app`},
		{"WaitUp(app, nope)", f.ha.WaitUp(ctx, "app", "nope", time.Second),
			`wait for haproxy server app/nope: show servers state: haproxy has no server nope in backend app`},
	} {
		if tc.err == nil || tc.err.Error() != tc.want {
			t.Errorf("%s: got %v, want %q", tc.what, tc.err, tc.want)
		}
	}
}

func haErr2[T any](_ T, err error) error         { return err }
func haErr3[T, U any](_ T, _ U, err error) error { return err }

func TestHAProxy_WaitUp(t *testing.T) {
	// A server nobody listens on never comes up.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	h := testenv.StartHAProxy(t, "app", []testenv.HAServer{{Name: "gone", Port: port}})
	ha := &Client{Socket: h.Socket}
	err = ha.WaitUp(context.Background(), "app", "gone", time.Second)
	if !errors.Is(err, ErrNotUp) {
		t.Fatalf("WaitUp on a dead server: got %v, want ErrNotUp", err)
	}
	if want := "wait for haproxy server app/gone: server not up in haproxy after 1s: admin state ready, operational state down"; err.Error() != want {
		t.Errorf("error: got %q, want %q", err, want)
	}
}

func TestHAProxy_commandTimeout(t *testing.T) {
	// A socket that accepts and never answers: each command ends at Timeout, or with ctx.
	sock := filepath.Join(t.TempDir(), "mute.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(wg.Wait)
	t.Cleanup(func() { l.Close() })
	wg.Go(func() {
		var conns []net.Conn
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c)
		}
	})

	ha := &Client{Socket: sock, Timeout: 200 * time.Millisecond}
	start := time.Now()
	_, err = ha.Sessions(context.Background(), "app", "web1")
	if !errors.Is(err, os.ErrDeadlineExceeded) || !strings.Contains(err.Error(), "no answer within 200ms") || time.Since(start) > 2*time.Second {
		t.Errorf("Sessions on a mute socket: got %v after %v, want no answer within 200ms", err, time.Since(start))
	}
	ha.Timeout = time.Minute
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	start = time.Now()
	if err := ha.Ready(ctx, "app", "web1"); !errors.Is(err, context.Canceled) || time.Since(start) > 2*time.Second {
		t.Errorf("Ready cancelled on a mute socket: got %v after %v, want context.Canceled soon", err, time.Since(start))
	}

	ha.Socket = filepath.Join(t.TempDir(), "none.sock")
	if err := ha.Ready(context.Background(), "app", "web1"); err == nil || !strings.Contains(err.Error(), "set haproxy server app/web1 state ready: connect to haproxy admin socket: ") {
		t.Errorf("Ready with no socket: got %v, want a connect error naming the server", err)
	}
}

func TestParseServersState(t *testing.T) {
	const header = "1\n# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord srv_use_ssl srv_check_port srv_check_addr srv_agent_addr srv_agent_port\n"
	for _, tc := range []struct {
		op, admin           string
		wantAdmin, wantOper string
	}{
		{"2", "0", "ready", "up"},
		{"0", "0", "ready", "down"},
		{"1", "0", "ready", "starting"},
		{"3", "0", "ready", "stopping"},
		{"2", "8", "drain", "up"},  // forced drain
		{"2", "16", "drain", "up"}, // drain inherited from a tracked server
		{"0", "1", "maint", "down"},
		{"0", "2", "maint", "down"},  // maintenance inherited
		{"0", "5", "maint", "down"},  // `disabled` in the configuration
		{"0", "32", "maint", "down"}, // name resolution failed
		{"0", "9", "maint", "down"},  // maintenance wins over drain
		{"2", "64", "ready", "up"},   // fqdn changed: no state
	} {
		answer := header + "3 app 1 web1 127.0.0.1 " + tc.op + " " + tc.admin + " 1 1 1 6 3 2 6 0 0 0 - 18081 - 0 0 - - 0\n\n"
		admin, oper, err := parseServersState(answer, "app", "web1")
		if err != nil || admin != tc.wantAdmin || oper != tc.wantOper {
			t.Errorf("op %s admin %s: got %s, %s, %v; want %s, %s", tc.op, tc.admin, admin, oper, err, tc.wantAdmin, tc.wantOper)
		}
	}
}

func TestServerName(t *testing.T) {
	for _, tc := range []struct {
		template string
		want     string
		wantErr  string
	}{
		{"web{instance}", "web3", ""},
		{"{service}-{instance}", "api-3", ""},
		{"{service}_{port}", "api_3002", ""},
		{"{service}{instance}:{port}", "api3:3002", ""},
		{"fixed", "fixed", ""},
		{"web{id}", "", `haproxy server name template "web{id}": unknown placeholder {id} (want {service}, {instance} or {port})`},
		{"web{instance", "", `haproxy server name template "web{instance": unclosed '{'`},
		{"web}", "", `haproxy server name template "web}": '}' without '{'`},
		{"{{instance}}", "", `haproxy server name template "{{instance}}": unknown placeholder {{instance} (want {service}, {instance} or {port})`},
		{"web {instance}", "", `haproxy server name template "web {instance}": haproxy name "web 3": ' ' not allowed (letters, digits, '.', '_', '-' and ':' only)`},
		{"web/{instance}", "", `haproxy server name template "web/{instance}": haproxy name "web/3": '/' not allowed (letters, digits, '.', '_', '-' and ':' only)`},
		{"", "", `haproxy server name template "": haproxy name is empty`},
	} {
		got, err := ServerName(tc.template, "api", 3, 3002)
		if tc.wantErr != "" {
			if err == nil || err.Error() != tc.wantErr {
				t.Errorf("ServerName(%q): got %q, %v; want error %q", tc.template, got, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ServerName(%q): got %q, %v; want %q", tc.template, got, err, tc.want)
		}
	}
	if _, err := ServerName("web{port}", "web", 1, 0); err == nil || !strings.Contains(err.Error(), "the service has no port") {
		t.Errorf("ServerName with {port} and no port: got %v, want an error", err)
	}
	if _, err := ServerName("{service}", "a;b", 1, 0); err == nil {
		t.Error(`ServerName("{service}") with service "a;b": got no error`)
	}
}
