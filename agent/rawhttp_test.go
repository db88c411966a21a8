package agent

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"sort"
	"strings"
	"sync"
	"time"
)

// rawRequest is an HTTP/1.1 request written byte for byte on a connection of its own, so
// that nothing cleans its path, fixes its Content-Length or refuses to send it: what a
// hostile client sends, not what Go's client would.
type rawRequest struct {
	method, target string
	header         map[string]string // "" deletes a default header
	body           func() io.Reader  // nil: no body
	contentLength  int64             // sent as Content-Length; -1: chunked; -2: no header at all
	trickle        time.Duration     // write the body one byte (or chunk of one byte) per trickle
	proto          string            // the request line's version; "" is HTTP/1.1
}

// rawAnswer is what came back: the status, the header and the body, or err when the
// server closed the connection (or the client gave up) without an answer.
type rawAnswer struct {
	code   int
	header http.Header
	body   []byte
	err    error
}

// send dials addr, writes the request while reading the answer (a server may answer before
// the body is all sent, and then close), and closes the connection. It gives up after limit.
func (q rawRequest) send(addr string, limit time.Duration) rawAnswer {
	conn, err := net.DialTimeout("tcp", addr, limit)
	if err != nil {
		return rawAnswer{err: err}
	}
	conn.SetDeadline(time.Now().Add(limit))
	var wg sync.WaitGroup
	defer wg.Wait() // after Close (deferred later, run first): the writer ends
	defer conn.Close()
	wg.Go(func() { q.write(conn) })
	resp, err := http.ReadResponse(bufio.NewReader(conn), &http.Request{Method: q.method})
	if err != nil {
		return rawAnswer{err: err}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return rawAnswer{code: resp.StatusCode, header: resp.Header, body: body, err: err}
}

func (q rawRequest) write(w io.Writer) error {
	h := map[string]string{"Host": "127.0.0.1"}
	for k, v := range q.header {
		h[k] = v
	}
	switch {
	case q.contentLength == -1:
		h["Transfer-Encoding"] = "chunked"
	case q.contentLength >= 0:
		h["Content-Length"] = fmt.Sprint(q.contentLength)
	}
	keys := make([]string, 0, len(h))
	for k, v := range h {
		if v != "" {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	var head strings.Builder
	proto := q.proto
	if proto == "" {
		proto = "HTTP/1.1"
	}
	fmt.Fprintf(&head, "%s %s %s\r\n", q.method, q.target, proto)
	for _, k := range keys {
		fmt.Fprintf(&head, "%s: %s\r\n", k, h[k])
	}
	head.WriteString("\r\n")
	if _, err := io.WriteString(w, head.String()); err != nil {
		return err
	}
	if q.body == nil {
		return nil
	}
	body := q.body()
	if q.trickle > 0 {
		body = &trickler{r: body, every: q.trickle}
	}
	if q.contentLength != -1 {
		_, err := io.Copy(w, body)
		return err
	}
	cw := httputil.NewChunkedWriter(w)
	if _, err := io.Copy(cw, body); err != nil {
		return err
	}
	if err := cw.Close(); err != nil {
		return err
	}
	_, err := io.WriteString(w, "\r\n")
	return err
}

// trickler reads one byte at a time, one per every.
type trickler struct {
	r     io.Reader
	every time.Duration
}

func (t *trickler) Read(p []byte) (int, error) {
	time.Sleep(t.every)
	return t.r.Read(p[:min(len(p), 1)])
}

// repeatByte is an endless stream of one byte: big bodies without holding them in memory
// (the test runs in the agent's process, whose memory it measures).
type repeatByte byte

func (b repeatByte) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(b)
	}
	return len(p), nil
}

// slowHeaders opens a connection and sends a request line and then one header line per
// every, never ending the headers, until the server closes the connection. It returns how
// long the server let it send, or an error if the server was still listening after limit.
func slowHeaders(addr string, every, limit time.Duration) (time.Duration, error) {
	start := time.Now() // before the dial: a starved client may see it complete late
	conn, err := net.DialTimeout("tcp", addr, limit)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	conn.SetDeadline(start.Add(limit))
	closed := make(chan struct{})
	var got bytes.Buffer // what the server said, if anything
	go func() {          // ends when the server closes, or at the deadline
		defer close(closed)
		io.Copy(&got, io.LimitReader(conn, 1<<10))
	}()
	defer func() { conn.Close(); <-closed }()
	if _, err := io.WriteString(conn, "POST /webhook/web HTTP/1.1\r\nHost: 127.0.0.1\r\n"); err != nil {
		return time.Since(start), nil
	}
	for i := 0; ; i++ {
		select {
		case <-closed:
			if time.Since(start) >= limit {
				return 0, fmt.Errorf("slow headers: connection still open after %s", limit)
			}
			if got.Len() > 0 {
				return 0, fmt.Errorf("slow headers: the server answered %q, want the connection closed", got.Bytes())
			}
			return time.Since(start), nil
		case <-time.After(every):
		}
		if _, err := fmt.Fprintf(conn, "X-Slow-%d: x\r\n", i); err != nil {
			<-closed
			return time.Since(start), nil
		}
	}
}
