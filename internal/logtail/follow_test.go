package logtail

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"
	"time"
)

// follow runs Follow in the background and returns the lines it emits and its result.
func follow(t *testing.T, h *Hub, path string, from int64, finished func() (bool, error)) (<-chan string, <-chan error) {
	t.Helper()
	lines := make(chan string, 100)
	errc := make(chan error, 1)
	go func() {
		defer close(lines)
		errc <- Follow(t.Context(), Options{Hub: h, Key: "d1", Path: path, From: from, Finished: finished,
			Emit: func(line []byte, _ int64) error { lines <- string(line); return nil }})
	}()
	return lines, errc
}

func TestFollow_live(t *testing.T) {
	h := NewHub()
	path := filepath.Join(t.TempDir(), "d1.log")
	var final atomic.Bool
	// Nothing written yet: the follower waits for the file to appear.
	lines, errc := follow(t, h, path, 0, func() (bool, error) { return final.Load(), nil })
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w, closeW := h.Writer("d1", f)
	w.Write([]byte(`{"n":1}` + "\n"))
	if got := <-lines; got != `{"n":1}` {
		t.Fatalf("first line: got %q", got)
	}
	start := time.Now()
	w.Write([]byte(`{"n":2`)) // a line in two writes is emitted once whole
	w.Write([]byte("}\n"))
	if got := <-lines; got != `{"n":2}` {
		t.Fatalf("second line: got %q", got)
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("second line took %v: the follower polled instead of being notified", took)
	}
	final.Store(true) // finished, but the writer is still open: it may still write
	w.Write([]byte(`{"n":3}` + "\n"))
	closeW()
	if got := <-lines; got != `{"n":3}` {
		t.Fatalf("third line: got %q", got)
	}
	if err := <-errc; err != nil {
		t.Fatalf("Follow: got %v, want nil once finished", err)
	}
}

func TestFollow_fromOffsetOfFinishedLog(t *testing.T) {
	h := NewHub()
	path := filepath.Join(t.TempDir(), "d1.log")
	os.WriteFile(path, []byte("a\nbb\nccc\n"), 0o644)
	var got []string
	var offs []int64
	err := Follow(t.Context(), Options{Hub: h, Key: "d1", Path: path, From: 2,
		Finished: func() (bool, error) { return true, nil },
		Emit: func(line []byte, next int64) error {
			got = append(got, string(line))
			offs = append(offs, next)
			return nil
		}})
	if err != nil || !slices.Equal(got, []string{"bb", "ccc"}) || !slices.Equal(offs, []int64{5, 9}) {
		t.Errorf("got %q at %v, %v; want [bb ccc] at [5 9], nil", got, offs, err)
	}
}

func TestFollow_ends(t *testing.T) {
	errBoom := errors.New("boom")
	tests := []struct {
		name string
		end  func(h *Hub, cancel context.CancelFunc)
		fin  func() (bool, error)
		want error
	}{
		{"hub closed", func(h *Hub, _ context.CancelFunc) { h.Close() }, func() (bool, error) { return false, nil }, ErrClosed},
		{"ctx cancelled", func(_ *Hub, cancel context.CancelFunc) { cancel() }, func() (bool, error) { return false, nil }, context.Canceled},
		{"finished fails", func(*Hub, context.CancelFunc) {}, func() (bool, error) { return false, errBoom }, errBoom},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := NewHub()
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			errc := make(chan error, 1)
			go func() {
				errc <- Follow(ctx, Options{Hub: h, Key: "k", Path: filepath.Join(t.TempDir(), "none"), Finished: tt.fin,
					Emit: func([]byte, int64) error { return nil }})
			}()
			tt.end(h, cancel)
			select {
			case err := <-errc:
				if !errors.Is(err, tt.want) {
					t.Errorf("got %v, want %v", err, tt.want)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("Follow did not return")
			}
		})
	}
}
