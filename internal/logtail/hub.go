package logtail

import (
	"errors"
	"io"
	"sync"
)

// ErrClosed is returned by Follow when the Hub was closed (the agent is stopping).
var ErrClosed = errors.New("log follower stopped: agent stopping")

// Hub tells followers that a log changed. The zero value is not usable: use NewHub.
type Hub struct {
	mu      sync.Mutex
	waiting map[string]chan struct{} // key → closed at the key's next change
	writing map[string]int           // key → writers open
	closed  chan struct{}
}

// NewHub returns a Hub with no followers.
func NewHub() *Hub {
	return &Hub{waiting: map[string]chan struct{}{}, writing: map[string]int{}, closed: make(chan struct{})}
}

// Changed returns a channel closed at the next Notify of key (or when the Hub closes). Take
// it before reading, so a change between the read and the wait is not missed.
func (h *Hub) Changed(key string) <-chan struct{} {
	h.mu.Lock()
	defer h.mu.Unlock()
	ch, ok := h.waiting[key]
	if !ok {
		ch = make(chan struct{})
		h.waiting[key] = ch
	}
	return ch
}

// Notify wakes every follower of key. It never blocks.
func (h *Hub) Notify(key string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if ch, ok := h.waiting[key]; ok {
		close(ch)
		delete(h.waiting, key)
	}
}

// Writing reports whether a writer of key is open.
func (h *Hub) Writing(key string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.writing[key] > 0
}

// Close wakes every follower for good: Follow returns ErrClosed.
func (h *Hub) Close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	select {
	case <-h.closed:
	default:
		close(h.closed)
	}
}

// Writer returns w wrapped so that each write notifies key's followers, and marks key
// written until the returned closer runs (which notifies them once more). Closing it does
// not close w. A writer opened after a follower found the log finished is not seen by it.
func (h *Hub) Writer(key string, w io.Writer) (io.Writer, func()) {
	h.mu.Lock()
	h.writing[key]++
	h.mu.Unlock()
	var once sync.Once
	return notifier{h: h, key: key, w: w}, func() {
		once.Do(func() {
			h.mu.Lock()
			if h.writing[key]--; h.writing[key] <= 0 {
				delete(h.writing, key)
			}
			h.mu.Unlock()
			h.Notify(key)
		})
	}
}

type notifier struct {
	h   *Hub
	key string
	w   io.Writer
}

func (n notifier) Write(p []byte) (int, error) {
	k, err := n.w.Write(p)
	n.h.Notify(n.key)
	return k, err
}
