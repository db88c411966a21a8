package agent

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Status is where a deploy is in its life.
type Status string

// The statuses a deploy goes through. The last four are final.
const (
	StatusQueued     Status = "queued"
	StatusFetching   Status = "fetching"
	StatusReleasing  Status = "releasing"
	StatusScript     Status = "running-script"
	StatusStarting   Status = "starting" // installing units, starting or restarting instances
	StatusSucceeded  Status = "succeeded"
	StatusFailed     Status = "failed"
	StatusSuperseded Status = "superseded"
	StatusStale      Status = "stale"
)

// Final reports whether nothing more will happen to a deploy in this status.
func (s Status) Final() bool {
	switch s {
	case StatusSucceeded, StatusFailed, StatusSuperseded, StatusStale:
		return true
	}
	return false
}

// The kinds of deploy: what a queued record does when it runs.
const (
	KindDeploy   = "deploy"   // a pushed commit: fetch, build, roll out, switch current
	KindRestart  = "restart"  // a rolling restart of the current release, health-checked
	KindRollback = "rollback" // a rollout to a release already on disk, then switch current
	KindConfig   = "config"   // a changed configuration in etcd: new environment file, rolling restart
)

// Deploy is the durable record of one deploy, restart or rollback (Kind).
type Deploy struct {
	ID         string `json:"id"`
	App        string `json:"app"`
	Kind       string `json:"kind,omitempty"`    // KindDeploy when empty (older records)
	Service    string `json:"service,omitempty"` // a restart of one service only
	SHA        string `json:"sha"`
	Branch     string `json:"branch"`
	Delivery   string `json:"delivery,omitempty"`
	Pusher     string `json:"pusher,omitempty"`
	Message    string `json:"message,omitempty"`
	Status     Status `json:"status"`
	Previous   string `json:"previous,omitempty"` // the release that was current before
	Error      string `json:"error,omitempty"`
	Note       string `json:"note,omitempty"` // why it was stale or superseded, or other detail
	FetchBytes int64  `json:"fetch_bytes,omitempty"`
	// ConfigRev is the etcd revision of the configuration the deploy rolled out, and
	// ConfigSource where it came from: "etcd", or "cache" while etcd was unreachable.
	ConfigRev    int64     `json:"config_rev,omitempty"`
	ConfigSource string    `json:"config_source,omitempty"`
	Queued       time.Time `json:"queued"`
	Started      time.Time `json:"started,omitzero"`
	Finished     time.Time `json:"finished,omitzero"`
	Updated      time.Time `json:"updated"`
}

var (
	bucketDeploys    = []byte("deploys")    // app → (id → Deploy JSON)
	bucketDeliveries = []byte("deliveries") // "app/delivery" → 8-byte seq
	bucketDelivSeq   = []byte("delivseq")   // 8-byte seq → "app/delivery", oldest first
)

// DefaultDeliveryLimit is how many delivery ids are remembered, newest first, to answer a
// redelivery as a duplicate.
const DefaultDeliveryLimit = 10000

// ErrNotFound is returned for a deploy id or app the state does not know.
var ErrNotFound = errors.New("not found")

// State is the agent's durable record of deploys and of the deliveries it has seen, kept in
// one bbolt file: every change is a transaction synced to disk, so a kill -9 loses nothing
// that was answered.
type State struct {
	db            *bolt.DB
	commits       *groupCommit
	historyLimit  int
	deliveryLimit int
}

// OpenState opens (creating) the state file. With readOnly it takes a shared lock and fails
// after a second if the agent holds the file: the CLI then talks to the agent instead.
func OpenState(path string, readOnly bool, historyLimit int) (*State, error) {
	if !readOnly {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return nil, fmt.Errorf("open state: %w", err)
		}
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second, ReadOnly: readOnly})
	if err != nil {
		return nil, fmt.Errorf("open state %s: %w", path, err)
	}
	s := &State{db: db, commits: &groupCommit{db: db}, historyLimit: historyLimit, deliveryLimit: DefaultDeliveryLimit}
	if !readOnly {
		err = db.Update(func(tx *bolt.Tx) error {
			for _, b := range [][]byte{bucketDeploys, bucketDeliveries, bucketDelivSeq} {
				if _, err := tx.CreateBucketIfNotExists(b); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			db.Close()
			return nil, fmt.Errorf("open state %s: %w", path, err)
		}
	}
	return s, nil
}

// Close closes the state file.
func (s *State) Close() error { return s.db.Close() }

// deployIDs hands out deploy ids that sort in the order deploys were accepted: the time to
// the millisecond, pushed forward when two deploys share one, and a random suffix so that ids
// stay unique across restarts and hosts.
type deployIDs struct {
	mu   sync.Mutex
	last time.Time
}

func (g *deployIDs) next(now time.Time) string {
	g.mu.Lock()
	now = now.UTC().Truncate(time.Millisecond)
	if !now.After(g.last) {
		now = g.last.Add(time.Millisecond)
	}
	g.last = now
	g.mu.Unlock()
	return newDeployID(now)
}

func newDeployID(t time.Time) string {
	var b [3]byte
	rand.Read(b[:])
	return t.UTC().Format("20060102-150405.000") + "-" + hex.EncodeToString(b[:])
}

func putDeploy(tx *bolt.Tx, d *Deploy) error {
	apps := tx.Bucket(bucketDeploys)
	b, err := apps.CreateBucketIfNotExists([]byte(d.App))
	if err != nil {
		return err
	}
	data, err := json.Marshal(d)
	if err != nil {
		return err
	}
	return b.Put([]byte(d.ID), data)
}

// Save writes a deploy record.
func (s *State) Save(d *Deploy) error {
	d.Updated = time.Now().UTC()
	if err := s.db.Update(func(tx *bolt.Tx) error { return putDeploy(tx, d) }); err != nil {
		return fmt.Errorf("save deploy %s: %w", d.ID, err)
	}
	return nil
}

// Accept records a delivery and, when d is not nil, the deploy it queues, in one transaction:
// a delivery is never remembered without its deploy nor the other way round. It returns
// false without writing anything when the delivery was seen before.
//
// Concurrent deliveries share one transaction and one fsync (groupCommit), which is what
// lets a host answer a burst of webhooks quickly while still syncing each before answering.
func (s *State) Accept(app, delivery string, d *Deploy) (fresh bool, err error) {
	key := []byte(app + "/" + delivery)
	err = s.commits.Update(func(tx *bolt.Tx) error {
		fresh = false // may run more than once
		seen := tx.Bucket(bucketDeliveries)
		if seen.Get(key) != nil {
			return nil
		}
		fresh = true
		order := tx.Bucket(bucketDelivSeq)
		seq, _ := order.NextSequence()
		var k [8]byte
		binary.BigEndian.PutUint64(k[:], seq)
		if err := seen.Put(key, k[:]); err != nil {
			return err
		}
		if err := order.Put(k[:], key); err != nil {
			return err
		}
		// Forget the oldest deliveries beyond the limit: ids only matter while GitHub may
		// still redeliver them.
		c := order.Cursor()
		var drop [][2][]byte
		for first, old := c.First(); first != nil && seq-binary.BigEndian.Uint64(first) >= uint64(s.deliveryLimit); first, old = c.Next() {
			drop = append(drop, [2][]byte{append([]byte(nil), first...), append([]byte(nil), old...)})
		}
		// Deleting under a moving bbolt cursor skips entries, so delete after the walk.
		for _, kv := range drop {
			if err := order.Delete(kv[0]); err != nil {
				return err
			}
			if err := seen.Delete(kv[1]); err != nil {
				return err
			}
		}
		if d != nil {
			d.Updated = time.Now().UTC()
			return putDeploy(tx, d)
		}
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("record delivery %s: %w", delivery, err)
	}
	return fresh, nil
}

// History returns an app's deploys, newest first, at most limit (0: all kept).
func (s *State) History(app string, limit int) ([]Deploy, error) {
	var out []Deploy
	err := s.db.View(func(tx *bolt.Tx) error {
		apps := tx.Bucket(bucketDeploys)
		if apps == nil {
			return nil
		}
		b := apps.Bucket([]byte(app))
		if b == nil {
			return nil
		}
		c := b.Cursor()
		for k, v := c.Last(); k != nil && (limit <= 0 || len(out) < limit); k, v = c.Prev() {
			var d Deploy
			if err := json.Unmarshal(v, &d); err != nil {
				return fmt.Errorf("decode deploy %s: %w", k, err)
			}
			out = append(out, d)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read history of %s: %w", app, err)
	}
	return out, nil
}

// Get returns one deploy of an app by id.
func (s *State) Get(app, id string) (*Deploy, error) {
	var d *Deploy
	err := s.db.View(func(tx *bolt.Tx) error {
		apps := tx.Bucket(bucketDeploys)
		if apps == nil || apps.Bucket([]byte(app)) == nil {
			return ErrNotFound
		}
		v := apps.Bucket([]byte(app)).Get([]byte(id))
		if v == nil {
			return ErrNotFound
		}
		d = new(Deploy)
		return json.Unmarshal(v, d)
	})
	if err != nil {
		return nil, fmt.Errorf("deploy %s of %s: %w", id, app, err)
	}
	return d, nil
}

// Prune drops an app's oldest final deploys beyond the history limit and returns their ids,
// so their logs can go too.
func (s *State) Prune(app string) ([]string, error) {
	var dropped []string
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketDeploys).Bucket([]byte(app))
		if b == nil {
			return nil
		}
		n := b.Stats().KeyN
		c := b.Cursor()
		for k, v := c.First(); k != nil && n-len(dropped) > s.historyLimit; k, v = c.Next() {
			var d Deploy
			if json.Unmarshal(v, &d) == nil && !d.Status.Final() {
				continue
			}
			dropped = append(dropped, string(k))
		}
		for _, k := range dropped {
			if err := b.Delete([]byte(k)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("prune history of %s: %w", app, err)
	}
	return dropped, nil
}

// Unfinished returns the deploys of every app that are not final: after a crash, the
// deploys that were queued or under way.
func (s *State) Unfinished() ([]Deploy, error) {
	var out []Deploy
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketDeploys).ForEachBucket(func(app []byte) error {
			return tx.Bucket(bucketDeploys).Bucket(app).ForEach(func(k, v []byte) error {
				var d Deploy
				if err := json.Unmarshal(v, &d); err != nil {
					return fmt.Errorf("decode deploy %s: %w", k, err)
				}
				if !d.Status.Final() {
					out = append(out, d)
				}
				return nil
			})
		})
	})
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, err
}
