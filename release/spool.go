package release

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"sync"

	"github.com/go-git/go-git/v5/plumbing"
	"golang.org/x/sys/unix"
)

const (
	// spoolDir is where, in the cache, a fetch leaves the small blobs it received as files,
	// laid out as a build's new objects are ("<1 hex>/<40 hex>"), for the build that follows.
	spoolDir = "pushdeploy-spool"
	// spoolMax is the largest blob spooled: larger ones are streamed from the pack by the
	// build, where creating their file is a small part of writing them.
	spoolMax = 256 << 10
	// spoolQueue is how many blobs wait for a spool writer at most: with spoolMax, what the
	// spool holds in memory (8 MiB).
	spoolQueue = 32
)

// spool writes the small blobs of a pack to files while the pack is still arriving, so that
// creating them (most of a first deploy's time: one inode each) overlaps the transfer and
// the indexing instead of following them. The indexer hands it each blob once inflated and
// hashed; DefaultWorkers writers create the files. A file is named by its blob only once
// written whole, and the spool is quiescent once close returns: the build that follows links
// a spooled file instead of writing its object again.
//
// It is only a shortcut: a blob it failed to write is not there, and the build writes it from
// the pack as it would have anyway. So its errors are dropped, never the fetch's.
type spool struct {
	dir  string
	jobs chan spooled
	wg   sync.WaitGroup
	mode uint32
}

type spooled struct {
	id   plumbing.Hash
	data []byte
}

// newSpool starts the writers of a spool in dir, which it creates; nil if it cannot.
func newSpool(dir string) *spool {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil
	}
	for i := range 16 {
		if err := os.Mkdir(filepath.Join(dir, strconv.FormatInt(int64(i), 16)), 0o700); err != nil && !errors.Is(err, os.ErrExist) {
			return nil
		}
	}
	s := &spool{dir: dir, jobs: make(chan spooled, spoolQueue), mode: uint32(objectMode(false))}
	for range DefaultWorkers {
		s.wg.Go(s.work)
	}
	return s
}

// put hands blob id's content to a writer, waiting while spoolQueue blobs wait already.
func (s *spool) put(id plumbing.Hash, data []byte) { s.jobs <- spooled{id: id, data: data} }

// close waits until every blob put is written (or given up).
func (s *spool) close() {
	close(s.jobs)
	s.wg.Wait()
}

func (s *spool) work() {
	for j := range s.jobs {
		name := filepath.Join(s.dir, objectKey{hash: j.id}.name())
		if err := writeObjectFile(name, j.data, s.mode); err != nil && !errors.Is(err, unix.EEXIST) {
			unix.Unlink(name)
		}
	}
}

// writeObjectFile creates the object file name holding data, read-only.
func writeObjectFile(name string, data []byte, mode uint32) error {
	fd, err := unix.Open(name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return err
	}
	_, err = fdWriter(fd).Write(data)
	if err == nil {
		err = unix.Fchmod(fd, mode)
	}
	if cerr := unix.Close(fd); err == nil {
		err = cerr
	}
	return err
}
