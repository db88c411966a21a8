package fleet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// ErrHalted is wrapped by Acquire's error for a commit whose rollout is halted.
var ErrHalted = errors.New("halted")

// HaltedError is Acquire's error for a halted commit; it says where it failed.
type HaltedError struct{ Halt Halt }

func (e *HaltedError) Error() string {
	msg := fmt.Sprintf("%s is halted: it failed on %s", short(e.Halt.SHA), e.Halt.Host)
	if e.Halt.Error != "" {
		msg += " (" + e.Halt.Error + ")"
	}
	return msg
}

func (e *HaltedError) Unwrap() error { return ErrHalted }

// Ticket is a deploy that asks to start.
type Ticket struct {
	App, Env, SHA string
	Deploy        string  // the deploy's id, recorded in the keys
	Policy        *Policy // nil: the app is not paced; only the lock and halts apply
}

// Slot is the right to deploy that Acquire gives; Release gives it back.
type Slot struct {
	se    *Session
	t     Ticket
	halts []string // halt keys of other commits: cleared when this deploy succeeds
}

// Outcome is how a deploy that held a slot ended.
type Outcome int

// The outcomes Release records.
const (
	// Succeeded: the commit counts towards its canaries, and halts of other commits of
	// the app are cleared (a later push clears a halt).
	Succeeded Outcome = iota
	// Failed: with HaltOnFailure the commit is halted for every host.
	Failed
	// Abandoned: the deploy did not happen (stale, superseded, stopped): nothing is recorded.
	Abandoned
)

// Acquire waits until this host may deploy t: while the app is locked in t.Env, and, with
// a Policy, until the canary hosts have deployed t.SHA (unless this host is one of them)
// and one of the policy's slots is free. wait hears what it waits for, each time that
// changes. Outcomes:
//   - a Slot: deploy, then Release it;
//   - an error wrapping ErrHalted (a *HaltedError): t.SHA failed on another host, checked
//     before starting and all along the wait; the keys this host wrote are removed;
//   - ctx's error when ctx ends first (the deploy was superseded, or the agent stops);
//     the keys this host wrote are removed.
//
// While etcd cannot be reached Acquire keeps trying, saying so through wait.
func (se *Session) Acquire(ctx context.Context, t Ticket, wait func(reason string)) (*Slot, error) {
	if err := checkNames("app", t.App, "env", t.Env, "sha", t.SHA); err != nil {
		return nil, fmt.Errorf("acquire: %w", err)
	}
	g := &gate{se: se, s: se.s, t: t, prefix: se.s.appPrefix(t.App, t.Env), say: wait}
	retry := 200 * time.Millisecond
	for {
		lease, changed := se.current()
		if lease == 0 && t.Policy != nil {
			g.report("waiting for this host's lease in etcd")
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-changed:
				continue
			}
		}
		err := g.load(ctx)
		if err == nil {
			retry = 200 * time.Millisecond
			var slot *Slot
			if slot, err = g.follow(ctx, lease, changed); slot != nil {
				return slot, nil
			}
			if errors.Is(err, ErrHalted) {
				g.abandon(ctx)
				return nil, err
			}
		}
		if ctx.Err() != nil {
			g.abandon(ctx)
			return nil, ctx.Err()
		}
		if err != nil {
			g.report("etcd unreachable: " + err.Error())
			select {
			case <-ctx.Done():
			case <-time.After(retry):
			}
			retry = min(2*retry, 2*time.Second)
		}
	}
}

// gate is one Acquire: a view of the app's keys in the environment, kept by one watch.
type gate struct {
	se     *Session
	s      *Store
	t      Ticket
	prefix string
	say    func(string)
	last   string // the last reason said

	kvs   map[string]*mvccpb.KeyValue
	rev   int64 // the watch goes on from here
	seen  int64 // the newest revision the view holds
	hosts int   // live hosts of the environment that run the app, for MaxPercent
}

func (g *gate) report(reason string) {
	if reason != g.last && g.say != nil {
		g.say(reason)
	}
	g.last = reason
}

func (g *gate) wantKey() string { return g.s.wantPrefix(g.t.App, g.t.Env, g.t.SHA) + g.se.host }
func (g *gate) slotKey() string { return g.s.slotPrefix(g.t.App, g.t.Env) + g.se.host }
func (g *gate) haltKey() string { return g.s.haltPrefix(g.t.App, g.t.Env) + g.t.SHA }

// load reads the app's keys, and with MaxPercent counts the hosts that run the app.
func (g *gate) load(ctx context.Context) error {
	resp, err := g.s.conn.Get(ctx, g.prefix, clientv3.WithPrefix())
	if err != nil {
		return err
	}
	g.kvs = make(map[string]*mvccpb.KeyValue, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		g.kvs[string(kv.Key)] = kv
	}
	g.rev, g.seen = resp.Header.Revision, resp.Header.Revision
	if p := g.t.Policy; p != nil && p.MaxPercent > 0 {
		hosts, err := g.s.hosts(ctx, g.t.Env, true)
		if err != nil {
			return err
		}
		g.hosts = 0
		for _, h := range hosts {
			if _, ok := h.Apps[g.t.App]; ok {
				g.hosts++
			}
		}
	}
	return nil
}

// follow decides, writes this host's keys when they are missing, and watches for changes
// until the host may deploy (a Slot), the commit is halted (ErrHalted) or ctx ends. It
// returns nil, nil to be called again after a new load: the lease changed, the watch
// ended, or nothing came for a while (a stream that silently died).
func (g *gate) follow(ctx context.Context, lease clientv3.LeaseID, changed <-chan struct{}) (*Slot, error) {
	c, err := g.s.conn.Client(ctx)
	if err != nil {
		return nil, err
	}
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	g.s.conn.Op("watch")
	wch := c.Watch(wctx, g.prefix, clientv3.WithPrefix(), clientv3.WithRev(g.rev+1))
	idle := 2 * g.s.timeout
	refresh := time.NewTimer(idle)
	defer refresh.Stop()
	var wrote int64 // the revision of this host's last write: decide once the view has it
	for {
		// Before the view holds this host's write (and maybe others' before it), deciding
		// would write it again, or rank the slots wrongly.
		if g.seen >= wrote {
			d := g.decide(lease)
			switch {
			case d.proceed:
				return &Slot{se: g.se, t: g.t, halts: g.otherHalts()}, nil
			case d.halt != nil:
				return nil, &HaltedError{Halt: *d.halt}
			case d.put != nil:
				resp, err := g.s.conn.Txn(ctx, []clientv3.Cmp{d.cmp}, d.ops(lease))
				if err != nil {
					return nil, err
				}
				if resp.Succeeded {
					wrote = resp.Header.Revision
				}
			default:
				g.report(d.reason)
			}
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-changed:
			return nil, nil
		case <-refresh.C:
			return nil, nil
		case resp, ok := <-wch:
			if !ok || resp.Err() != nil || resp.Canceled {
				return nil, nil
			}
			for _, ev := range resp.Events {
				if ev.Type == clientv3.EventTypeDelete {
					delete(g.kvs, string(ev.Kv.Key))
				} else {
					g.kvs[string(ev.Kv.Key)] = ev.Kv
				}
				g.seen = max(g.seen, ev.Kv.ModRevision)
			}
			g.rev = resp.Header.Revision
			refresh.Reset(idle)
		}
	}
}

// decision is what the view says: go ahead, give up (halt), write one of this host's keys
// (put, guarded by cmp, deleting dels), or wait (reason).
type decision struct {
	proceed bool
	halt    *Halt
	put     *mvccpb.KeyValue // Key and Value
	cmp     clientv3.Cmp
	dels    []string
	reason  string
}

// ops are the decision's writes, the put on lease.
func (d decision) ops(lease clientv3.LeaseID) []clientv3.Op {
	ops := []clientv3.Op{clientv3.OpPut(string(d.put.Key), string(d.put.Value), clientv3.WithLease(lease))}
	for _, k := range d.dels {
		ops = append(ops, clientv3.OpDelete(k))
	}
	return ops
}

func (g *gate) decide(lease clientv3.LeaseID) decision {
	if kv := g.kvs[g.s.lockKey(g.t.App, g.t.Env)]; kv != nil {
		var l Lock
		json.Unmarshal(kv.Value, &l)
		return decision{reason: "locked: " + l.String()}
	}
	if kv := g.kvs[g.haltKey()]; kv != nil {
		h := Halt{SHA: g.t.SHA}
		json.Unmarshal(kv.Value, &h)
		return decision{halt: &h}
	}
	p := g.t.Policy
	if p == nil {
		return decision{proceed: true}
	}
	now := time.Now().UTC()
	d, ok := g.ensure(g.wantKey(), lease, want{Host: g.se.host, Deploy: g.t.Deploy, State: WantWaiting, Since: now})
	if ok && g.wantOf(g.kvs[g.wantKey()]).Deploy != g.t.Deploy {
		// This host wanted the commit before, in another deploy: it wants it again.
		d, ok = g.rewrite(g.wantKey(), want{Host: g.se.host, Deploy: g.t.Deploy, State: WantWaiting, Since: now}), false
	}
	if !ok {
		// This host's wants of other commits are over: one want per host and app.
		for k := range g.kvs {
			if strings.HasPrefix(k, g.prefix+"want/") && strings.HasSuffix(k, "/"+g.se.host) && k != g.wantKey() {
				d.dels = append(d.dels, k)
			}
		}
		return d
	}
	if p.Canary > 0 {
		wants := g.sorted(g.s.wantPrefix(g.t.App, g.t.Env, g.t.SHA))
		succeeded := 0
		var live []string
		for _, kv := range wants {
			w := g.wantOf(kv)
			if w.State == WantSucceeded {
				succeeded++
			}
			if w.State != WantFailed {
				live = append(live, hostOf(kv))
			}
		}
		if succeeded < p.Canary {
			// The reason changes only when a canary succeeds: each change is recorded.
			if i := indexOf(live, g.se.host); i < 0 || i >= p.Canary {
				return decision{reason: fmt.Sprintf("waiting for %d canary host(s) to deploy %s: %d succeeded",
					p.Canary, short(g.t.SHA), succeeded)}
			}
		}
	}
	if d, ok := g.ensure(g.slotKey(), lease, slot{Host: g.se.host, SHA: g.t.SHA, Deploy: g.t.Deploy, Since: now}); !ok {
		return d
	}
	slots := g.sorted(g.s.slotPrefix(g.t.App, g.t.Env))
	n := p.Parallel(g.hosts)
	for _, kv := range slots[:min(n, len(slots))] {
		if hostOf(kv) == g.se.host {
			return decision{proceed: true}
		}
	}
	// Not who holds the slots: that changes with every host done, and each change of
	// reason is recorded (`pushdeploy fleet status` shows the slots).
	return decision{reason: fmt.Sprintf("waiting for a slot: %d hosts deploy at once", n)}
}

// ensure says whether key is in the view on this lease; if not, the decision writes it.
// A key left on another lease (before an agent restart) keeps its place: it is rewritten,
// not recreated.
func (g *gate) ensure(key string, lease clientv3.LeaseID, v any) (decision, bool) {
	kv := g.kvs[key]
	if kv != nil && kv.Lease == int64(lease) {
		return decision{}, true
	}
	return g.rewrite(key, v), false
}

// rewrite is the decision that writes v at key (on the lease), if key did not change since
// the view saw it.
func (g *gate) rewrite(key string, v any) decision {
	cmp := clientv3.Compare(clientv3.CreateRevision(key), "=", 0)
	if kv := g.kvs[key]; kv != nil {
		cmp = clientv3.Compare(clientv3.ModRevision(key), "=", kv.ModRevision)
	}
	return decision{cmp: cmp, put: &mvccpb.KeyValue{Key: []byte(key), Value: []byte(mustJSON(v))}}
}

func (g *gate) wantOf(kv *mvccpb.KeyValue) want {
	var w want
	if kv != nil {
		json.Unmarshal(kv.Value, &w)
	}
	return w
}

// sorted returns the view's keys under prefix (one level: prefix + host) in create order.
func (g *gate) sorted(prefix string) []*mvccpb.KeyValue {
	var out []*mvccpb.KeyValue
	for k, kv := range g.kvs {
		if rest, ok := strings.CutPrefix(k, prefix); ok && rest != "" && !strings.Contains(rest, "/") {
			out = append(out, kv)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].CreateRevision < out[j].CreateRevision })
	return out
}

// otherHalts are the halt keys of the app's other commits.
func (g *gate) otherHalts() []string {
	var out []string
	for k := range g.kvs {
		if strings.HasPrefix(k, g.s.haltPrefix(g.t.App, g.t.Env)) && k != g.haltKey() {
			out = append(out, k)
		}
	}
	return out
}

// abandon removes this host's want and slot, best effort.
func (g *gate) abandon(ctx context.Context) {
	if g.t.Policy == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), g.s.timeout)
	defer cancel()
	g.s.conn.Txn(ctx, nil, []clientv3.Op{clientv3.OpDelete(g.wantKey()), clientv3.OpDelete(g.slotKey())})
}

// Release records how the deploy ended and frees the slot, retrying while etcd cannot be
// reached until ctx ends (the lease's end frees the slot then). See Outcome.
func (sl *Slot) Release(ctx context.Context, o Outcome, why string) error {
	if sl == nil || sl.t.Policy == nil {
		return nil
	}
	g := &gate{se: sl.se, s: sl.se.s, t: sl.t, prefix: sl.se.s.appPrefix(sl.t.App, sl.t.Env)}
	retry := 200 * time.Millisecond
	for {
		err := sl.release(ctx, g, o, why)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("release slot of %s: %w", short(sl.t.SHA), err)
		case <-time.After(retry):
		}
		retry = min(2*retry, 2*time.Second)
	}
}

func (sl *Slot) release(ctx context.Context, g *gate, o Outcome, why string) error {
	ops := []clientv3.Op{clientv3.OpDelete(g.slotKey())}
	if o == Abandoned {
		_, err := g.s.conn.Txn(ctx, nil, append(ops, clientv3.OpDelete(g.wantKey())))
		return err
	}
	lease, err := sl.se.waitLease(ctx)
	if err != nil {
		return err
	}
	w := want{Host: sl.se.host, Deploy: sl.t.Deploy, State: WantSucceeded, Since: time.Now().UTC()}
	if o == Failed {
		w.State = WantFailed
	}
	ops = append(ops, clientv3.OpPut(g.wantKey(), mustJSON(w), clientv3.WithLease(lease)))
	if o == Succeeded {
		for _, k := range sl.halts {
			ops = append(ops, clientv3.OpDelete(k))
		}
	}
	if o == Failed && sl.t.Policy.HaltOnFailure {
		h := Halt{SHA: sl.t.SHA, Host: sl.se.host, Deploy: sl.t.Deploy, Error: why, At: w.Since}
		halt := clientv3.OpPut(g.haltKey(), mustJSON(h))
		_, err := g.s.conn.Txn(ctx, []clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(g.haltKey()), "=", 0)}, append(ops, halt), ops...)
		return err
	}
	_, err = g.s.conn.Txn(ctx, nil, ops)
	return err
}

func hostOf(kv *mvccpb.KeyValue) string {
	k := string(kv.Key)
	return k[strings.LastIndexByte(k, '/')+1:]
}

func indexOf(list []string, s string) int {
	for i, e := range list {
		if e == s {
			return i
		}
	}
	return -1
}

func short(sha string) string { return sha[:min(len(sha), 12)] }
