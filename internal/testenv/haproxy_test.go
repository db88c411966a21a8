package testenv

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// backendServer starts an HTTP server on 127.0.0.1 that answers its name, and returns its port.
func backendServer(t *testing.T, name string) int {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, name)
	}))
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().(*net.TCPAddr).Port
}

func TestStartHAProxy(t *testing.T) {
	servers := []HAServer{
		{Name: "web1", Port: backendServer(t, "one")},
		{Name: "web2", Port: backendServer(t, "two")},
	}
	var addr string
	var pgid int
	t.Run("serves", func(t *testing.T) {
		h := StartHAProxy(t, "app", servers)
		addr, pgid = h.Addr, h.pgid

		answer, err := haproxyCommand(h.Socket, "show stat")
		if err != nil {
			t.Fatalf("show stat: %v", err)
		}
		for _, row := range []string{"app,web1,", "app,web2,", "fe,FRONTEND,"} {
			if !strings.Contains(answer, "\n"+row) {
				t.Errorf("show stat has no row %q:\n%s", row, answer)
			}
		}
		answer, err = haproxyCommand(h.Socket, "set server app/web2 state drain")
		if err != nil || strings.TrimSpace(answer) != "" {
			t.Fatalf("set server app/web2 state drain: got %q, %v; want an empty answer (admin level)", answer, err)
		}
		answer, err = haproxyCommand(h.Socket, "set server app/web2 state ready")
		if err != nil || strings.TrimSpace(answer) != "" {
			t.Fatalf("set server app/web2 state ready: got %q, %v; want an empty answer", answer, err)
		}

		// Round robin over both servers, each answer naming its server.
		got := map[string]string{}
		client := &http.Client{Timeout: 5 * time.Second}
		for range 4 {
			resp, err := client.Get("http://" + h.Addr + "/")
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("GET through haproxy: got %s %q, want 200", resp.Status, body)
			}
			got[resp.Header.Get("X-Server")] = string(body)
		}
		if want := map[string]string{"web1": "one", "web2": "two"}; fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("X-Server to body: got %v, want %v", got, want)
		}
	})
	// The subtest's cleanup stopped haproxy, master and worker: no process is left in its
	// group, and our frontend no longer answers (the port itself may already be another
	// test's, so only an answer from this haproxy counts).
	if pgid == 0 { // haproxy never ran: the subtest said why
		return
	}
	if groupAlive(pgid) {
		t.Errorf("process group %d still has live processes after the test's cleanup", pgid)
	}
	client := &http.Client{Timeout: 2 * time.Second}
	if resp, err := client.Get("http://" + addr + "/"); err == nil {
		resp.Body.Close()
		if s := resp.Header.Get("X-Server"); s != "" {
			t.Errorf("%s still answers from server %q after the test's cleanup", addr, s)
		}
	}
}

func TestStartHAProxy_deadServer(t *testing.T) {
	// A server nobody listens on goes DOWN after two checks; haproxy itself starts anyway.
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	h := StartHAProxy(t, "app", []HAServer{{Name: "gone", Port: port}})
	deadline := time.Now().Add(5 * time.Second)
	for {
		answer, err := haproxyCommand(h.Socket, "show stat app 4 -1")
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(answer, ",DOWN,") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("server gone not DOWN after 5s:\n%s", answer)
		}
		time.Sleep(50 * time.Millisecond)
	}
	resp, err := http.Get("http://" + h.Addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("GET with no server up: got %s, want 503", resp.Status)
	}
}
