package agent

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"

	"github.com/rs/zerolog"
)

// net/http refuses a request it cannot parse before any handler runs, writing a fixed
// plain-text answer straight to the connection: 431 for headers over MaxHeaderBytes, 400 for
// a request line or Host header that does not parse, and, although the fault is the
// client's, 501 for a Transfer-Encoding it does not know and 505 for an HTTP version other
// than 1.x. No server setting changes them. Every other refusal of the webhook listener is a
// 4xx whose JSON names what was wrong, so that a sender (and a flood of them) learns the same
// way why; jsonAnswers makes these look alike.
//
// Such an answer is told apart by its header block, which is rawErrorHeaders exactly: an
// answer a handler writes always carries a Date and has its headers sorted (Connection
// before Content-Type), so it never matches.
const rawErrorHeaders = "\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n"

// jsonAnswers is a listener whose connections rewrite net/http's own refusals (see
// rawErrorHeaders) into JSON ones. maxHeader is the server's MaxHeaderBytes, which the 431
// names.
//
// With tls set it also serves TLS, above which the rewriting must sit (below it the answers
// are ciphertext). net/http then no longer sees a *tls.Conn, so the connection does what
// net/http did for one: the handshake at the first read, under the deadline net/http has
// set for the request's headers; a plain HTTP request told that the listener speaks HTTPS;
// a failed handshake logged at debug level (the internet's scanners fail many). The webhook
// handlers do not read the request's TLS state.
type jsonAnswers struct {
	net.Listener
	maxHeader int
	tls       *tls.Config
	log       zerolog.Logger
}

func (l jsonAnswers) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	jc := &jsonAnswersConn{Conn: c, maxHeader: l.maxHeader, log: l.log}
	if l.tls != nil {
		jc.tls = tls.Server(c, l.tls)
		jc.Conn = jc.tls
	}
	return jc, nil
}

type jsonAnswersConn struct {
	net.Conn
	maxHeader int
	tls       *tls.Conn // nil on a plain listener
	shook     bool      // the handshake was tried: only net/http's goroutines read, one at a time
	log       zerolog.Logger
}

// Read reads from the connection, after the TLS handshake on a TLS listener.
func (c *jsonAnswersConn) Read(p []byte) (int, error) {
	if c.tls != nil && !c.shook {
		c.shook = true
		if err := c.tls.Handshake(); err != nil {
			c.refuseHandshake(err)
			return 0, err
		}
	}
	return c.Conn.Read(p)
}

// refuseHandshake answers a plain HTTP request sent to the TLS listener in plain HTTP, as
// net/http does, and logs any other failed handshake.
func (c *jsonAnswersConn) refuseHandshake(err error) {
	var re tls.RecordHeaderError
	if errors.As(err, &re) && re.Conn != nil && looksLikeHTTP(re.RecordHeader) {
		body, _ := json.Marshal(answer{Status: "error", Error: "TLS: this listener speaks HTTPS (send the request to https://)"})
		fmt.Fprintf(re.Conn, "HTTP/1.0 400 Bad Request\r\nConnection: close\r\nContent-Length: %d\r\n"+
			"Content-Type: application/json\r\n\r\n%s\n", len(body)+1, body)
		re.Conn.Close()
		return
	}
	c.log.Debug().Err(err).Str("remote", c.RemoteAddr().String()).Msg("webhook listener: TLS handshake failed")
}

// looksLikeHTTP says whether a TLS record header is the start of an HTTP request, as
// net/http tells it.
func looksLikeHTTP(hdr [5]byte) bool {
	switch string(hdr[:]) {
	case "GET /", "HEAD ", "POST ", "PUT /", "OPTIO":
		return true
	}
	return false
}

// Write passes p on, or its JSON rewrite when p is one of net/http's own refusals (it writes
// each in one Write, and closes the connection after it).
func (c *jsonAnswersConn) Write(p []byte) (int, error) {
	if ans, ok := rewriteRawAnswer(p, c.maxHeader); ok {
		if _, err := c.Conn.Write(ans); err != nil {
			return 0, err
		}
		return len(p), nil
	}
	return c.Conn.Write(p)
}

// rewriteRawAnswer returns the JSON answer that replaces p, when p is net/http's answer
// "HTTP/1.1 <code> <text>[: <detail>]" + rawErrorHeaders + body.
func rewriteRawAnswer(p []byte, maxHeader int) ([]byte, bool) {
	rest, ok := bytes.CutPrefix(p, []byte("HTTP/1.1 "))
	if !ok {
		return nil, false
	}
	line, _, ok := bytes.Cut(rest, []byte(rawErrorHeaders))
	if !ok || len(line) < 3 || bytes.Contains(line, []byte("\r\n")) {
		return nil, false
	}
	code, err := strconv.Atoi(string(line[:3]))
	if err != nil {
		return nil, false
	}
	_, detail, _ := bytes.Cut(line, []byte(": "))
	var reason string
	switch code {
	case http.StatusRequestHeaderFieldsTooLarge:
		reason = fmt.Sprintf("headers: larger than %d bytes (the request line and headers together)", maxHeader)
	case http.StatusNotImplemented:
		code, reason = http.StatusBadRequest, "Transfer-Encoding: not supported (send chunked, or none with a Content-Length)"
	case http.StatusHTTPVersionNotSupported:
		code, reason = http.StatusBadRequest, "request line: HTTP version not supported (send HTTP/1.1)"
	default:
		code, reason = http.StatusBadRequest, "request line or headers: malformed"
		if len(detail) > 0 {
			reason += " (" + string(detail) + ")"
		}
	}
	body, _ := json.Marshal(answer{Status: "error", Error: reason})
	body = append(body, '\n')
	return fmt.Appendf(nil, "HTTP/1.1 %d %s\r\nConnection: close\r\nContent-Length: %d\r\n"+
		"Content-Type: application/json\r\nX-Content-Type-Options: nosniff\r\n\r\n%s",
		code, http.StatusText(code), len(body), body), true
}
