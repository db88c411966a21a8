package release

import (
	"bufio"
	"bytes"
	"compress/zlib"
	"errors"
	"fmt"
	"io"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/format/packfile"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/storage/filesystem"
)

const (
	// maxDeltaDepth bounds a chain of deltas (git's own packs stop at 50, and at most 4095),
	// so that a pack whose ref-deltas form a cycle is an error, not a hang.
	maxDeltaDepth = 10000
	// baseCacheBytes bounds the delta bases an objectReader keeps decoded.
	baseCacheBytes = 4 << 20
	// maxTree is the largest tree or commit read: far more than a directory of 100,000
	// entries takes (about 4 MiB).
	maxTree = 256 << 20
)

// errTooLarge means an object is larger than the caller would hold whole.
var errTooLarge = errors.New("object too large to read whole")

// objectReader reads objects whole from the cache's packs: commits, trees, symlink targets
// and small blobs stored as deltas, resolving delta chains itself. A build and its workers
// read the tree this way rather than through go-git, whose storage, once it reads one object
// of a pack, keeps a map of every object of that pack by offset (about 100 bytes an
// object) on top of its own copy of the pack index, for as long as it is open: most of what
// a deploy of many files held. An object the packs lack (a loose one) is read through go-git.
type objectReader struct {
	packs    *packSet
	ownPacks bool                // close closes them
	dir      string              // the bare repository, for loose objects ("": none read)
	git      *filesystem.Storage // for loose objects; opened when first needed
	br       *bufio.Reader
	zr       io.ReadCloser
	bases    map[baseKey]decoded // delta bases decoded lately, at most baseCacheBytes
	held     int
}

type baseKey struct {
	pack *pack
	off  int64
}

type decoded struct {
	typ  plumbing.ObjectType
	data []byte
}

func newObjectReader(packs *packSet, dir string) *objectReader {
	return &objectReader{packs: packs, dir: dir, bases: map[baseKey]decoded{}}
}

func (r *objectReader) close() {
	if r.git != nil {
		r.git.Close()
	}
	if r.ownPacks {
		r.packs.close()
	}
}

// read returns object h's type and content, or errTooLarge if it, or a base of its delta
// chain, is larger than limit bytes.
func (r *objectReader) read(h plumbing.Hash, limit int64) (plumbing.ObjectType, []byte, error) {
	return r.readDepth(h, limit, 0)
}

func (r *objectReader) readDepth(h plumbing.Hash, limit int64, depth int) (plumbing.ObjectType, []byte, error) {
	for i := range r.packs.packs {
		p := &r.packs.packs[i]
		if off, ok := p.idx.find(h); ok {
			return r.readAt(p, off, limit, depth)
		}
	}
	if r.dir == "" {
		return 0, nil, plumbing.ErrObjectNotFound
	}
	return r.loose(h, limit)
}

// loose reads h through go-git: an object the packs lack.
func (r *objectReader) loose(h plumbing.Hash, limit int64) (plumbing.ObjectType, []byte, error) {
	if r.git == nil {
		r.git = openStorage(r.dir, workerCacheBytes, 4)
	}
	obj, err := r.git.EncodedObject(plumbing.AnyObject, h)
	if err != nil {
		return 0, nil, fmt.Errorf("object %s: %w", h, err)
	}
	if obj.Size() > limit {
		return 0, nil, errTooLarge
	}
	rc, err := obj.Reader()
	if err != nil {
		return 0, nil, fmt.Errorf("object %s: %w", h, err)
	}
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(rc, obj.Size()))
	if err != nil {
		return 0, nil, fmt.Errorf("object %s: %w", h, err)
	}
	return obj.Type(), data, nil
}

// readAt reads the object whose entry starts at off in p.
func (r *objectReader) readAt(p *pack, off, limit int64, depth int) (plumbing.ObjectType, []byte, error) {
	if depth > maxDeltaDepth {
		return 0, nil, fmt.Errorf("object at %d: delta chain longer than %d", off, maxDeltaDepth)
	}
	if off < 12 || off >= p.size {
		return 0, nil, fmt.Errorf("object at %d: outside its pack", off)
	}
	var hdr [40]byte // the entry's header, with a delta's base offset or id
	n, err := p.file.ReadAt(hdr[:], off)
	if err != nil && !errors.Is(err, io.EOF) {
		return 0, nil, fmt.Errorf("object at %d: %w", off, err)
	}
	typ, size, hl, err := entryHeader(hdr[:n])
	if err != nil {
		return 0, nil, fmt.Errorf("object at %d: %w", off, err)
	}
	if size > limit {
		return 0, nil, errTooLarge
	}
	switch typ {
	case plumbing.CommitObject, plumbing.TreeObject, plumbing.BlobObject, plumbing.TagObject:
		data, err := r.inflate(p, off+int64(hl), size)
		return typ, data, err
	case plumbing.OFSDeltaObject, plumbing.REFDeltaObject:
	default:
		return 0, nil, fmt.Errorf("object at %d: bad type %d", off, typ)
	}
	var b decoded
	if typ == plumbing.OFSDeltaObject {
		dist, m, err := ofsDistance(hdr[hl:n])
		if err != nil || dist > off {
			return 0, nil, fmt.Errorf("object at %d: bad delta base offset", off)
		}
		hl += m
		b, err = r.cachedBase(p, off-dist, limit, depth)
		if err != nil {
			return 0, nil, err
		}
	} else {
		if n < hl+20 {
			return 0, nil, fmt.Errorf("object at %d: delta base cut short", off)
		}
		var ref plumbing.Hash
		copy(ref[:], hdr[hl:hl+20])
		hl += 20
		if b.typ, b.data, err = r.readDepth(ref, limit, depth+1); err != nil {
			return 0, nil, err
		}
	}
	delta, err := r.inflate(p, off+int64(hl), size)
	if err != nil {
		return 0, nil, err
	}
	if target, ok := deltaTargetSize(delta); !ok || target > limit {
		if !ok {
			return 0, nil, fmt.Errorf("object at %d: bad delta", off)
		}
		return 0, nil, errTooLarge
	}
	data, err := packfile.PatchDelta(b.data, delta)
	if err != nil {
		return 0, nil, fmt.Errorf("object at %d: %w", off, err)
	}
	return b.typ, data, nil
}

// cachedBase reads the delta base at off in p, keeping it for the next delta on it.
func (r *objectReader) cachedBase(p *pack, off, limit int64, depth int) (decoded, error) {
	k := baseKey{pack: p, off: off}
	if d, ok := r.bases[k]; ok {
		return d, nil
	}
	typ, data, err := r.readAt(p, off, limit, depth+1)
	if err != nil {
		return decoded{}, err
	}
	d := decoded{typ: typ, data: data}
	if len(data) < baseCacheBytes/4 { // a few large ones would push out every other
		if r.held+len(data) > baseCacheBytes {
			clear(r.bases)
			r.held = 0
		}
		r.bases[k] = d
		r.held += len(data)
	}
	return d, nil
}

// inflate reads the zlib stream at off in p, which must inflate to exactly size bytes.
func (r *objectReader) inflate(p *pack, off, size int64) ([]byte, error) {
	sec := io.NewSectionReader(p.file, off, p.size-off)
	if r.br == nil {
		r.br = bufio.NewReaderSize(sec, 16<<10)
	} else {
		r.br.Reset(sec)
	}
	var err error
	if r.zr == nil {
		r.zr, err = zlib.NewReader(r.br)
	} else {
		err = r.zr.(zlib.Resetter).Reset(r.br, nil)
	}
	if err != nil {
		return nil, fmt.Errorf("object at %d: %w", off, err)
	}
	data := make([]byte, size)
	if _, err := io.ReadFull(&exactReader{r: r.zr, left: size}, data); err != nil {
		return nil, fmt.Errorf("object at %d: %w", off, err)
	}
	var one [1]byte // the stream must end there, its checksum checked
	if _, err := (&exactReader{r: r.zr}).Read(one[:]); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("object at %d: %v", off, err)
	}
	return data, nil
}

// ofsDistance decodes an ofs-delta's distance back to its base, and its length.
func ofsDistance(b []byte) (int64, int, error) {
	if len(b) == 0 {
		return 0, 0, io.ErrUnexpectedEOF
	}
	c := b[0]
	dist, n := int64(c&0x7f), 1
	for c&0x80 != 0 {
		if n >= len(b) || dist >= 1<<48 {
			return 0, 0, io.ErrUnexpectedEOF
		}
		c = b[n]
		n++
		dist = (dist+1)<<7 | int64(c&0x7f)
	}
	if dist <= 0 {
		return 0, 0, errors.New("zero distance")
	}
	return dist, n, nil
}

// deltaTargetSize is the size of what delta makes: the second number of its header.
func deltaTargetSize(delta []byte) (int64, bool) {
	skip := func(b []byte) (int64, []byte, bool) {
		var v int64
		for shift := 0; shift < 64; shift += 7 {
			if len(b) == 0 {
				return 0, nil, false
			}
			c := b[0]
			b = b[1:]
			v |= int64(c&0x7f) << shift
			if c&0x80 == 0 {
				return v, b, true
			}
		}
		return 0, nil, false
	}
	_, rest, ok := skip(delta)
	if !ok {
		return 0, false
	}
	v, _, ok := skip(rest)
	return v, ok && v >= 0
}

// readTree reads tree h: its entries, as go-git would decode them.
func (r *objectReader) readTree(h plumbing.Hash) (*object.Tree, error) {
	typ, data, err := r.read(h, maxTree)
	if err != nil {
		return nil, err
	}
	if typ != plumbing.TreeObject {
		return nil, fmt.Errorf("object %s is a %s, not a tree", h, typ)
	}
	t := &object.Tree{Hash: h}
	for len(data) > 0 {
		sp := bytes.IndexByte(data, ' ')
		nul := bytes.IndexByte(data, 0)
		if sp <= 0 || nul < sp || len(data) < nul+21 {
			return nil, fmt.Errorf("tree %s: bad entry", h)
		}
		var mode uint32
		for _, c := range data[:sp] {
			if c < '0' || c > '7' || mode > 1<<28 {
				return nil, fmt.Errorf("tree %s: bad entry mode %q", h, data[:sp])
			}
			mode = mode<<3 | uint32(c-'0')
		}
		e := object.TreeEntry{Name: string(data[sp+1 : nul]), Mode: filemode.FileMode(mode)}
		copy(e.Hash[:], data[nul+1:nul+21])
		t.Entries = append(t.Entries, e)
		data = data[nul+21:]
	}
	return t, nil
}

// commitTree returns the id of commit sha's tree.
func (r *objectReader) commitTree(sha plumbing.Hash) (plumbing.Hash, error) {
	typ, data, err := r.read(sha, maxTree)
	if err != nil {
		return plumbing.ZeroHash, err
	}
	line, _, _ := bytes.Cut(data, []byte("\n"))
	hex, ok := bytes.CutPrefix(line, []byte("tree "))
	if typ != plumbing.CommitObject || !ok || !ValidSHA(string(hex)) {
		return plumbing.ZeroHash, fmt.Errorf("object %s is not a commit", sha)
	}
	return plumbing.NewHash(string(hex)), nil
}
