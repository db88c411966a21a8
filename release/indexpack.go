package release

import (
	"bufio"
	"bytes"
	"cmp"
	"compress/zlib"
	"crypto/sha1"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/format/packfile"
	"github.com/go-git/go-git/v5/storage/filesystem"

	"github.com/pushdeploy/pushdeploy/internal/atomicfile"
)

// cacheStorage is the cache's go-git storage, except that it indexes the packs it fetches
// itself (PackfileWriter), the way git index-pack does: go-git's own indexer inflates every
// object twice, hashes it three times and holds each whole in memory, which made fetching
// a 200 MB file take 200 MB more.
//
// It also reads the packed objects go-git asks for while it fetches (the commits it offers
// as haves) with an objectReader: go-git's own reading would build its map of every object
// of the pack by offset (see Cache), for one commit.
type cacheStorage struct {
	*filesystem.Storage
	dir   string // the bare repository
	spool bool   // spool the small blobs of fetched packs (see spool)

	mu      sync.Mutex
	objects *objectReader // opened when first needed; closed by close and Reindex
}

// EncodedObject reads object h from the packs, or else through go-git (a loose object, a
// large one).
func (s *cacheStorage) EncodedObject(t plumbing.ObjectType, h plumbing.Hash) (plumbing.EncodedObject, error) {
	var typ plumbing.ObjectType
	var data []byte
	err := plumbing.ErrObjectNotFound
	s.mu.Lock()
	if r := s.reader(); r != nil {
		typ, data, err = r.read(h, largeObject)
	}
	s.mu.Unlock()
	if err != nil {
		return s.Storage.EncodedObject(t, h)
	}
	if t != plumbing.AnyObject && t != typ {
		return nil, plumbing.ErrObjectNotFound // as go-git's own storage says it
	}
	o := &plumbing.MemoryObject{}
	o.SetType(typ)
	o.SetSize(int64(len(data)))
	if _, err := o.Write(data); err != nil {
		return nil, err
	}
	return o, nil
}

// HasEncodedObject says whether object h is in a pack, or else asks go-git.
func (s *cacheStorage) HasEncodedObject(h plumbing.Hash) error {
	s.mu.Lock()
	found := false
	if r := s.reader(); r != nil {
		for _, p := range r.packs.packs {
			if _, found = p.idx.find(h); found {
				break
			}
		}
	}
	s.mu.Unlock()
	if found {
		return nil
	}
	return s.Storage.HasEncodedObject(h)
}

// reader opens the packs for EncodedObject and HasEncodedObject once; nil if it cannot.
// The caller holds s.mu.
func (s *cacheStorage) reader() *objectReader {
	if s.objects == nil {
		if packs, err := openPacks(s.dir); err == nil {
			s.objects = newObjectReader(packs, "")
			s.objects.ownPacks = true
		}
	}
	return s.objects
}

// Reindex makes the storage read the packs as they are now.
func (s *cacheStorage) Reindex() {
	s.close()
	s.Storage.Reindex()
}

// close closes the packs EncodedObject opened.
func (s *cacheStorage) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.objects != nil {
		s.objects.close()
		s.objects = nil
	}
}

// PackfileWriter receives a fetched pack. Once it is closed without error the pack and its
// index are in objects/pack/ and the storage reads from them.
func (s *cacheStorage) PackfileWriter() (io.WriteCloser, error) {
	dir := filepath.Join(s.dir, "objects", "pack")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	f, err := os.CreateTemp(dir, "tmp_pack_")
	if err != nil {
		return nil, err
	}
	ix := &indexer{st: s, dir: dir, file: f, pipe: newHandoff(), packSum: &tailHash{h: sha1.New()}, done: make(chan error, 1)}
	if s.spool {
		ix.spool = newSpool(filepath.Join(s.dir, spoolDir))
	}
	go func() { ix.done <- ix.receive() }() // Close waits for it
	return ix, nil
}

// indexer writes a pack to a file as it arrives and indexes it: each object is inflated
// once as it streams by and hashed (a delta once its base is known), never held whole
// unless it is a delta or a delta's base.
//
// It takes two goroutines, as git index-pack takes two threads: the one go-git writes the
// pack from copies it to the file and hashes it whole (its checksum), and hands it on to
// receive, which parses and hashes each object.
type indexer struct {
	st      *cacheStorage
	dir     string
	file    *os.File
	pipe    *handoff
	packSum *tailHash // of the whole pack, as it was written
	done    chan error
	// spool, if not nil, receives every small blob once hashed (see spool).
	spool *spool
	// failed is set once the indexer has stopped: Write drops what comes. fileErr is why,
	// when writing the pack file failed (the parser's error is then only its echo).
	failed  bool
	fileErr error

	objs      []packed
	ofsDeltas []ofsDelta    // the ofs-deltas, by where their base starts once resolve sorts them
	refDeltas []refDelta    // the ref-deltas, by their base's id once sorted
	end       int64         // where the last entry ends: the trailer starts
	sum       plumbing.Hash // the pack's checksum, its trailer
	zr        io.ReadCloser
	scratch   []byte
}

// packed is one object of the pack, kept small: a fetch of 100,000 objects holds 100,000.
// Its entry ends where the next one starts.
type packed struct {
	off   int64 // where its entry starts in the pack
	size  int64 // inflated: the object's, or a delta's
	id    plumbing.Hash
	typ   plumbing.ObjectType // a delta's is its base's once resolved
	hdr   uint8               // the entry's header length: its zlib stream starts after it
	delta bool
}

// base is where a delta's base is: the entry at off (an ofs-delta), or the object ref.
type base struct {
	off int64
	ref plumbing.Hash
}

// Write copies p to the pack file, hashes it and hands it on to the parser. Once the
// indexer has failed (a full disk, a broken pack) the rest of the pack is read and dropped,
// and Close returns the failure: for a file:// remote go-git waits for upload-pack to exit
// before it returns the error, and upload-pack exits only once its pack has been read whole
// (a fetch stalled for ever on a full disk otherwise). The fetch's timeout bounds the
// draining.
func (ix *indexer) Write(p []byte) (int, error) {
	if ix.failed {
		return len(p), nil
	}
	if _, err := ix.file.Write(p); err != nil {
		ix.failed, ix.fileErr = true, err
		return len(p), nil
	}
	ix.packSum.Write(p)
	if _, err := ix.pipe.Write(p); err != nil {
		ix.failed = true // the parser stopped: Close returns its error
	}
	return len(p), nil
}

// Close ends the pack: it is checked whole, its deltas resolved, its index written, and both
// named pack-<checksum>. On any error nothing is left but the error.
func (ix *indexer) Close() error {
	ix.pipe.closeWrite()
	err := <-ix.done
	if ix.fileErr != nil {
		err = ix.fileErr
	}
	if err == nil && len(ix.objs) > 0 {
		err = ix.finish()
	}
	if ix.spool != nil {
		ix.spool.close()
	}
	if err == nil && len(ix.objs) == 0 { // nothing was sent, or a pack of no object
		ix.file.Close()
		os.Remove(ix.file.Name())
		return nil
	}
	if cerr := ix.file.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(ix.file.Name())
		return fmt.Errorf("index fetched pack: %w", err)
	}
	ix.st.Reindex()
	return nil
}

// receive parses the pack as it arrives through the handoff.
func (ix *indexer) receive() (err error) {
	defer func() { ix.pipe.closeRead(err) }() // unblock a Write still under way
	cr := &countingReader{r: bufio.NewReaderSize(ix.pipe, 64<<10)}
	var head [12]byte
	if _, err := io.ReadFull(cr, head[:]); err != nil {
		if err == io.EOF { // nothing at all: nothing to index
			return nil
		}
		return err
	}
	if !bytes.Equal(head[:4], []byte("PACK")) || (binary.BigEndian.Uint32(head[4:8]) != 2 && binary.BigEndian.Uint32(head[4:8]) != 3) {
		return errors.New("not a pack of version 2 or 3")
	}
	n := binary.BigEndian.Uint32(head[8:])
	// Room for every object at once, rather than grown by doubling (which holds a copy
	// and a half at its peak); untouched pages cost nothing if the count lies.
	ix.objs = make([]packed, 0, min(n, 1<<22))
	buf := make([]byte, copyBuffer)
	for range n {
		o, b, err := ix.entry(cr, buf)
		if err != nil {
			return fmt.Errorf("object at %d: %w", cr.n, err)
		}
		if o.delta {
			if o.typ == plumbing.OFSDeltaObject {
				ix.ofsDeltas = append(ix.ofsDeltas, ofsDelta{base: b.off, i: uint32(len(ix.objs))})
			} else {
				ix.refDeltas = append(ix.refDeltas, refDelta{base: b.ref, i: uint32(len(ix.objs))})
			}
		}
		ix.objs = append(ix.objs, o)
	}
	ix.end = cr.n
	var trailer plumbing.Hash
	if _, err := io.ReadFull(cr, trailer[:]); err != nil {
		return fmt.Errorf("pack trailer: %w", err)
	}
	if _, err := cr.ReadByte(); err != io.EOF {
		return errors.New("data after the pack's trailer")
	}
	if got := ix.packSum.sum(); got != trailer { // every Write has returned: EOF was read
		return fmt.Errorf("pack checksum is %s, its trailer says %s", got, trailer)
	}
	ix.sum = trailer
	return nil
}

// entry reads one pack entry: its header, then its zlib stream, inflated and hashed unless
// it is a delta, whose base it returns.
func (ix *indexer) entry(cr *countingReader, buf []byte) (packed, base, error) {
	o := packed{off: cr.n}
	var b base
	c, err := cr.ReadByte()
	if err != nil {
		return o, b, err
	}
	o.typ, o.size = plumbing.ObjectType((c>>4)&7), int64(c&15)
	for shift := 4; c&0x80 != 0; shift += 7 {
		if c, err = cr.ReadByte(); err != nil || shift > 56 {
			return o, b, fmt.Errorf("bad entry header (%v)", err)
		}
		o.size |= int64(c&0x7f) << shift
	}
	switch o.typ {
	case plumbing.OFSDeltaObject:
		c, err := cr.ReadByte()
		dist := int64(c & 0x7f)
		for err == nil && c&0x80 != 0 && dist < 1<<48 {
			c, err = cr.ReadByte()
			dist = (dist+1)<<7 | int64(c&0x7f)
		}
		if err != nil || dist <= 0 || dist > o.off {
			return o, b, fmt.Errorf("bad delta base offset (%v)", err)
		}
		b.off = o.off - dist
	case plumbing.REFDeltaObject:
		if _, err := io.ReadFull(cr, b.ref[:]); err != nil {
			return o, b, err
		}
	case plumbing.CommitObject, plumbing.TreeObject, plumbing.BlobObject, plumbing.TagObject:
	default:
		return o, b, fmt.Errorf("bad object type %d", o.typ)
	}
	o.hdr, o.delta = uint8(cr.n-o.off), o.typ.IsDelta()
	var h *plumbing.Hasher
	var w io.Writer = io.Discard
	var data *bytes.Buffer // the blob's content, for the spool
	if !o.delta {
		hh := plumbing.NewHasher(o.typ, o.size)
		h, w = &hh, hh
		if ix.spool != nil && o.typ == plumbing.BlobObject && o.size <= spoolMax {
			data = bytes.NewBuffer(make([]byte, 0, o.size))
			w = io.MultiWriter(hh, data)
		}
	}
	if err := ix.inflate(cr, w, o.size, buf); err != nil {
		return o, b, err
	}
	if h != nil {
		o.id = h.Sum()
	}
	if data != nil {
		ix.spool.put(o.id, data.Bytes())
	}
	return o, b, nil
}

// inflate copies the zlib stream at r, which must inflate to exactly size bytes, to w.
func (ix *indexer) inflate(r io.Reader, w io.Writer, size int64, buf []byte) error {
	var err error
	if ix.zr == nil {
		ix.zr, err = zlib.NewReader(r)
	} else {
		err = ix.zr.(zlib.Resetter).Reset(r, nil)
	}
	if err != nil {
		return err
	}
	n, err := io.CopyBuffer(w, &exactReader{r: ix.zr, left: size}, buf)
	if err == nil && n != size {
		err = io.ErrUnexpectedEOF
	}
	return err
}

// finish resolves the deltas, then writes the index and names the pack.
func (ix *indexer) finish() error {
	if err := ix.resolve(); err != nil {
		return err
	}
	crcs, err := ix.crcs()
	if err != nil {
		return err
	}
	// The index first: a pack is read only once it has one, and an index without its pack
	// is passed over.
	base := filepath.Join(ix.dir, "pack-"+ix.sum.String())
	if err := writeIndexFile(base+".idx", ix.objs, crcs, ix.sum); err != nil {
		return err
	}
	// Both are on disk before the pack takes its name: a pack under its name is whole.
	err = ix.file.Sync()
	if err == nil {
		err = os.Chmod(ix.file.Name(), 0o444)
	}
	if err == nil {
		err = os.Rename(ix.file.Name(), base+".pack")
	}
	if err == nil {
		err = atomicfile.SyncDir(ix.dir)
	}
	if err != nil {
		os.Remove(base + ".idx")
	}
	return err
}

// recoverPacks removes what a fetch killed half-way left in the cache's pack directory:
// the pack being received and the index being written (tmp_*), and an index whose pack
// never took its name. Nothing reads them, and a pack can be as large as the repository.
// The agent calls it at start, before any fetch.
func recoverPacks(cacheDir string) error {
	dir := filepath.Join(cacheDir, "objects", "pack")
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("recover fetched packs: %w", err)
	}
	for _, e := range ents {
		name := e.Name()
		orphan := false
		if idx, ok := strings.CutSuffix(name, ".idx"); ok {
			_, err := os.Lstat(filepath.Join(dir, idx+".pack"))
			orphan = errors.Is(err, os.ErrNotExist)
		}
		if strings.HasPrefix(name, "tmp_") || orphan {
			if err := os.Remove(filepath.Join(dir, name)); err != nil {
				return fmt.Errorf("recover fetched packs: %w", err)
			}
		}
	}
	return nil
}

// ofsDelta and refDelta are a delta of the pack, objs[i], and where its base is: 16 and
// 24 bytes a delta, sorted rather than in maps (which would take over 100).
type ofsDelta struct {
	base int64
	i    uint32
}

type refDelta struct {
	base plumbing.Hash
	i    uint32
}

// resolve computes the id of every delta, its base's content in hand: depth first from
// each whole object, so that a chain holds only its own objects in memory.
func (ix *indexer) resolve() error {
	deltas := len(ix.ofsDeltas) + len(ix.refDeltas)
	if deltas == 0 {
		return nil
	}
	slices.SortFunc(ix.ofsDeltas, func(a, b ofsDelta) int { return cmp.Compare(a.base, b.base) })
	slices.SortFunc(ix.refDeltas, func(a, b refDelta) int { return bytes.Compare(a.base[:], b.base[:]) })
	// children appends the deltas whose base is object o.
	children := func(dst []uint32, o packed) []uint32 {
		k, _ := slices.BinarySearchFunc(ix.ofsDeltas, o.off, func(d ofsDelta, off int64) int { return cmp.Compare(d.base, off) })
		for ; k < len(ix.ofsDeltas) && ix.ofsDeltas[k].base == o.off; k++ {
			dst = append(dst, ix.ofsDeltas[k].i)
		}
		k, _ = slices.BinarySearchFunc(ix.refDeltas, o.id, func(d refDelta, id plumbing.Hash) int { return bytes.Compare(d.base[:], id[:]) })
		for ; k < len(ix.refDeltas) && ix.refDeltas[k].base == o.id; k++ {
			dst = append(dst, ix.refDeltas[k].i)
		}
		return dst
	}
	resolved := 0
	var walk func(i int, content []byte) error
	walk = func(i int, content []byte) error {
		o := ix.objs[i]
		for _, c := range children(nil, o) {
			delta, err := ix.read(int(c))
			if err != nil {
				return err
			}
			target, err := packfile.PatchDelta(content, delta)
			if err != nil {
				return fmt.Errorf("object at %d: %w", ix.objs[c].off, err)
			}
			ix.objs[c].typ, ix.objs[c].id = o.typ, plumbing.ComputeHash(o.typ, target)
			resolved++
			if ix.spool != nil && o.typ == plumbing.BlobObject && len(target) <= spoolMax {
				ix.spool.put(ix.objs[c].id, target)
			}
			if err := walk(int(c), target); err != nil {
				return err
			}
		}
		return nil
	}
	var first []uint32
	for i, o := range ix.objs {
		if o.delta {
			continue
		}
		if first = children(first[:0], o); len(first) == 0 {
			continue
		}
		content, err := ix.read(i)
		if err != nil {
			return err
		}
		if err := walk(i, content); err != nil {
			return err
		}
	}
	if resolved != deltas {
		return fmt.Errorf("%d deltas have no base in the pack (a thin pack?)", deltas-resolved)
	}
	return nil
}

// read inflates object i's zlib stream (an object's content, or a delta's data) from the
// pack file.
func (ix *indexer) read(i int) ([]byte, error) {
	o := ix.objs[i]
	var b bytes.Buffer
	b.Grow(int(min(o.size, 64<<20))) // more as it really inflates
	if ix.scratch == nil {
		ix.scratch = make([]byte, 64<<10)
	}
	data := o.off + int64(o.hdr)
	r := bufio.NewReader(io.NewSectionReader(ix.file, data, ix.entryEnd(i)-data))
	if err := ix.inflate(r, &b, o.size, ix.scratch); err != nil {
		return nil, fmt.Errorf("object at %d: %w", o.off, err)
	}
	return b.Bytes(), nil
}

// entryEnd is where object i's entry ends: where the next starts, or the trailer.
func (ix *indexer) entryEnd(i int) int64 {
	if i+1 < len(ix.objs) {
		return ix.objs[i+1].off
	}
	return ix.end
}

// crcs is the CRC-32 of every entry as it is in the pack, which the index records.
func (ix *indexer) crcs() ([]uint32, error) {
	out := make([]uint32, len(ix.objs))
	buf := make([]byte, copyBuffer)
	for i, o := range ix.objs {
		h := crc32.NewIEEE()
		if _, err := io.CopyBuffer(h, io.NewSectionReader(ix.file, o.off, ix.entryEnd(i)-o.off), buf); err != nil {
			return nil, err
		}
		out[i] = h.Sum32()
	}
	return out, nil
}

// writeIndexFile writes the version 2 index of a pack's objects at path, through a
// temporary file.
func writeIndexFile(path string, objs []packed, crcs []uint32, sum plumbing.Hash) error {
	order := make([]uint32, len(objs)) // 4 bytes an object: a pack holds fewer than 2³² objects
	for i := range order {
		order[i] = uint32(i)
	}
	slices.SortFunc(order, func(a, b uint32) int { return bytes.Compare(objs[a].id[:], objs[b].id[:]) })
	for k := 1; k < len(order); k++ {
		if objs[order[k]].id == objs[order[k-1]].id {
			return fmt.Errorf("pack holds object %s twice", objs[order[k]].id)
		}
	}
	f, err := os.CreateTemp(filepath.Dir(path), "tmp_idx_")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	h := sha1.New()
	w := bufio.NewWriter(io.MultiWriter(f, h))
	be := func(v any) { binary.Write(w, binary.BigEndian, v) }
	w.Write([]byte{0xff, 't', 'O', 'c'})
	be(uint32(2))
	var fanout [256]uint32
	for _, i := range order {
		fanout[objs[i].id[0]]++
	}
	for b, total := 0, uint32(0); b < 256; b++ {
		total += fanout[b]
		be(total)
	}
	for _, i := range order {
		w.Write(objs[i].id[:])
	}
	for _, i := range order {
		be(crcs[i])
	}
	var large []uint64
	for _, i := range order {
		if off := objs[i].off; off < 1<<31 {
			be(uint32(off))
		} else {
			be(uint32(1<<31 | len(large)))
			large = append(large, uint64(off))
		}
	}
	for _, off := range large {
		be(off)
	}
	w.Write(sum[:])
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(h.Sum(nil)); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(0o444); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

// countingReader counts the bytes read through it; zlib reads a stream through its
// ReadByte exactly to the stream's end, so the count is where the next entry starts.
type countingReader struct {
	r *bufio.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

func (c *countingReader) ReadByte() (byte, error) {
	b, err := c.r.ReadByte()
	if err == nil {
		c.n++
	}
	return b, err
}

// tailHash hashes everything written to it but the last 20 bytes: a pack's checksum is
// over all of it but the checksum itself.
type tailHash struct {
	h    hash.Hash
	tail []byte
}

func (t *tailHash) Write(p []byte) (int, error) {
	const keep = 20
	if len(p) >= keep {
		t.h.Write(t.tail)
		t.h.Write(p[:len(p)-keep])
		t.tail = append(t.tail[:0], p[len(p)-keep:]...)
		return len(p), nil
	}
	t.tail = append(t.tail, p...)
	if over := len(t.tail) - keep; over > 0 {
		t.h.Write(t.tail[:over])
		t.tail = append(t.tail[:0], t.tail[over:]...)
	}
	return len(p), nil
}

func (t *tailHash) sum() (s plumbing.Hash) {
	t.h.Sum(s[:0])
	return s
}
