package testenv

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/websocket"

	"github.com/pushdeploy/pushdeploy/internal/syncbuf"
)

// chromiumFlags keep Debian's headless Chromium quiet and on this machine: no background
// requests, no sandbox (tests run as root), and a dead proxy for anything but loopback, so
// that a page can reach nothing else.
var chromiumFlags = []string{
	"--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
	"--no-default-browser-check", "--disable-extensions", "--disable-background-networking",
	"--disable-component-update", "--disable-sync", "--disable-default-apps", "--no-pings",
	"--disable-domain-reliability", "--disable-client-side-phishing-detection", "--metrics-recording-only",
	"--mute-audio", "--hide-scrollbars", "--proxy-server=http://127.0.0.1:9",
	"--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE localhost , EXCLUDE 127.0.0.1",
}

// ChromiumPath returns Debian's chromium, or ends the test through Unavailable.
func ChromiumPath(t testing.TB) string {
	t.Helper()
	p, err := exec.LookPath("chromium")
	if err != nil {
		Unavailable(t, "chromium", "%v (apt-get install chromium)", err)
	}
	return p
}

// Chromium runs headless Chromium once with args (a page URL among them) and returns its
// standard output: the DOM with --dump-dom. It fails the test if Chromium fails or takes
// more than a minute.
func Chromium(t testing.TB, args ...string) string {
	t.Helper()
	bin := ChromiumPath(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append(append(append([]string{}, chromiumFlags...), "--user-data-dir="+t.TempDir()), args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	var stderr syncbuf.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("chromium %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return string(out)
}

// Browser is a headless Chromium driven over the DevTools protocol, one page.
type Browser struct {
	t      testing.TB
	cmd    *exec.Cmd
	exited chan struct{}
	ws     *websocket.Conn
	stderr syncbuf.Buffer

	mu      sync.Mutex
	nextID  int
	pending map[int]chan cdpReply
	events  chan Event
	done    chan struct{} // closed when the reader returned
}

// Event is a DevTools protocol event (Runtime.bindingCalled…).
type Event struct {
	Method string
	Params json.RawMessage
	At     time.Time // when it was read off the socket
}

type cdpReply struct {
	Result json.RawMessage
	Err    error
}

// NewBrowser starts Chromium with its DevTools endpoint on 127.0.0.1 and connects to its
// page. It is stopped when the test ends.
func NewBrowser(t testing.TB) *Browser {
	t.Helper()
	bin := ChromiumPath(t)
	dir := t.TempDir()
	b := &Browser{t: t, exited: make(chan struct{}), pending: map[int]chan cdpReply{}, events: make(chan Event, 4096), done: make(chan struct{})}
	args := append(append([]string{}, chromiumFlags...), "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
		"--remote-allow-origins=http://127.0.0.1", "--user-data-dir="+dir, "--window-size=1100,900", "about:blank")
	b.cmd = exec.Command(bin, args...)
	b.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	b.cmd.Stderr = &b.stderr
	if err := b.cmd.Start(); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	go func() { b.cmd.Wait(); close(b.exited) }()
	t.Cleanup(b.close)
	var port string
	deadline := time.Now().Add(30 * time.Second)
	for port == "" {
		if data, err := os.ReadFile(filepath.Join(dir, "DevToolsActivePort")); err == nil {
			port, _, _ = strings.Cut(string(data), "\n")
		}
		select {
		case <-b.exited:
			t.Fatalf("chromium exited: %s", b.stderr.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("chromium: no DevTools port after 30s: %s", b.stderr.String())
		}
	}
	resp, err := http.Get("http://127.0.0.1:" + port + "/json/list")
	if err != nil {
		t.Fatalf("chromium: list targets: %v", err)
	}
	var targets []struct{ Type, WebSocketDebuggerURL string }
	err = json.NewDecoder(resp.Body).Decode(&targets)
	resp.Body.Close()
	ws := ""
	for _, tg := range targets {
		if tg.Type == "page" {
			ws = tg.WebSocketDebuggerURL
			break
		}
	}
	if err != nil || ws == "" {
		t.Fatalf("chromium: no page target (%v): %+v", err, targets)
	}
	if b.ws, err = websocket.Dial(ws, "", "http://127.0.0.1"); err != nil {
		t.Fatalf("chromium: connect to %s: %v", ws, err)
	}
	b.ws.MaxPayloadBytes = 64 << 20
	go b.read()
	return b
}

// read dispatches what Chromium sends: replies to their callers, events to Events.
func (b *Browser) read() {
	defer close(b.done)
	defer close(b.events)
	for {
		var msg struct {
			ID     int
			Result json.RawMessage
			Error  *struct{ Message string }
			Method string
			Params json.RawMessage
		}
		if err := websocket.JSON.Receive(b.ws, &msg); err != nil {
			b.mu.Lock()
			for id, ch := range b.pending {
				ch <- cdpReply{Err: fmt.Errorf("chromium connection: %w", err)}
				delete(b.pending, id)
			}
			b.mu.Unlock()
			return
		}
		if msg.Method != "" {
			select {
			case b.events <- Event{Method: msg.Method, Params: msg.Params, At: time.Now()}:
			default: // nobody listens: dropped
			}
			continue
		}
		b.mu.Lock()
		ch := b.pending[msg.ID]
		delete(b.pending, msg.ID)
		b.mu.Unlock()
		if ch == nil {
			continue
		}
		r := cdpReply{Result: msg.Result}
		if msg.Error != nil {
			r.Err = fmt.Errorf("%s", msg.Error.Message)
		}
		ch <- r
	}
}

// Call sends a DevTools command and returns its result, failing the test on an error.
func (b *Browser) Call(method string, params any) json.RawMessage {
	b.t.Helper()
	if params == nil {
		params = map[string]any{}
	}
	ch := make(chan cdpReply, 1)
	b.mu.Lock()
	b.nextID++
	id := b.nextID
	b.pending[id] = ch
	b.mu.Unlock()
	if err := websocket.JSON.Send(b.ws, map[string]any{"id": id, "method": method, "params": params}); err != nil {
		b.t.Fatalf("chromium %s: %v", method, err)
	}
	select {
	case r := <-ch:
		if r.Err != nil {
			b.t.Fatalf("chromium %s: %v", method, r.Err)
		}
		return r.Result
	case <-time.After(30 * time.Second):
		b.t.Fatalf("chromium %s: no answer in 30s", method)
	}
	return nil
}

// Events are the DevTools events received, in order (with Runtime.enable, bindings…).
func (b *Browser) Events() <-chan Event { return b.events }

// Eval evaluates a JavaScript expression in the page (awaiting a promise) and decodes its
// value into out.
func (b *Browser) Eval(expr string, out any) {
	b.t.Helper()
	res := b.Call("Runtime.evaluate", map[string]any{"expression": expr, "returnByValue": true, "awaitPromise": true})
	var r struct {
		Result           struct{ Value json.RawMessage }
		ExceptionDetails *struct{ Text string }
	}
	if err := json.Unmarshal(res, &r); err != nil {
		b.t.Fatalf("evaluate %s: %v", expr, err)
	}
	if r.ExceptionDetails != nil {
		b.t.Fatalf("evaluate %s: %s", expr, r.ExceptionDetails.Text)
	}
	if out != nil && len(r.Result.Value) > 0 {
		if err := json.Unmarshal(r.Result.Value, out); err != nil {
			b.t.Fatalf("evaluate %s: decode %s: %v", expr, r.Result.Value, err)
		}
	}
}

// Navigate loads url and returns once its load event fired.
func (b *Browser) Navigate(url string) {
	b.t.Helper()
	b.Call("Page.enable", nil)
	b.Call("Page.navigate", map[string]any{"url": url})
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		var state string
		b.Eval("document.readyState + ' ' + location.href", &state)
		if strings.HasPrefix(state, "complete ") && strings.HasSuffix(state, url) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	b.t.Fatalf("chromium: %s did not load in 30s", url)
}

// Screenshot writes a PNG of the page as it is to path.
func (b *Browser) Screenshot(path string) {
	b.t.Helper()
	var r struct{ Data string }
	json.Unmarshal(b.Call("Page.captureScreenshot", map[string]any{"format": "png", "captureBeyondViewport": true}), &r)
	png, err := base64.StdEncoding.DecodeString(r.Data)
	if err != nil || len(png) == 0 {
		b.t.Fatalf("screenshot: %v (%d bytes)", err, len(png))
	}
	if err := os.WriteFile(path, png, 0o644); err != nil {
		b.t.Fatal(err)
	}
}

func (b *Browser) close() {
	if b.ws != nil {
		b.ws.Close()
		<-b.done
	}
	killGroup(b.cmd.Process.Pid, b.exited)
}
