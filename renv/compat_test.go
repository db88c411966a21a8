package renv

import (
	"context"
	"testing"
	"time"

	"github.com/pushdeploy/pushdeploy/internal/testenv"
)

// TestStore_Compat34 runs the basics against Debian's etcd-server 3.4, which hosts run.
func TestStore_Compat34(t *testing.T) {
	t.Parallel()
	e := testenv.StartEtcdServer(t)
	s, raw := openStore(t, e, func(c *Config) { c.RequestTimeout = 300 * time.Millisecond }), rawClient(t, e)
	ctx := context.Background()

	if l, _ := mustGet(t, s, "web", "production"); len(l) != 0 {
		t.Errorf("Get of a missing document = %s, want empty", l.Document())
	}
	rev := put(t, s, "web", "production", allTypes)
	if got, _ := mustGet(t, s, "web", "production"); !got.Equal(allTypes) {
		t.Errorf("Get = %s, want %s", got.Document(), allTypes.Document())
	}
	w := startWatch(t, s, "web", "production", Snapshot{allTypes, rev}, nil)
	for _, want := range []Leaves{leaves("a", `1`), leaves("a", `2`, "b/c", `[]`)} {
		rev = put(t, s, "web", "production", want)
		expect(t, w.next(t), want, rev)
	}
	w.quiet(t) // progress requests are answered by 3.4 too: no false outage, no call

	// Compaction and an outage on 3.4.
	put(t, s, "web", "production", leaves("a", `3`))
	want := leaves("a", `4`)
	last := put(t, s, "web", "production", want)
	if _, err := raw.Compact(ctx, last); err != nil {
		t.Fatal(err)
	}
	w.stop()
	w = startWatch(t, s, "web", "production", Snapshot{leaves("a", `2`, "b/c", `[]`), rev}, nil)
	expect(t, w.next(t), want, last)

	e.Stop()
	e.Start(t)
	want = leaves("a", `5`)
	last = updateRetrying(t, s, want)
	expect(t, w.next(t), want, last)
	if n := len(w.errs); n == 0 {
		t.Error("onErr not called")
	}
}
