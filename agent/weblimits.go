package agent

import (
	"time"

	"github.com/pushdeploy/pushdeploy/hooks"
)

// WebLimits bound what one client, or many, can make the webhook listener spend: the
// listener is on the internet, and until a delivery's signature is verified its sender is
// anyone.
type WebLimits struct {
	// ReadHeaderTimeout cuts a client whose request line and headers are not all in within
	// it (slow headers: the connection is closed without an answer).
	ReadHeaderTimeout time.Duration
	// ReadTimeout cuts a request, body included, not all in within it (slow bodies, a
	// Content-Length longer than the body: 408). It is also what bounds how long a sender
	// holds the budget with the part of its body that arrived.
	ReadTimeout time.Duration
	// WriteTimeout bounds the answer, from the end of the headers; at least ReadTimeout.
	WriteTimeout time.Duration
	// IdleTimeout closes a keep-alive connection that sends no new request.
	IdleTimeout time.Duration
	// MaxHeaderBytes bounds the request line and headers (net/http answers 431 beyond).
	MaxHeaderBytes int
	// UnverifiedBodies bounds the memory held by the bodies of deliveries whose signature is
	// not verified yet, summed over every delivery being received, and UnverifiedRate the
	// bytes per second read of them (0: no bound), so that hashing attackers' bodies cannot
	// take the CPU real pushes need. Bytes past hooks.FreeBody of each body are drawn from
	// both; a delivery that finds no room within BudgetWait is refused with 429.
	UnverifiedBodies int64
	UnverifiedRate   int64
	BudgetWait       time.Duration
}

// DefaultWebLimits are the webhook listener's limits. A 25 MiB body needs 427 KiB/s to
// arrive within ReadTimeout.
func DefaultWebLimits() WebLimits {
	return WebLimits{
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       60 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		UnverifiedBodies:  hooks.DefaultBudget,
		UnverifiedRate:    hooks.DefaultBudgetRate,
		BudgetWait:        hooks.DefaultBudgetWait,
	}
}
