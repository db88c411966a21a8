package fleet

import (
	"context"
	"testing"
	"time"

	"github.com/pushdeploy/pushdeploy/internal/testenv"
)

func TestSession_Publish(t *testing.T) {
	e := testenv.StartEtcd(t)
	ctx := context.Background()
	h1, h2 := startSession(t, e, "web-1"), startSession(t, e, "web-2")
	for _, se := range []*live{h1, h2} {
		err := se.Publish(ctx, &Host{Env: "production", Version: "v1", Apps: map[string]*App{
			"web": {SHA: shaA, Mark: "good", Last: &Deploy{ID: "d", Kind: "deploy", SHA: shaA, Status: "succeeded", Since: time.Now()}},
		}})
		if err != nil {
			t.Fatal(err)
		}
	}
	snap, err := h1.s.Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := snap.Summarize("web", "production").String(); got != "converged on aaaaaaaaaaaa (2 hosts)" {
		t.Errorf("summary: got %q", got)
	}
	// A host whose agent stops is unreachable, with what it last said.
	h2.stop()
	snap, err = h1.s.Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	sum := snap.Summarize("web", "production")
	if got := sum.String(); got != "1 of 2 hosts on aaaaaaaaaaaa, 1 unreachable" {
		t.Errorf("summary with a host down: got %q", got)
	}
	if l := sum.Lines[1]; l.Host != "web-2" || l.State != "unreachable" || l.SHA != shaA {
		t.Errorf("line of the stopped host: got %+v", l)
	}
	if err := h1.s.Forget(ctx, "production", "web-1"); err == nil {
		t.Error("Forget of a live host: no error")
	}
	if err := h1.s.Forget(ctx, "production", "web-2"); err != nil {
		t.Fatalf("Forget: %v", err)
	}
	if snap, _ = h1.s.Read(ctx); len(snap.Hosts) != 1 {
		t.Errorf("hosts after Forget: got %d, want 1", len(snap.Hosts))
	}
}

func TestSession_Run_newLeaseRepublishes(t *testing.T) {
	e := testenv.StartEtcd(t)
	ctx := context.Background()
	se := startSession(t, e, "web-1")
	if err := se.Publish(ctx, &Host{Env: "production", Apps: map[string]*App{"web": {SHA: shaA}}}); err != nil {
		t.Fatal(err)
	}
	// etcd loses the lease (an outage longer than the TTL): the session takes a new one and
	// the host is back in the registry.
	id, _ := se.current()
	c, _, cancel, err := se.s.client(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer cancel()
	if _, err := c.Revoke(ctx, id); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 3*time.Second, "the host is live again on a new lease", func() bool {
		snap, err := se.s.Read(ctx)
		now, _ := se.current()
		return err == nil && len(snap.Hosts) == 1 && snap.Hosts[0].Alive && now != id && now != 0
	})
}

func TestSnapshot_Summarize(t *testing.T) {
	now := time.Now()
	host := func(name string, alive bool, a *App) *Host {
		return &Host{Host: name, Env: "production", Alive: alive, Apps: map[string]*App{"web": a}}
	}
	done := func(sha, status string, ago time.Duration) *Deploy {
		return &Deploy{Kind: "deploy", SHA: sha, Status: status, Since: now.Add(-ago)}
	}
	snap := &Snapshot{Hosts: []*Host{
		host("h1", true, &App{SHA: shaB, Last: done(shaB, "succeeded", time.Minute)}),
		host("h2", true, &App{SHA: shaA, Last: done(shaB, "failed", 50*time.Second)}),
		host("h3", true, &App{SHA: shaA, Deploy: &Deploy{Kind: "deploy", SHA: shaB, Status: "waiting", Since: now}}),
		host("h4", false, &App{SHA: shaA}),
		host("h5", true, &App{SHA: shaA, Last: done(shaB, "halted", 10*time.Second)}),
		{Host: "other", Env: "staging", Alive: true, Apps: map[string]*App{"web": {SHA: shaA}}},
	}, Halts: []Halt{{App: "web", Env: "production", SHA: shaB, Host: "h2"}}}
	sum := snap.Summarize("web", "production")
	if want := "1 of 5 hosts on bbbbbbbbbbbb, 1 waiting, 1 failed, 1 halted, 1 unreachable"; sum.String() != want {
		t.Errorf("got %q, want %q", sum.String(), want)
	}
	if len(sum.Halts) != 1 || sum.Converged() {
		t.Errorf("halts %v, converged %v", sum.Halts, sum.Converged())
	}
	if got := snap.Apps(); len(got) != 2 || got[0] != [2]string{"web", "production"} {
		t.Errorf("Apps: got %v", got)
	}
}

func TestStore_Resume(t *testing.T) {
	e := testenv.StartEtcd(t)
	ctx := context.Background()
	se := startSession(t, e, "h1")
	p := &Policy{MaxParallel: 1, HaltOnFailure: true}
	slot, err := se.Acquire(ctx, Ticket{App: "web", Env: "production", SHA: shaA, Deploy: "d1", Policy: p}, nil)
	if err != nil {
		t.Fatal(err)
	}
	slot.Release(ctx, Failed, "boom")
	if _, h, _ := se.s.Check(ctx, "web", "production", shaA); h == nil || h.Host != "h1" || h.Error != "boom" {
		t.Fatalf("Check after a failure: halt %+v", h)
	}
	halts, err := se.s.Resume(ctx, "web", "production")
	if err != nil || len(halts) != 1 || halts[0].SHA != shaA {
		t.Fatalf("Resume: got %+v, %v", halts, err)
	}
	if _, err := se.Acquire(ctx, Ticket{App: "web", Env: "production", SHA: shaA, Deploy: "d2", Policy: p}, nil); err != nil {
		t.Errorf("Acquire after Resume: %v", err)
	}
}
