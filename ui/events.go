package ui

import (
	"encoding/json"
	"fmt"
	"html/template"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// DefaultKeepAlive is how often an idle event stream gets a comment, so that proxies keep
// it open and a closed browser is noticed.
const DefaultKeepAlive = 15 * time.Second

// events streams a deploy's log as server-sent events from the offset the page stopped at
// (?from=, or Last-Event-ID when the browser reconnects): "line" with a table row, "step"
// with a step's list item, "status" with the deploy's status, and "end" with the final
// record's status and error, after which the stream ends.
func (s *server) events(w http.ResponseWriter, r *http.Request) {
	d, _, err := s.b.Deploy(r.Context(), r.PathValue("id"))
	if err != nil {
		s.fail(w, err)
		return
	}
	from, _ := strconv.ParseInt(r.URL.Query().Get("from"), 10, 64)
	if id := r.Header.Get("Last-Event-ID"); id != "" {
		from, _ = strconv.ParseInt(id, 10, 64)
	}
	fl, ok := w.(http.Flusher)
	if !ok {
		s.fail(w, fmt.Errorf("event stream: the connection cannot be flushed"))
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	fl.Flush()

	rc := http.NewResponseController(w)
	var mu sync.Mutex // the keep-alive goroutine and the follower both write
	send := func(event, id string, data string) error {
		mu.Lock()
		defer mu.Unlock()
		var b strings.Builder
		b.WriteString("event: " + event + "\n")
		if id != "" {
			b.WriteString("id: " + id + "\n")
		}
		for _, l := range strings.Split(data, "\n") {
			b.WriteString("data: " + l + "\n")
		}
		b.WriteString("\n")
		rc.SetWriteDeadline(time.Now().Add(s.keepAlive()))
		if _, err := w.Write([]byte(b.String())); err != nil {
			return err
		}
		return rc.Flush()
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		keep := time.NewTicker(s.keepAlive())
		defer keep.Stop()
		for {
			select {
			case <-stop:
				return
			case <-keep.C:
				mu.Lock()
				rc.SetWriteDeadline(time.Now().Add(s.keepAlive()))
				_, err := w.Write([]byte(": ping\n\n"))
				if err == nil {
					err = rc.Flush()
				}
				mu.Unlock()
				if err != nil {
					return // the follower's next write fails too, and ends the stream
				}
			}
		}
	})
	defer wg.Wait()
	defer close(stop)
	emit := func(line []byte, next int64) error {
		l := parseLine(line, next)
		row, err := rowHTML(l)
		if err != nil {
			return err
		}
		if st, ok := stepOf(l); ok {
			li, err := stepHTML(st)
			if err != nil {
				return err
			}
			if err := send("step", "", string(li)); err != nil {
				return err
			}
			if l.Message == "deploy status" {
				if err := send("status", "", st.Name); err != nil {
					return err
				}
			}
		}
		return send("line", strconv.FormatInt(next, 10), string(row))
	}
	final, err := s.b.Follow(r.Context(), d.App, d.ID, from, emit)
	if err != nil {
		if r.Context().Err() == nil {
			// The agent is stopping, or the log could not be read: say so, and let the
			// browser try again later.
			send("gone", "", template.HTMLEscapeString(err.Error()))
		}
		return
	}
	end, _ := json.Marshal(map[string]string{"status": string(final.Status), "error": final.Error, "note": final.Note,
		"finished": final.Finished.UTC().Format(time.RFC3339)})
	send("end", "", string(end))
}

func (s *server) keepAlive() time.Duration {
	if s.opts.KeepAlive > 0 {
		return s.opts.KeepAlive
	}
	return DefaultKeepAlive
}
