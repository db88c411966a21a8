package admin_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pushdeploy/pushdeploy/admin"
	"github.com/pushdeploy/pushdeploy/release"
	"github.com/pushdeploy/pushdeploy/state"
)

// fakeBackend answers with its func fields; a nil one answers "not implemented".
type fakeBackend struct {
	status   func(app string) ([]admin.AppStatus, error)
	history  func(app string, limit int) ([]state.Deploy, error)
	deploy   func(app, id string) (*state.Deploy, []byte, error)
	gc       func(app string) (release.GCResult, error)
	restart  func(app, service string) (*state.Deploy, error)
	rollback func(app, sha string) (*state.Deploy, error)
	follow   func(app, id string, from int64, emit func([]byte, int64) error) (*state.Deploy, error)
	deployB  func(app string, r admin.DeployRequest) (*state.Deploy, error)
}

func (f *fakeBackend) Follow(_ context.Context, app, id string, from int64, emit func([]byte, int64) error) (*state.Deploy, error) {
	if f.follow == nil {
		return nil, errNotImplemented
	}
	return f.follow(app, id, from, emit)
}

func (f *fakeBackend) DeployBranch(_ context.Context, app string, r admin.DeployRequest) (*state.Deploy, error) {
	if f.deployB == nil {
		return nil, errNotImplemented
	}
	return f.deployB(app, r)
}

var errNotImplemented = errors.New("not implemented")

func (f *fakeBackend) Status(_ context.Context, app string) ([]admin.AppStatus, error) {
	if f.status == nil {
		return nil, errNotImplemented
	}
	return f.status(app)
}

func (f *fakeBackend) History(_ context.Context, app string, limit int) ([]state.Deploy, error) {
	if f.history == nil {
		return nil, errNotImplemented
	}
	return f.history(app, limit)
}

func (f *fakeBackend) Deploy(_ context.Context, app, id string) (*state.Deploy, []byte, error) {
	if f.deploy == nil {
		return nil, nil, errNotImplemented
	}
	return f.deploy(app, id)
}

func (f *fakeBackend) GC(_ context.Context, app string) (release.GCResult, error) {
	if f.gc == nil {
		return release.GCResult{}, errNotImplemented
	}
	return f.gc(app)
}

func (f *fakeBackend) Restart(_ context.Context, app, service string) (*state.Deploy, error) {
	if f.restart == nil {
		return nil, errNotImplemented
	}
	return f.restart(app, service)
}

func (f *fakeBackend) Rollback(_ context.Context, app, sha string) (*state.Deploy, error) {
	if f.rollback == nil {
		return nil, errNotImplemented
	}
	return f.rollback(app, sha)
}

// serve runs the admin API for b on a socket in a fresh directory and returns a client of it.
func serve(t *testing.T, b admin.Backend) (*admin.Client, string) {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "run", "admin.sock")
	ln, err := admin.Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: admin.Handler(b)}
	done := make(chan struct{})
	go func() { defer close(done); srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close(); <-done })
	return admin.NewClient(sock), sock
}

func TestClient_roundTrip(t *testing.T) {
	d := &state.Deploy{ID: "20250101-120000.000-abcdef", App: "web", Kind: state.KindRestart, Status: state.StatusQueued, Service: "api"}
	b := &fakeBackend{
		status: func(app string) ([]admin.AppStatus, error) {
			return []admin.AppStatus{{App: app, Repo: "acme/web", Queued: d, Agent: true,
				Config: &admin.ConfigStatus{Doc: "web/production", Rev: 7}}}, nil
		},
		history: func(app string, limit int) ([]state.Deploy, error) {
			return []state.Deploy{{ID: fmt.Sprintf("%s-%d", app, limit)}}, nil
		},
		deploy: func(app, id string) (*state.Deploy, []byte, error) {
			return &state.Deploy{ID: id, App: app}, []byte("{\"message\":\"log line\"}\n"), nil
		},
		gc: func(app string) (release.GCResult, error) {
			return release.GCResult{Removed: []string{"abc"}, Objects: 3, Bytes: 42}, nil
		},
		restart: func(app, service string) (*state.Deploy, error) {
			if app != "web" || service != "api" {
				return nil, fmt.Errorf("got restart of %s/%s", app, service)
			}
			return d, nil
		},
		rollback: func(app, sha string) (*state.Deploy, error) {
			return &state.Deploy{ID: "r", App: app, SHA: sha, Kind: state.KindRollback}, nil
		},
	}
	c, _ := serve(t, b)
	ctx := t.Context()

	st, err := c.Status(ctx, "web")
	if err != nil || len(st) != 1 || st[0].App != "web" || st[0].Queued == nil || st[0].Queued.ID != d.ID || st[0].Config.Rev != 7 || !st[0].Agent {
		t.Errorf("Status: got %+v, %v", st, err)
	}
	hist, err := c.History(ctx, "web", 5)
	if err != nil || len(hist) != 1 || hist[0].ID != "web-5" {
		t.Errorf("History: got %+v, %v; want one deploy web-5", hist, err)
	}
	got, log, err := c.Deploy(ctx, "web", "some id/with slash")
	if err != nil || got.ID != "some id/with slash" || string(log) != "{\"message\":\"log line\"}\n" {
		t.Errorf("Deploy: got %+v, %q, %v", got, log, err)
	}
	res, err := c.GC(ctx, "web")
	if err != nil || len(res.Removed) != 1 || res.Objects != 3 || res.Bytes != 42 {
		t.Errorf("GC: got %+v, %v", res, err)
	}
	if got, err := c.Restart(ctx, "web", "api"); err != nil || got.ID != d.ID || got.Service != "api" {
		t.Errorf("Restart: got %+v, %v", got, err)
	}
	if got, err := c.Rollback(ctx, "web", "abc1234"); err != nil || got.SHA != "abc1234" || got.Kind != state.KindRollback {
		t.Errorf("Rollback: got %+v, %v", got, err)
	}
}

// TestClient_errors checks that the backend's errors reach the CLI with their text, and that
// a missing app or deploy is still state.ErrNotFound on the client's side.
func TestClient_errors(t *testing.T) {
	tests := []struct {
		name         string
		err          error
		wantNotFound bool
		wantText     string
	}{
		{"not found", fmt.Errorf("app %q: %w", "nope", state.ErrNotFound), true, `app "nope": not found`},
		{"nothing to do", fmt.Errorf("restart web: no release is current yet: %w", admin.ErrNothingToDo), false, "agent: restart web: no release is current yet: nothing to do"},
		{"other", errors.New("disk on fire"), false, "agent: disk on fire"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, _ := serve(t, &fakeBackend{restart: func(string, string) (*state.Deploy, error) { return nil, tt.err }})
			_, err := c.Restart(t.Context(), "web", "")
			if err == nil || !strings.Contains(err.Error(), tt.wantText) {
				t.Fatalf("got error %v, want one containing %q", err, tt.wantText)
			}
			if got := errors.Is(err, state.ErrNotFound); got != tt.wantNotFound {
				t.Errorf("errors.Is(%v, state.ErrNotFound): got %v, want %v", err, got, tt.wantNotFound)
			}
		})
	}
}

func TestClient_agentDown(t *testing.T) {
	c := admin.NewClient(filepath.Join(t.TempDir(), "admin.sock"))
	if _, err := c.Status(t.Context(), ""); !errors.Is(err, admin.ErrAgentDown) {
		t.Errorf("nothing listening: got %v, want ErrAgentDown", err)
	}
}

func TestListen(t *testing.T) {
	_, sock := serve(t, &fakeBackend{})
	for p, want := range map[string]os.FileMode{filepath.Dir(sock): 0o700, sock: 0o600} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != want {
			t.Errorf("%s: got mode %o, want %o", p, got, want)
		}
	}
	if ln, err := admin.Listen(sock); err == nil || !strings.Contains(err.Error(), "another agent is running") {
		if ln != nil {
			ln.Close()
		}
		t.Errorf("second Listen on a live socket: got %v, want another agent is running", err)
	}
}

func TestClient_deployAndFollow(t *testing.T) {
	lines := []string{`{"message":"deploy status","status":"fetching"}`, `not json`, `{"message":"deploy succeeded"}`}
	b := &fakeBackend{
		deployB: func(app string, r admin.DeployRequest) (*state.Deploy, error) {
			if r.Env == "staging" {
				return nil, fmt.Errorf("host deploys production, not staging: %w", admin.ErrInvalid)
			}
			return &state.Deploy{ID: "m1", App: app, SHA: r.SHA, Pusher: r.User, Trigger: state.TriggerManual}, nil
		},
		follow: func(app, id string, from int64, emit func([]byte, int64) error) (*state.Deploy, error) {
			if id == "nope" {
				return nil, fmt.Errorf("deploy nope: %w", state.ErrNotFound)
			}
			for i, l := range lines[from:] {
				if err := emit([]byte(l), from+int64(i)+1); err != nil {
					return nil, err
				}
			}
			return &state.Deploy{ID: id, App: app, Status: state.StatusSucceeded}, nil
		},
	}
	c, _ := serve(t, b)
	ctx := t.Context()
	d, err := c.DeployBranch(ctx, "web", admin.DeployRequest{SHA: "abc", User: "ops"})
	if err != nil || d.ID != "m1" || d.SHA != "abc" || d.Pusher != "ops" {
		t.Errorf("DeployBranch: got %+v, %v", d, err)
	}
	if _, err := c.DeployBranch(ctx, "web", admin.DeployRequest{Env: "staging"}); !errors.Is(err, admin.ErrInvalid) || !strings.Contains(err.Error(), "not staging") {
		t.Errorf("DeployBranch to another environment: got %v, want ErrInvalid", err)
	}
	var got []string
	var nexts []int64
	final, err := c.Follow(ctx, "web", "d1", 0, func(line []byte, next int64) error {
		got = append(got, string(line))
		nexts = append(nexts, next)
		return nil
	})
	if err != nil || final.Status != state.StatusSucceeded || len(got) != 3 || got[0] != lines[0] || got[1] != `{"message":"not json"}` || nexts[2] != 3 {
		t.Errorf("Follow: got %q at %v, %+v, %v", got, nexts, final, err)
	}
	if _, err := c.Follow(ctx, "web", "nope", 0, func([]byte, int64) error { return nil }); !errors.Is(err, state.ErrNotFound) {
		t.Errorf("Follow of an unknown deploy: got %v, want ErrNotFound", err)
	}
}
