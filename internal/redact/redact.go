package redact

import (
	"net/url"
	"slices"
	"strings"
	"sync"
)

// Mask is what a secret value becomes.
const Mask = "<redacted>"

// MinLen is the shortest value masked: masking "1" or "on" everywhere would garble every
// message and protect nothing.
const MinLen = 4

// Set is the secret values of one app, learned as the agent reads its configurations. It is
// safe for concurrent use; a nil Set masks nothing.
type Set struct {
	mu     sync.RWMutex
	values []string // longest first, so that a value holding another is masked whole
}

// Learn adds values to the set: each as is and URL-escaped (a password in a URL the app
// prints), unless shorter than MinLen. Values are never forgotten while the agent runs: the
// journal of an instance restarted on a new configuration still holds the old one's output.
func (s *Set) Learn(values ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, v := range values {
		for _, form := range []string{v, url.QueryEscape(v), url.PathEscape(v)} {
			if len(form) >= MinLen && !slices.Contains(s.values, form) {
				s.values = append(s.values, form)
			}
		}
	}
	slices.SortStableFunc(s.values, func(a, b string) int { return len(b) - len(a) })
}

// String returns text with every value of the set replaced by Mask.
func (s *Set) String(text string) string {
	if s == nil {
		return text
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, v := range s.values {
		if strings.Contains(text, v) {
			text = strings.ReplaceAll(text, v, Mask)
		}
	}
	return text
}
