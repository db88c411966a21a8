package notify

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"time"

	"github.com/rs/zerolog"
)

// Defaults for a Notifier's tunables.
const (
	DefaultQueue      = 64
	DefaultAttempts   = 5
	DefaultBackoff    = time.Second
	DefaultMaxBackoff = 30 * time.Second
	DefaultTimeout    = 10 * time.Second
)

// The events, as config names them; a target asking for EventFailed also gets the
// failures that say more (reverted, halted, config_reverted).
const (
	EventStarted        = "started"
	EventSucceeded      = "succeeded"
	EventFailed         = "failed"
	EventReverted       = "reverted"
	EventHalted         = "halted"
	EventConfigReverted = "config_reverted"
)

// Events lists every event, in the order a deploy meets them.
var Events = []string{EventStarted, EventSucceeded, EventFailed, EventReverted, EventHalted, EventConfigReverted}

// SignatureHeader carries "sha256=<hex HMAC-SHA256 of the body>" on generic webhooks whose
// target has a secret.
const SignatureHeader = "X-Pushdeploy-Signature-256"

// Event is one thing that happened to a deploy: the JSON body of a generic webhook.
type Event struct {
	Event    string    `json:"event"` // one of the Event constants
	App      string    `json:"app"`
	Host     string    `json:"host"`
	Deploy   string    `json:"deploy"` // the deploy's id
	Kind     string    `json:"kind"`   // deploy, restart, rollback, config
	SHA      string    `json:"sha,omitempty"`
	Previous string    `json:"previous,omitempty"`
	Branch   string    `json:"branch,omitempty"`
	Status   string    `json:"status"`
	Error    string    `json:"error,omitempty"` // why it failed, its first line
	URL      string    `json:"url,omitempty"`   // the deploy's page
	Took     float64   `json:"took_seconds,omitempty"`
	Time     time.Time `json:"time"`
}

// Target is where events go.
type Target struct {
	URL    string
	Slack  bool     // post Slack's incoming-webhook JSON ({"text": …}) instead of the Event
	Secret []byte   // generic webhooks: sign the body with it (nil: unsigned)
	Events []string // the events it wants
	Apps   []string // the apps whose events it gets; nil: every app
}

// wants reports whether t takes ev.
func (t *Target) wants(ev *Event) bool {
	if t.Apps != nil && !slices.Contains(t.Apps, ev.App) {
		return false
	}
	if slices.Contains(t.Events, ev.Event) {
		return true
	}
	switch ev.Event {
	case EventReverted, EventHalted, EventConfigReverted:
		return slices.Contains(t.Events, EventFailed)
	}
	return false
}

// Name is how logs name a target: its scheme and host, never its path or query.
func (t *Target) Name() string {
	u, err := url.Parse(t.URL)
	if err != nil {
		return "<bad url>"
	}
	return u.Scheme + "://" + u.Host
}

// Notifier posts events to targets. Set the tunables before Run.
type Notifier struct {
	Queue               int // per target
	Attempts            int
	Backoff, MaxBackoff time.Duration
	Timeout             time.Duration // one POST
	Client              *http.Client

	log     zerolog.Logger
	targets []*target

	mu     sync.Mutex
	closed bool
}

type target struct {
	Target
	queue chan Event
}

// New returns a notifier for targets that logs with log.
func New(log zerolog.Logger, targets []Target) *Notifier {
	n := &Notifier{Queue: DefaultQueue, Attempts: DefaultAttempts, Backoff: DefaultBackoff,
		MaxBackoff: DefaultMaxBackoff, Timeout: DefaultTimeout, Client: &http.Client{}, log: log}
	for _, t := range targets {
		n.targets = append(n.targets, &target{Target: t})
	}
	return n
}

// Send queues ev for every target that wants it, without ever blocking. An event that
// finds a target's queue full, or the notifier closed, is dropped for that target with a
// log line.
func (n *Notifier) Send(ev Event) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.init()
	for _, t := range n.targets {
		if !t.wants(&ev) {
			continue
		}
		if n.closed {
			n.log.Warn().Str("target", t.Name()).Str("event", ev.Event).Str("deploy", ev.Deploy).Msg("notification dropped: notifier not running")
			continue
		}
		select {
		case t.queue <- ev:
		default:
			n.log.Warn().Str("target", t.Name()).Str("event", ev.Event).Str("deploy", ev.Deploy).Msg("notification dropped: queue full")
		}
	}
}

// Run posts queued events, one goroutine per target, until Close has been called and the
// queues are empty, or ctx ends (what is left is then dropped with a log line each).
func (n *Notifier) Run(ctx context.Context) {
	n.mu.Lock()
	n.init()
	n.mu.Unlock()
	var wg sync.WaitGroup
	for _, t := range n.targets {
		wg.Go(func() {
			for ev := range t.queue {
				if ctx.Err() != nil {
					n.log.Warn().Str("target", t.Name()).Str("event", ev.Event).Str("deploy", ev.Deploy).Msg("notification dropped: agent stopped")
					continue
				}
				n.deliver(ctx, t, ev)
			}
		})
	}
	wg.Wait()
}

// init makes the queues, once; n.mu is held.
func (n *Notifier) init() {
	for _, t := range n.targets {
		if t.queue == nil {
			t.queue = make(chan Event, max(1, n.Queue))
		}
	}
}

// Close stops taking events; Run returns once the queued ones are sent or dropped. Call it
// after Run has started.
func (n *Notifier) Close() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return
	}
	n.closed = true
	n.init()
	for _, t := range n.targets {
		close(t.queue)
	}
}

// errPermanent marks an answer that sending again cannot change.
var errPermanent = errors.New("refused")

func (n *Notifier) deliver(ctx context.Context, t *target, ev Event) {
	body, ctype, err := t.body(&ev)
	log := n.log.With().Str("target", t.Name()).Str("event", ev.Event).Str("deploy", ev.Deploy).Logger()
	if err != nil {
		log.Error().Err(err).Msg("notification dropped")
		return
	}
	id := newID()
	wait := n.Backoff
	for attempt := 1; ; attempt++ {
		err = n.post(ctx, t, body, ctype, ev.Event, id)
		if err == nil {
			log.Debug().Int("attempt", attempt).Msg("notification sent")
			return
		}
		if errors.Is(err, errPermanent) || attempt >= n.Attempts {
			log.Warn().Err(err).Int("attempts", attempt).Msg("notification dropped")
			return
		}
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			log.Warn().Err(err).Int("attempts", attempt).Msg("notification dropped: agent stopped")
			return
		case <-timer.C:
		}
		wait = min(2*wait, n.MaxBackoff)
	}
}

// body is what t is sent for ev, and its content type.
func (t *target) body(ev *Event) ([]byte, string, error) {
	if t.Slack {
		b, err := json.Marshal(map[string]string{"text": SlackText(ev)})
		return b, "application/json", err
	}
	b, err := json.Marshal(ev)
	return b, "application/json", err
}

func (n *Notifier) post(ctx context.Context, t *target, body []byte, ctype, event, id string) error {
	ctx, cancel := context.WithTimeout(ctx, n.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.URL, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("post: %w", errPermanent)
	}
	req.Header.Set("Content-Type", ctype)
	req.Header.Set("User-Agent", "pushdeploy")
	if !t.Slack {
		req.Header.Set("X-Pushdeploy-Event", event)
		req.Header.Set("X-Pushdeploy-Delivery", id)
		if t.Secret != nil {
			req.Header.Set(SignatureHeader, Sign(t.Secret, body))
		}
	}
	resp, err := n.Client.Do(req)
	if err != nil {
		// The error names the URL, whose path may be a secret: keep the cause only.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("post: %w", err)
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	switch {
	case resp.StatusCode < 300:
		return nil
	case resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusRequestTimeout:
		return fmt.Errorf("post: answered %s", resp.Status)
	}
	return fmt.Errorf("post: answered %s: %w", resp.Status, errPermanent)
}

// Sign is the value of SignatureHeader for body signed with secret.
func Sign(secret, body []byte) string {
	mac := hmac.New(sha256.New, secret)
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

func newID() string {
	b := make([]byte, 12)
	rand.Read(b)
	return hex.EncodeToString(b)
}
