package release

import (
	"io"
	"sync"
)

const (
	// handoffChunk is the size of the buffers a handoff passes on.
	handoffChunk = 64 << 10
	// handoffChunks is how many a handoff holds: how far the writer may run ahead.
	handoffChunks = 16
)

// handoff passes a stream from the goroutine that writes it to the one that reads it, in
// chunks, up to handoffChunks ahead, so that the writer goes on with the next chunk while
// the reader parses this one (an io.Pipe makes each Write wait until it is read). Its
// memory is its buffers: 1 MiB.
type handoff struct {
	full   chan []byte // chunks written, in order
	free   chan []byte // buffers to write into
	buf    []byte      // the chunk being read, whole
	cur    []byte      // what is left of it to read
	closed chan struct{}
	once   sync.Once
	err    error // why the reader stopped; set before closed is
}

func newHandoff() *handoff {
	h := &handoff{full: make(chan []byte, handoffChunks), free: make(chan []byte, handoffChunks), closed: make(chan struct{})}
	for range handoffChunks {
		h.free <- make([]byte, handoffChunk)
	}
	return h
}

// Write hands p on, waiting for a free buffer while the reader is handoffChunks behind. Once
// the reader has stopped it returns the reader's error.
func (h *handoff) Write(p []byte) (int, error) {
	n := 0
	for {
		select {
		case <-h.closed:
			if h.err != nil {
				return n, h.err
			}
			return n, io.ErrClosedPipe
		default:
		}
		if n == len(p) {
			return n, nil
		}
		var b []byte
		select {
		case b = <-h.free:
		case <-h.closed:
			continue
		}
		m := copy(b, p[n:])
		h.full <- b[:m] // never waits: there are only handoffChunks buffers
		n += m
	}
}

// closeWrite ends the stream: the reader reads io.EOF after the last chunk. It must not be
// called while a Write is under way.
func (h *handoff) closeWrite() { close(h.full) }

// Read reads what the writer handed on, in order.
func (h *handoff) Read(p []byte) (int, error) {
	for len(h.cur) == 0 {
		if h.buf != nil {
			h.free <- h.buf[:cap(h.buf)] // never waits, as above
			h.buf = nil
		}
		b, ok := <-h.full
		if !ok {
			return 0, io.EOF
		}
		h.buf, h.cur = b, b
	}
	n := copy(p, h.cur)
	h.cur = h.cur[n:]
	return n, nil
}

// closeRead says the reader has stopped, because of err (nil once it read the whole stream):
// a Write under way or to come returns it.
func (h *handoff) closeRead(err error) {
	h.once.Do(func() {
		h.err = err
		close(h.closed)
	})
}
