package release

import (
	"bufio"
	"bytes"
	"compress/zlib"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/go-git/go-git/v5/plumbing"
	"golang.org/x/sys/unix"
)

// errNotPlain means a blob is not stored whole in a pack of the cache (it is a delta, or
// loose): go-git reads it instead.
var errNotPlain = errors.New("not a whole object in a pack")

// packSet reads blobs stored whole (not as deltas) straight from the cache's packs, the
// way git lays them out: the pack's index gives the object's offset, the entry there is a
// short header and the zlib stream of the content. That is most blobs of a first fetch,
// and every large binary one; streaming them this way holds none in memory and spends no
// time on go-git's bookkeeping (a cache entry, hashed, per object).
//
// A pack's content was hashed object by object when go-git indexed it, so the index's ids
// are the contents' ids; zlib's checksum catches a pack damaged on disk since.
type packSet struct {
	packs []pack
}

type pack struct {
	idx  *packIndex
	file *os.File
	size int64
}

// openPacks opens every pack of the bare repository dir, with its index.
func openPacks(dir string) (*packSet, error) {
	packs, err := filepath.Glob(filepath.Join(dir, "objects", "pack", "pack-*.pack"))
	if err != nil {
		return nil, err
	}
	ps := &packSet{}
	for _, name := range packs {
		idx, err := readPackIndex(strings.TrimSuffix(name, ".pack") + ".idx")
		if err != nil {
			ps.close()
			return nil, err
		}
		f, err := os.Open(name)
		if err != nil {
			idx.close()
			ps.close()
			return nil, fmt.Errorf("open pack: %w", err)
		}
		fi, err := f.Stat()
		if err != nil {
			f.Close()
			idx.close()
			ps.close()
			return nil, fmt.Errorf("open pack: %w", err)
		}
		ps.packs = append(ps.packs, pack{idx: idx, file: f, size: fi.Size()})
	}
	return ps, nil
}

func (ps *packSet) close() {
	for _, p := range ps.packs {
		p.file.Close()
		p.idx.close()
	}
}

// blobReader is one worker's means to stream blobs from a packSet: its buffers are reused
// from one blob to the next.
type blobReader struct {
	packs *packSet
	br    *bufio.Reader
	zr    io.ReadCloser // a zlib reader, reset for each blob
}

// open returns a reader of blob h's content and its size, or errNotPlain.
func (r *blobReader) open(h plumbing.Hash) (io.Reader, int64, error) {
	for _, p := range r.packs.packs {
		off, ok := p.idx.find(h)
		if !ok {
			continue
		}
		if off < 12 || off >= p.size {
			return nil, 0, fmt.Errorf("pack index puts blob %s at %d, outside its pack", h, off)
		}
		var hdr [16]byte
		n, err := p.file.ReadAt(hdr[:], off)
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, 0, fmt.Errorf("read blob %s: %w", h, err)
		}
		typ, size, hl, err := entryHeader(hdr[:n])
		if err != nil {
			return nil, 0, fmt.Errorf("read blob %s: %w", h, err)
		}
		if typ != plumbing.BlobObject {
			return nil, 0, errNotPlain
		}
		sec := io.NewSectionReader(p.file, off+int64(hl), p.size-off-int64(hl))
		if r.br == nil {
			r.br = bufio.NewReaderSize(sec, 64<<10)
		} else {
			r.br.Reset(sec)
		}
		if r.zr == nil {
			r.zr, err = zlib.NewReader(r.br)
		} else {
			err = r.zr.(zlib.Resetter).Reset(r.br, nil)
		}
		if err != nil {
			return nil, 0, fmt.Errorf("read blob %s: %w", h, err)
		}
		return &exactReader{r: r.zr, left: size}, size, nil
	}
	return nil, 0, errNotPlain
}

// exactReader reads a zlib stream that must hold exactly left more bytes: at its end it
// checks that the stream ends there, which also checks zlib's checksum.
type exactReader struct {
	r    io.Reader
	left int64
}

func (e *exactReader) Read(p []byte) (int, error) {
	if e.left == 0 {
		var one [1]byte
		if n, err := e.r.Read(one[:]); n > 0 || !errors.Is(err, io.EOF) {
			return 0, fmt.Errorf("pack entry longer than its size (%v)", err)
		}
		return 0, io.EOF
	}
	if int64(len(p)) > e.left {
		p = p[:e.left]
	}
	n, err := e.r.Read(p)
	e.left -= int64(n)
	if errors.Is(err, io.EOF) {
		if e.left > 0 {
			return n, io.ErrUnexpectedEOF
		}
		err = nil
	}
	return n, err
}

// entryHeader parses a pack entry's header: its type, its inflated size, and the header's
// length.
func entryHeader(b []byte) (plumbing.ObjectType, int64, int, error) {
	if len(b) == 0 {
		return 0, 0, 0, errors.New("pack entry header cut short")
	}
	c := b[0]
	typ := plumbing.ObjectType((c >> 4) & 7)
	size := int64(c & 15)
	n, shift := 1, 4
	for c&0x80 != 0 {
		if n >= len(b) || shift > 56 {
			return 0, 0, 0, errors.New("pack entry header cut short or too long")
		}
		c = b[n]
		n++
		size |= int64(c&0x7f) << shift
		shift += 7
	}
	return typ, size, n, nil
}

// packIndex is a pack's index (version 2), mapped: for every object in the pack, sorted
// by id, where its entry starts. Mapped rather than read, it costs memory only for the pages
// a lookup touches (a 100,000-object index is 2.8 MB, a lookup reads a few pages of it).
// Indexes are written once and never changed (0444, renamed into place).
type packIndex struct {
	data   []byte // the whole file, mapped
	n      int
	fanout []byte // 256 counts: objects whose id's first byte is at most i
	names  []byte // n ids of 20 bytes
	off32  []byte // n offsets of 4 bytes; the high bit marks an index into off64
	off64  []byte
}

func readPackIndex(path string) (*packIndex, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read pack index: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("read pack index: %w", err)
	}
	const head = 8 + 256*4
	if fi.Size() < head+40 || fi.Size() > 1<<40 {
		return nil, fmt.Errorf("read pack index %s: not a version 2 index", path)
	}
	data, err := unix.Mmap(int(f.Fd()), 0, int(fi.Size()), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("read pack index %s: %w", path, err)
	}
	x := &packIndex{data: data}
	if !bytes.Equal(data[:4], []byte{0xff, 't', 'O', 'c'}) || binary.BigEndian.Uint32(data[4:8]) != 2 {
		x.close()
		return nil, fmt.Errorf("read pack index %s: not a version 2 index", path)
	}
	x.fanout = data[8:head]
	x.n = int(binary.BigEndian.Uint32(x.fanout[255*4:]))
	names, offs := head, head+x.n*24
	if x.n < 0 || len(data) < offs+x.n*4+40 {
		x.close()
		return nil, fmt.Errorf("read pack index %s: cut short", path)
	}
	x.names = data[names : names+x.n*20]
	x.off32 = data[offs : offs+x.n*4]
	x.off64 = data[offs+x.n*4 : len(data)-40]
	return x, nil
}

// close unmaps the index.
func (x *packIndex) close() {
	if x.data != nil {
		unix.Munmap(x.data)
		x.data = nil
	}
}

// find returns where object h's entry starts in the pack.
func (x *packIndex) find(h plumbing.Hash) (int64, bool) {
	lo := 0
	if h[0] > 0 {
		lo = int(binary.BigEndian.Uint32(x.fanout[(int(h[0])-1)*4:]))
	}
	hi := int(binary.BigEndian.Uint32(x.fanout[int(h[0])*4:]))
	if hi > x.n || lo > hi {
		return 0, false
	}
	i := lo + sort.Search(hi-lo, func(i int) bool {
		return bytes.Compare(x.names[(lo+i)*20:(lo+i+1)*20], h[:]) >= 0
	})
	if i >= hi || !bytes.Equal(x.names[i*20:(i+1)*20], h[:]) {
		return 0, false
	}
	o := binary.BigEndian.Uint32(x.off32[i*4:])
	if o&0x80000000 == 0 {
		return int64(o), true
	}
	j := int(o&0x7fffffff) * 8
	if j+8 > len(x.off64) {
		return 0, false
	}
	return int64(binary.BigEndian.Uint64(x.off64[j:])), true
}
