package logtail

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"
)

// DefaultRecheck is how often Follow asks finished again when the Hub has said nothing: a
// safety net for a log that ends without a write (a deploy superseded while it waited).
const DefaultRecheck = 5 * time.Second

// MaxLine bounds one line; a longer one is cut (and still ends with a newline).
const MaxLine = 1 << 20

// Options says what Follow follows.
type Options struct {
	Hub  *Hub
	Key  string // the log's key in Hub
	Path string // the JSON-lines file; it may not exist yet
	From int64  // byte offset to start at: 0, or a previous Emit's next
	// Finished reports whether nothing more will be written to the log. Follow asks it
	// when no writer of Key is open, after reading everything there is.
	Finished func() (bool, error)
	// Emit receives each complete line (without its newline; valid only during the call)
	// and the offset after it.
	Emit func(line []byte, next int64) error
	// Recheck overrides DefaultRecheck.
	Recheck time.Duration
}

// Follow emits the lines of o.Path from o.From on, then waits for more and emits them as
// they are written, until Finished says the log is complete and everything has been read.
//
// Outcomes: nil once the log is finished and read to its end; ctx's error when ctx ends;
// ErrClosed when the Hub closes; Emit's or Finished's error, or a read error, as is.
func Follow(ctx context.Context, o Options) error {
	recheck := o.Recheck
	if recheck <= 0 {
		recheck = DefaultRecheck
	}
	t := &tail{path: o.Path, off: o.From, emit: o.Emit}
	defer t.close()
	timer := time.NewTimer(recheck)
	defer timer.Stop()
	for {
		changed := o.Hub.Changed(o.Key)
		if err := t.read(); err != nil {
			return err
		}
		if !o.Hub.Writing(o.Key) {
			done, err := o.Finished()
			if err != nil {
				return err
			}
			if done {
				// The writer closed before Finished said so: whatever it wrote is in the file.
				return t.read()
			}
		}
		timer.Reset(recheck)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-o.Hub.closed:
			return ErrClosed
		case <-changed:
		case <-timer.C:
		}
	}
}

// tail reads a growing file from an offset, line by line.
type tail struct {
	path    string
	f       *os.File
	off     int64 // offset of the first byte not yet emitted
	partial []byte
	emit    func([]byte, int64) error
	buf     [32 << 10]byte
}

func (t *tail) read() error {
	if t.f == nil {
		f, err := os.Open(t.path)
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("follow log: %w", err)
		}
		if _, err := f.Seek(t.off, io.SeekStart); err != nil {
			f.Close()
			return fmt.Errorf("follow log: %w", err)
		}
		t.f = f
	}
	for {
		n, err := t.f.Read(t.buf[:])
		data := t.buf[:n]
		for len(data) > 0 {
			i := bytes.IndexByte(data, '\n')
			if i < 0 {
				if len(t.partial) < MaxLine {
					t.partial = append(t.partial, data[:min(len(data), MaxLine-len(t.partial))]...)
				}
				t.off += int64(len(data))
				break
			}
			line := data[:i]
			if len(t.partial) > 0 {
				line = append(t.partial, line[:min(len(line), max(0, MaxLine-len(t.partial)))]...)
			}
			t.off += int64(i + 1)
			data = data[i+1:]
			t.partial = t.partial[:0]
			if eerr := t.emit(line, t.off); eerr != nil {
				return eerr
			}
		}
		if errors.Is(err, io.EOF) || (err == nil && n == 0) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("follow log: %w", err)
		}
	}
}

func (t *tail) close() {
	if t.f != nil {
		t.f.Close()
	}
}
