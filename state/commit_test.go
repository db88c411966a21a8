package state

import (
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"

	bolt "go.etcd.io/bbolt"
)

func TestGroupCommit_Update(t *testing.T) {
	db, err := bolt.Open(filepath.Join(t.TempDir(), "db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.Update(func(tx *bolt.Tx) error { _, err := tx.CreateBucket([]byte("b")); return err })
	g := &groupCommit{db: db}
	errBad := errors.New("bad caller")
	var wg sync.WaitGroup
	errs := make([]error, 64)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = g.Update(func(tx *bolt.Tx) error {
				if i%16 == 7 {
					return errBad // must fail alone, not its batch
				}
				return tx.Bucket([]byte("b")).Put([]byte(fmt.Sprint(i)), []byte("x"))
			})
		}()
	}
	wg.Wait()
	db.View(func(tx *bolt.Tx) error {
		for i, err := range errs {
			bad := i%16 == 7
			if bad != errors.Is(err, errBad) {
				t.Errorf("caller %d: got error %v, want bad=%v", i, err, bad)
			}
			if got := tx.Bucket([]byte("b")).Get([]byte(fmt.Sprint(i))) != nil; got == bad {
				t.Errorf("caller %d: written=%v, want %v", i, got, !bad)
			}
		}
		return nil
	})
}
