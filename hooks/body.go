package hooks

import (
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"os"
)

// readBody reads r's body, at most limit bytes, feeding it to mac as it arrives: the body
// is read once, and authenticated as soon as its last byte is in. It is kept in chunks that
// are only as large as what arrived (a Content-Length that lies does not make it allocate
// more), and the bytes past FreeBody are drawn from budget, chunk by chunk, before they are
// read. held is what was drawn, for the caller to give back once it is done with the body,
// also when readBody refuses it.
func readBody(r *http.Request, limit int64, mac hash.Hash, budget *Budget) (chunks [][]byte, held int64, rerr *Error) {
	cl := r.ContentLength // -1: unknown (chunked)
	var total int64
	var cur []byte
	var probe [1]byte // when a chunked body fills a chunk: is there more before drawing on the budget?
	for cl < 0 || total < cl {
		carry := 0
		if len(cur) == cap(cur) && cl < 0 && len(chunks) > 0 {
			n, err := io.ReadFull(r.Body, probe[:])
			if err == io.EOF {
				break
			}
			if err != nil {
				return nil, held, readError(err, total, cl)
			}
			carry = n
		}
		if len(cur) == cap(cur) {
			chunk := int64(FreeBody)
			if len(chunks) > 0 {
				chunk = budgetChunk
			}
			if cl >= 0 {
				chunk = min(chunk, cl-total)
			}
			chunk = min(chunk, limit+1-total) // one byte past the limit is enough to refuse
			if len(chunks) > 0 {
				switch err := budget.acquire(r.Context(), chunk); {
				case errors.Is(err, errBudgetFull):
					return nil, held, refuse(http.StatusTooManyRequests,
						"body: more than %s of unauthenticated webhook bodies are being received at once; retry later",
						size(budget.size))
				case errors.Is(err, errBudgetRate):
					return nil, held, refuse(http.StatusTooManyRequests,
						"body: unauthenticated webhook bodies are arriving faster than the agent reads them (%s/s); retry later",
						size(int64(budget.limit.Limit())))
				case err != nil:
					return nil, held, &Error{Status: http.StatusBadRequest, Msg: "body: read: " + err.Error(), err: err}
				}
				held += chunk
			}
			cur = make([]byte, 0, chunk)
			if carry > 0 {
				cur = append(cur, probe[0])
				mac.Write(probe[:])
				total++
			}
			chunks = append(chunks, cur)
		}
		n, err := r.Body.Read(cur[len(cur):cap(cur)])
		if n > 0 {
			mac.Write(cur[len(cur) : len(cur)+n])
			cur = cur[:len(cur)+n]
			chunks[len(chunks)-1] = cur
			total += int64(n)
		}
		if total > limit {
			return nil, held, refuse(http.StatusRequestEntityTooLarge, "body: larger than %s", size(limit))
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, held, readError(err, total, cl)
		}
	}
	return chunks, held, nil
}

// readError is the refusal of a body that could not be read: 408 when the connection's
// read deadline passed (the sender stalled, or announced more than it sent), 400 otherwise.
func readError(err error, got, cl int64) *Error {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		msg := fmt.Sprintf("body: only %d bytes arrived before the read timeout", got)
		if cl >= 0 {
			msg = fmt.Sprintf("body: only %d of the %d bytes Content-Length announced arrived before the read timeout", got, cl)
		}
		return &Error{Status: http.StatusRequestTimeout, Msg: msg, err: err}
	}
	return &Error{Status: http.StatusBadRequest, Msg: "body: read: " + err.Error(), err: err}
}

// join returns the body whole: the one chunk of every body up to FreeBody, without a copy.
func join(chunks [][]byte) []byte {
	switch len(chunks) {
	case 0:
		return nil
	case 1:
		return chunks[0]
	}
	var n int
	for _, c := range chunks {
		n += len(c)
	}
	body := make([]byte, 0, n)
	for _, c := range chunks {
		body = append(body, c...)
	}
	return body
}
