package renv

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/metadata"
)

// Snapshot is a document as read at an etcd revision.
type Snapshot struct {
	Leaves Leaves
	Rev    int64
}

// Backoff between attempts to re-read a document while etcd is unreachable.
const (
	watchRetryMin = 200 * time.Millisecond
	watchRetryMax = 5 * time.Second
)

// Watch follows app/env's document from `from` (what the caller last read, at from.Rev;
// a zero Rev makes Watch read the current document first) and calls fn with each new
// state of the document, in order, from the calling goroutine, until ctx ends; it then
// returns ctx's error. It returns early only for a bad app or env name, never on etcd
// errors.
//
// fn sees whole transactions: on each change Watch re-reads the whole document at the
// revision etcd reported, and calls fn only when the leaves differ from the last state
// it passed on. fn may be called with a state that skips intermediate revisions (after a
// compaction, an outage, or several changes in quick succession), never with an older
// one. fn owns the Leaves it is given.
//
// When the watch is cancelled by a compaction, closed, or stops answering (a progress
// request unanswered for the request timeout after as long without news), Watch re-reads
// the current document (calling fn if it differs) and watches again from its revision,
// retrying every 200ms, doubling to 5s, while etcd is unreachable. onErr, if not nil, is
// called with the error that ended a watch and then only with the first error of each
// outage, and with nil once etcd answers the watch again after that (fn hears of any
// change it missed).
func (s *Store) Watch(ctx context.Context, app, env string, from Snapshot, fn func(Snapshot), onErr func(error)) error {
	if err := checkDoc(app, env); err != nil {
		return fmt.Errorf("watch config: %w", err)
	}
	w := &watch{s: s, prefix: s.DocPrefix(app, env), name: app + "/" + env, last: from, fn: fn, onErr: onErr}
	if w.last.Rev <= 0 {
		if err := w.resync(ctx); err != nil {
			return err
		}
	}
	for {
		c, err := w.follow(ctx)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		w.report(err)
		failed := w.failed
		if err := w.resync(ctx); err != nil {
			return err
		}
		if errors.Is(err, errStalled) && w.failed == failed {
			// etcd answers reads at once but not the watch: after etcd restarted, a
			// client's new watch streams can stay silent. Start afresh.
			w.s.conn.Renew(c)
		}
	}
}

// errStalled marks a watch that etcd stopped answering.
var errStalled = fmt.Errorf("%w: the watch stopped answering", ErrUnavailable)

type watch struct {
	s            *Store
	prefix, name string
	last         Snapshot
	fn           func(Snapshot)
	onErr        func(error)
	streams      int  // watch streams opened
	reported     bool // an error of the current outage went to onErr
	failed       int  // failed reads
}

func (w *watch) report(err error) {
	if !w.reported && w.onErr != nil {
		w.onErr(err)
	}
	w.reported = true
}

// deliver passes l at rev on if it is newer than the last state and differs from it.
func (w *watch) deliver(l Leaves, rev int64) {
	if rev < w.last.Rev {
		return
	}
	changed := !l.Equal(w.last.Leaves)
	w.last = Snapshot{Leaves: l, Rev: rev}
	if changed {
		w.fn(Snapshot{Leaves: l.Clone(), Rev: rev})
	}
}

// resync reads the current document until it succeeds or ctx ends, and delivers it.
func (w *watch) resync(ctx context.Context) error {
	wait := watchRetryMin
	for {
		l, rev, _, err := w.s.read(ctx, w.prefix, 0)
		if err == nil {
			w.deliver(l, rev)
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		w.failed++
		w.report(fmt.Errorf("read config %s from etcd: %w", w.name, err))
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
		wait = min(2*wait, watchRetryMax)
	}
}

// follow watches the document from w.last.Rev+1 and delivers its changes until the
// watch ends, fails or stops answering, or ctx ends.
func (w *watch) follow(ctx context.Context) (*clientv3.Client, error) {
	c, err := w.s.conn.Client(ctx)
	if err != nil {
		return nil, fmt.Errorf("watch config %s: %w", w.name, err)
	}
	// A gRPC stream of its own (the client shares one among watches with equal
	// metadata): one stuck reconnecting after an outage is left behind, not reused.
	w.streams++
	wctx := metadata.AppendToOutgoingContext(clientv3.WithRequireLeader(ctx), "pushdeploy-watch", strconv.Itoa(w.streams))
	wctx, cancel := context.WithCancel(wctx)
	defer cancel()
	w.s.conn.Op("watch")
	// Creating a watch waits for its stream, however long etcd is away.
	giveUp := time.AfterFunc(w.s.timeout, cancel)
	wch := c.Watch(wctx, w.prefix, clientv3.WithPrefix(), clientv3.WithRev(w.last.Rev+1))
	if !giveUp.Stop() {
		return c, fmt.Errorf("watch config %s: %w: no watch stream in %v", w.name, errStalled, w.s.timeout)
	}
	idle := time.NewTimer(w.s.timeout)
	defer idle.Stop()
	probing := false
	for {
		select {
		case <-ctx.Done():
			return c, ctx.Err()
		case resp, ok := <-wch:
			if !ok {
				return c, fmt.Errorf("watch config %s: %w", w.name, errors.New("watch closed"))
			}
			if err := resp.Err(); err != nil {
				return c, fmt.Errorf("watch config %s: %w", w.name, w.s.conn.Classify(err))
			}
			if w.reported && w.onErr != nil {
				w.onErr(nil) // the watch works again
			}
			probing, w.reported = false, false // the watch works: a new outage will be reported
			idle.Reset(w.s.timeout)
			if len(resp.Events) == 0 {
				continue // created, or a progress notification
			}
			rev := resp.Header.Revision
			l, _, _, err := w.s.read(ctx, w.prefix, rev)
			if err != nil {
				return c, fmt.Errorf("read config %s at revision %d from etcd: %w", w.name, rev, err)
			}
			w.deliver(l, rev)
		case <-idle.C:
			if probing {
				return c, fmt.Errorf("watch config %s: %w: no answer to a progress request in %v", w.name, errStalled, w.s.timeout)
			}
			pctx, pcancel := context.WithTimeout(wctx, w.s.timeout)
			w.s.conn.Op("progress")
			err := c.RequestProgress(pctx)
			pcancel()
			if err != nil {
				return c, fmt.Errorf("watch config %s: request progress: %w", w.name, w.s.conn.Classify(err))
			}
			probing = true
			idle.Reset(w.s.timeout)
		}
	}
}
