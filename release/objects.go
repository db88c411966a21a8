package release

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/storage/filesystem"
	"golang.org/x/sys/unix"
)

// DefaultWorkers is how many objects a build writes at once unless Store.Workers says
// otherwise: enough to keep a disk and a few cores busy inflating blobs.
const DefaultWorkers = 4

const (
	// workerCacheBytes bounds each writer's go-git cache of decoded objects (delta bases).
	workerCacheBytes = 4 << 20
	// maxWaiting is how many links to an object being written a build queues before it
	// waits for the object: each holds its directory open.
	maxWaiting = 16
	// copyBuffer is the size of the buffer each writer streams blobs through.
	copyBuffer = 256 << 10
)

// objectKey names an object of the store: a blob, with or without the exec bit.
type objectKey struct {
	hash plumbing.Hash
	exec bool
}

// name is the object's path in a build's temporary directory: in one of 16 directories,
// so that writers creating files at once do not all wait for one directory's lock.
func (k objectKey) name() string {
	hex := k.hash.String()
	if k.exec {
		hex += ".x"
	}
	return hex[:1] + "/" + hex
}

// dirRef is a directory of the release being built, open as fd, closed when the last of
// the walk and the links waiting for an object lets go of it.
type dirRef struct {
	fd   int
	refs atomic.Int32
}

func newDirRef(fd int) *dirRef {
	d := &dirRef{fd: fd}
	d.refs.Store(1)
	return d
}

func (d *dirRef) hold() *dirRef { d.refs.Add(1); return d }

func (d *dirRef) release() {
	if d.refs.Add(-1) == 0 {
		unix.Close(d.fd)
	}
}

// link is one file of the release waiting for its object.
type link struct {
	dir  *dirRef
	name string
	path string // in the tree, for errors
}

// pending is an object being written, and the files that will link to it.
type pending struct {
	links []link
	done  chan struct{} // closed once written (or failed) and linked
}

// objectWriter writes the objects a build lacks, Workers at a time, each streamed from the
// cache into a file of the build's temporary directory, and links every file waiting for
// it. publish gives them their names in the store once they are on disk.
type objectWriter struct {
	store   *Store
	cache   *Cache
	tmp     string // objects/tmp/<build>/: an object is "<h>/<hex>[.x]" there once whole
	workers int
	jobs    chan objectKey
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup

	packs *packSet

	mu       sync.Mutex
	inflight map[objectKey]*pending
	first    error
}

// newObjectWriter starts the writers of a build from c, whose packs are open as packs. When
// c's last fetch spooled its small blobs, the spool is the build's temporary directory:
// they are new objects written already.
func (s *Store) newObjectWriter(ctx context.Context, c *Cache, packs *packSet) (*objectWriter, error) {
	tmp := c.spoolDir()
	if !c.spooled {
		if err := s.dirs.MkdirAll(s.dirs.ObjectsTmp()); err != nil {
			return nil, fmt.Errorf("create object dir: %w", err)
		}
		var err error
		if tmp, err = os.MkdirTemp(s.dirs.ObjectsTmp(), "build-"); err != nil {
			return nil, fmt.Errorf("create object dir: %w", err)
		}
	}
	n := s.Workers
	if n <= 0 {
		n = DefaultWorkers
	}
	w := &objectWriter{store: s, cache: c, tmp: tmp, packs: packs, workers: n, jobs: make(chan objectKey, n), inflight: map[objectKey]*pending{}}
	w.ctx, w.cancel = context.WithCancel(ctx)
	for range n {
		w.wg.Go(w.work)
	}
	return w, nil
}

// want links the file l to the object key once this build has written it, writing it if no
// one is. It lets go of l.dir when the link is made or has failed.
func (w *objectWriter) want(key objectKey, l link) error {
	for {
		w.mu.Lock()
		p, ok := w.inflight[key]
		queued := ok && len(p.links) < maxWaiting
		if queued {
			p.links = append(p.links, l)
		}
		w.mu.Unlock()
		if queued {
			return nil
		}
		if !ok {
			break
		}
		select { // enough files wait for it already: wait for the object, then link it here
		case <-p.done:
		case <-w.ctx.Done():
			l.dir.release()
			return w.stopped()
		}
	}
	// Only this goroutine adds to inflight: an object not in it was written, or never wanted.
	err := linkObject(filepath.Join(w.tmp, key.name()), l.dir.fd, l.name, key.exec)
	if !errors.Is(err, unix.ENOENT) {
		l.dir.release()
		if err != nil {
			return fmt.Errorf("%s: link: %w", quote(l.path), err)
		}
		return nil
	}
	if w.ctx.Err() != nil {
		l.dir.release()
		return w.stopped()
	}
	w.mu.Lock()
	w.inflight[key] = &pending{links: []link{l}, done: make(chan struct{})}
	w.mu.Unlock()
	select {
	case w.jobs <- key:
		return nil
	case <-w.ctx.Done():
		w.finish(key, nil, false)
		return w.stopped()
	}
}

// stopped is why the writer stopped: its first error, or the build's context.
func (w *objectWriter) stopped() error {
	if err := w.err(); err != nil {
		return err
	}
	return w.ctx.Err()
}

// err is the first error a worker met, if any.
func (w *objectWriter) err() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.first
}

// worker is one of a build's object writers, with what it reuses from one object to the
// next.
type worker struct {
	w       *objectWriter
	blobs   blobReader
	objects *objectReader       // for blobs stored as deltas
	git     *filesystem.Storage // for large ones; opened when first needed
	buf     []byte
}

func (w *objectWriter) work() {
	wk := &worker{w: w, blobs: blobReader{packs: w.packs}, objects: newObjectReader(w.packs, w.cache.dir), buf: make([]byte, copyBuffer)}
	defer func() {
		wk.objects.close()
		if wk.git != nil {
			wk.git.Close()
		}
	}()
	for key := range w.jobs {
		if w.ctx.Err() != nil {
			w.finish(key, nil, false)
			continue
		}
		w.finish(key, wk.write(key), true)
	}
}

// finish links the files waiting for object key once it is written (written true, werr
// nil), or lets them go: after werr, or when the build stopped before the object was
// written. Either is the build's error, unless it has one already.
func (w *objectWriter) finish(key objectKey, werr error, written bool) {
	w.mu.Lock()
	p := w.inflight[key]
	delete(w.inflight, key)
	w.mu.Unlock()
	err := werr
	if err == nil && !written { // the build stopped before it was written
		err = w.ctx.Err()
	}
	if err != nil {
		err = fmt.Errorf("%s: %w", quote(p.links[0].path), err)
	}
	src := filepath.Join(w.tmp, key.name())
	for _, l := range p.links {
		if err == nil && written {
			if lerr := linkObject(src, l.dir.fd, l.name, key.exec); lerr != nil {
				err = fmt.Errorf("%s: link: %w", quote(l.path), lerr)
			}
		}
		l.dir.release()
	}
	close(p.done)
	if err != nil {
		w.mu.Lock()
		if w.first == nil {
			w.first = err
		}
		w.mu.Unlock()
		w.cancel()
	}
}

// write streams blob key.hash from the cache into the build's directory, read-only, and
// checks its size.
func (wk *worker) write(key objectKey) error {
	r, size, err := wk.open(key.hash)
	if err != nil {
		return fmt.Errorf("read blob %s: %w", key.hash, err)
	}
	if c, ok := r.(io.Closer); ok {
		defer c.Close()
	}
	// The file has its final name in the build's directory from the start: while the
	// object is in inflight nothing links to it, and once out of it, it is whole (or the
	// build has failed).
	name := filepath.Join(wk.w.tmp, key.name())
	const flags = unix.O_WRONLY | unix.O_CREAT | unix.O_EXCL | unix.O_NOFOLLOW | unix.O_CLOEXEC
	fd, err := unix.Open(name, flags, 0o600)
	if errors.Is(err, unix.ENOENT) { // the first object of its directory
		if err = os.Mkdir(filepath.Dir(name), 0o700); err == nil || errors.Is(err, os.ErrExist) {
			fd, err = unix.Open(name, flags, 0o600)
		}
	}
	if err != nil {
		return fmt.Errorf("write object %s to %s: %w", key.hash, name, err)
	}
	n, err := io.CopyBuffer(fdWriter(fd), r, wk.buf)
	if err == nil && n != size {
		err = fmt.Errorf("blob %s is %d bytes, its header says %d", key.hash, n, size)
	}
	if err == nil {
		err = unix.Fchmod(fd, uint32(objectMode(key.exec)))
	}
	if cerr := unix.Close(fd); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write object %s to %s: %w", key.hash, name, err)
	}
	return nil
}

// fdWriter writes to a file descriptor directly: an os.File would first try to add a
// regular file to the poller, a system call per object for nothing.
type fdWriter int

func (fd fdWriter) Write(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		m, err := unix.Write(int(fd), p[n:])
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return n, err
		}
		n += m
	}
	return n, nil
}

// open returns a reader of blob h and its size: straight from its pack when it is stored
// whole there; else its delta chain resolved in memory when it is small; else through
// go-git, streamed.
func (wk *worker) open(h plumbing.Hash) (io.Reader, int64, error) {
	r, size, err := wk.blobs.open(h)
	if !errors.Is(err, errNotPlain) {
		return r, size, err
	}
	typ, data, err := wk.objects.read(h, largeObject)
	if err == nil && typ != plumbing.BlobObject {
		err = fmt.Errorf("object %s is a %s, not a blob", h, typ)
	}
	if !errors.Is(err, errTooLarge) {
		return bytes.NewReader(data), int64(len(data)), err
	}
	if wk.git == nil {
		wk.git = openStorage(wk.w.cache.dir, workerCacheBytes, 4)
	}
	obj, err := wk.git.EncodedObject(plumbing.BlobObject, h)
	if err != nil {
		return nil, 0, err
	}
	rc, err := obj.Reader()
	if err != nil {
		return nil, 0, err
	}
	return rc, obj.Size(), nil
}

// wait ends the build's writing: no more objects are wanted, every worker is done. It
// returns walkErr, the walk's own error, or else the writers' first.
func (w *objectWriter) wait(walkErr error) error {
	if walkErr != nil {
		w.cancel()
	}
	close(w.jobs)
	w.wg.Wait()
	w.cancel()
	if walkErr != nil {
		return walkErr
	}
	return w.err()
}

// publish moves every object the build wrote to its name in the store. The caller has
// synced them to disk. An object another build published meanwhile is kept (the release
// links ours, equal to it), unless it is not whole.
//
// Its directories are published at once, by as many goroutines as the build had writers.
func (w *objectWriter) publish() error {
	shards, err := os.ReadDir(w.tmp)
	if err != nil {
		return fmt.Errorf("publish objects: %w", err)
	}
	dirs := make(chan string, len(shards))
	for _, shard := range shards {
		dirs <- filepath.Join(w.tmp, shard.Name())
	}
	close(dirs)
	var wg sync.WaitGroup
	errs := make([]error, min(w.workers, len(shards)))
	for i := range errs {
		wg.Go(func() {
			made := map[string]bool{}
			for dir := range dirs {
				if errs[i] == nil {
					errs[i] = w.publishDir(dir, made)
				}
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (w *objectWriter) publishDir(dir string, made map[string]bool) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("publish objects: %w", err)
	}
	defer d.Close()
	for {
		names, err := d.Readdirnames(1024)
		for _, name := range names {
			if perr := w.publishOne(dir, name, made); perr != nil {
				return perr
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("publish objects: %w", err)
		}
	}
}

func (w *objectWriter) publishOne(dir, name string, made map[string]bool) error {
	hex, exec := strings.CutSuffix(name, ".x")
	if !ValidSHA(hex) {
		return fmt.Errorf("publish objects: unexpected file %q in %s", name, dir)
	}
	src := filepath.Join(dir, name)
	var st unix.Stat_t
	if err := unix.Lstat(src, &st); err == nil && st.Nlink < 2 {
		// Linked by no file of the release: spooled by the fetch, but the store had it, or
		// the release wants it with the exec bit. Garbage to gc if published: dropped.
		return unix.Unlink(src)
	}
	dst := w.store.dirs.Object(hex, exec)
	if dir := filepath.Dir(dst); !made[dir] {
		if err := w.store.dirs.MkdirAll(dir); err != nil { // objects/<xx>/: private (datadir's modes)
			return fmt.Errorf("publish object %s: %w", name, err)
		}
		made[dir] = true
	}
	err := unix.Renameat2(unix.AT_FDCWD, src, unix.AT_FDCWD, dst, unix.RENAME_NOREPLACE)
	if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS) { // no RENAME_NOREPLACE here
		if err = unix.Link(src, dst); err == nil {
			err = unix.Unlink(src)
		}
	}
	if errors.Is(err, unix.EEXIST) {
		var st unix.Stat_t
		if serr := unix.Lstat(dst, &st); serr == nil && whole(&st, plumbing.NewHash(hex)) {
			err = unix.Unlink(src)
		} else {
			err = unix.Rename(src, dst)
		}
	}
	if err != nil {
		return fmt.Errorf("publish object %s: %w", name, err)
	}
	return nil
}

// remove deletes the build's temporary directory and what is left in it.
func (w *objectWriter) remove() { os.RemoveAll(w.tmp) }
