package sdbus

import (
	"encoding/json"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestMessages(t *testing.T) {
	tests := []struct {
		name string
		out  string // journalctl -o json output
		want []string
	}{
		{"string", `{"MESSAGE":"boom","_PID":"42"}`, []string{"boom"}},
		{"byte array", `{"MESSAGE":[98,111,111,109,255]}`, []string{"boom\uFFFD"}},
		{"missing MESSAGE", `{"_PID":"42"}`, nil},
		{"null MESSAGE", `{"MESSAGE":null}`, nil},
		{"field given twice", `{"MESSAGE":["one",[116,119,111]]}`, []string{"one two"}},
		{"neither", `{"MESSAGE":{"a":1}}`, []string{`{"a":1}`}},
		{"several, in order", "{\"MESSAGE\":\"one\"}\n{\"_PID\":\"1\"}\n{\"MESSAGE\":\"two\"}\n", []string{"one", "two"}},
		{"none", "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			entries, err := decode([]byte(tt.out))
			if err != nil {
				t.Fatal(err)
			}
			if got := messages(entries); !slices.Equal(got, tt.want) {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
	if _, err := decode([]byte("{\"MESSAGE\":\"one\"}\nnot json\n")); err == nil || !strings.Contains(err.Error(), "not json") {
		t.Errorf("decode a line that is not JSON: got %v, want an error quoting it", err)
	}
}

// TestEntry_ofUserUnit checks which lines Journal takes for a user unit whose last main
// process had PID 42 and started at start.
func TestEntry_ofUserUnit(t *testing.T) {
	start := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	main := mainProcess{pid: 42, start: start}
	at := func(d time.Duration) string { return strconv.FormatInt(start.Add(d).UnixMicro(), 10) }
	tests := []struct {
		name string
		e    entry
		main mainProcess
		want bool
	}{
		{"attributed to the unit", entry{UserUnit: raw("web.service"), PID: raw("7")}, main, true},
		{"the manager about the unit", entry{About: raw("web.service"), UserUnit: raw("init.scope"), PID: raw("1")}, main, true},
		{"no unit, from the main process", entry{PID: raw("42"), Realtime: at(time.Millisecond)}, main, true},
		{"no unit, from the main process as it starts", entry{PID: raw("42"), Realtime: at(0)}, main, true},
		{"no unit, from its PID before it started", entry{PID: raw("42"), Realtime: at(-time.Second)}, main, false},
		{"another user unit's, with its PID", entry{UserUnit: raw("db.service"), PID: raw("42"), Realtime: at(time.Second)}, main, false},
		{"a system unit's, with its PID", entry{Unit: raw("cron.service"), PID: raw("42"), Realtime: at(time.Second)}, main, false},
		{"no unit, another PID", entry{PID: raw("43"), Realtime: at(time.Second)}, main, false},
		{"no unit, and no main process", entry{PID: raw("0"), Realtime: at(time.Second)}, mainProcess{}, false},
		{"no timestamp", entry{PID: raw("42")}, main, false},
	}
	for _, tt := range tests {
		if got := tt.e.ofUserUnit("web.service", tt.main); got != tt.want {
			t.Errorf("%s: got %v, want %v", tt.name, got, tt.want)
		}
	}
}

func raw(s string) json.RawMessage {
	b, _ := json.Marshal(s)
	return b
}
