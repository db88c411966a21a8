package state

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"

	bolt "go.etcd.io/bbolt"
)

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

// Store is the agent's durable record of deploys and of the deliveries it has seen, kept in
// one bbolt file: every change is a transaction synced to disk, so a kill -9 loses nothing
// that was answered.
type Store struct {
	db            *bolt.DB
	commits       *groupCommit
	historyLimit  int
	deliveryLimit int
}

// Open opens (creating) the state file. With readOnly it takes a shared lock and fails
// after a second if the agent holds the file: the CLI then talks to the agent instead.
func Open(path string, readOnly bool, historyLimit int) (*Store, error) {
	if !readOnly {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return nil, fmt.Errorf("open state: %w", err)
		}
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second, ReadOnly: readOnly})
	if err != nil {
		return nil, fmt.Errorf("open state %s: %w", path, err)
	}
	s := &Store{db: db, commits: &groupCommit{db: db}, historyLimit: historyLimit, deliveryLimit: DefaultDeliveryLimit}
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
func (s *Store) Close() error { return s.db.Close() }

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
func (s *Store) Save(d *Deploy) error {
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
func (s *Store) Accept(app, delivery string, d *Deploy) (fresh bool, err error) {
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
func (s *Store) History(app string, limit int) ([]Deploy, error) {
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
func (s *Store) Get(app, id string) (*Deploy, error) {
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
func (s *Store) Prune(app string) ([]string, error) {
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
func (s *Store) Unfinished() ([]Deploy, error) {
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
