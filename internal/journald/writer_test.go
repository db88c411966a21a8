package journald

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/coreos/go-systemd/v22/journal"
	"github.com/rs/zerolog"
)

// sent is one journal entry as the fake send got it.
type sent struct {
	msg    string
	pri    journal.Priority
	fields map[string]string
}

// fakeJournal returns a Writer whose entries are recorded instead of sent, and where the
// fallback writes go.
func fakeJournal(fail error) (*Writer, *[]sent, *bytes.Buffer) {
	var got []sent
	var fallback bytes.Buffer
	w := NewWriter(&fallback)
	w.send = func(msg string, p journal.Priority, fields map[string]string) error {
		if fail != nil {
			return fail
		}
		got = append(got, sent{msg, p, fields})
		return nil
	}
	return w, &got, &fallback
}

func TestWriter_WriteLevel(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		log  func(zerolog.Logger)
		want sent
	}{
		{
			name: "error with the deploy id and a multi-line error",
			log: func(l zerolog.Logger) {
				l.Error().Str("app", "web").Str("deploy", "20260101T000000.000-ab12").
					Err(errors.New("script ./deploy.sh: exited with status 1\nlast line")).Msg("deploy failed")
			},
			want: sent{
				msg: `deploy failed app=web deploy=20260101T000000.000-ab12 error="script ./deploy.sh: exited with status 1\nlast line"`,
				pri: journal.PriErr,
				fields: map[string]string{"SYSLOG_IDENTIFIER": "pushdeploy", "PUSHDEPLOY_COMPONENT": "deploy",
					"PUSHDEPLOY_APP": "web", "PUSHDEPLOY_DEPLOY": "20260101T000000.000-ab12",
					"PUSHDEPLOY_ERROR": "script ./deploy.sh: exited with status 1\nlast line"},
			},
		},
		{
			name: "info with numbers, booleans, arrays and an empty string",
			log: func(l zerolog.Logger) {
				l.Info().Int64("took_ms", 42).Bool("cached", true).Strs("instances", []string{"a@1", "a@2"}).
					Str("previous", "").Msg("current switched")
			},
			want: sent{
				msg: `current switched took_ms=42 cached=true instances=["a@1","a@2"] previous=""`,
				pri: journal.PriInfo,
				fields: map[string]string{"SYSLOG_IDENTIFIER": "pushdeploy", "PUSHDEPLOY_COMPONENT": "deploy",
					"PUSHDEPLOY_TOOK_MS": "42", "PUSHDEPLOY_CACHED": "true", "PUSHDEPLOY_INSTANCES": `["a@1","a@2"]`,
					"PUSHDEPLOY_PREVIOUS": ""},
			},
		},
		{
			name: "warn; keys journald would refuse",
			log:  func(l zerolog.Logger) { l.Warn().Str("x-github.event", "push").Msg("") },
			want: sent{
				msg: `x-github.event=push`,
				pri: journal.PriWarning,
				fields: map[string]string{"SYSLOG_IDENTIFIER": "pushdeploy", "PUSHDEPLOY_COMPONENT": "deploy",
					"PUSHDEPLOY_X_GITHUB_EVENT": "push"},
			},
		},
		{
			name: "debug",
			log:  func(l zerolog.Logger) { l.Debug().Msg("delivery read") },
			want: sent{msg: "delivery read", pri: journal.PriDebug,
				fields: map[string]string{"SYSLOG_IDENTIFIER": "pushdeploy", "PUSHDEPLOY_COMPONENT": "deploy"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			w, got, fallback := fakeJournal(nil)
			// As the agent logs: a timestamp field of its own, a component.
			l := zerolog.New(w).Level(zerolog.TraceLevel).With().Str("time", "2026-01-01T00:00:00.000Z").
				Str("component", "deploy").Logger()
			tt.log(l)
			if len(*got) != 1 {
				t.Fatalf("got %d entries, want 1 (fallback %q)", len(*got), fallback)
			}
			if g := (*got)[0]; !reflect.DeepEqual(g, tt.want) {
				t.Errorf("entry:\n got %q %d %q\nwant %q %d %q", g.msg, g.pri, g.fields, tt.want.msg, tt.want.pri, tt.want.fields)
			}
			if fallback.Len() != 0 {
				t.Errorf("fallback: got %q, want nothing", fallback)
			}
		})
	}
}

// TestWriter_Write: without WriteLevel, the level comes from the event.
func TestWriter_Write(t *testing.T) {
	t.Parallel()
	w, got, _ := fakeJournal(nil)
	if _, err := w.Write([]byte(`{"level":"error","message":"boom"}` + "\n")); err != nil {
		t.Fatal(err)
	}
	if len(*got) != 1 || (*got)[0].pri != journal.PriErr || (*got)[0].msg != "boom" {
		t.Errorf("got %+v, want one err entry \"boom\"", *got)
	}
}

// TestWriter_fallback: what journald does not take goes to the fallback as it came.
func TestWriter_fallback(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		fail  error
		event string
	}{
		{"journald gone", errors.New("dial unixgram /run/systemd/journal/socket: no such file"), `{"level":"info","message":"agent started"}` + "\n"},
		{"not a JSON object", nil, "plain text\n"},
		{"truncated", nil, `{"level":"info","mess`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			w, got, fallback := fakeJournal(tt.fail)
			n, err := w.WriteLevel(zerolog.InfoLevel, []byte(tt.event))
			if err != nil || n != len(tt.event) {
				t.Errorf("WriteLevel: got %d, %v; want %d, nil", n, err, len(tt.event))
			}
			if len(*got) != 0 {
				t.Errorf("sent %+v, want nothing", *got)
			}
			if fallback.String() != tt.event {
				t.Errorf("fallback: got %q, want %q", fallback, tt.event)
			}
		})
	}
}

func TestPriority(t *testing.T) {
	t.Parallel()
	want := map[zerolog.Level]journal.Priority{
		zerolog.TraceLevel: 7, zerolog.DebugLevel: 7, zerolog.InfoLevel: 6, zerolog.NoLevel: 6,
		zerolog.WarnLevel: 4, zerolog.ErrorLevel: 3, zerolog.FatalLevel: 2, zerolog.PanicLevel: 2,
	}
	for l, p := range want {
		if got := Priority(l); got != p {
			t.Errorf("Priority(%s): got %d, want %d", l, got, p)
		}
	}
	if s := strings.Repeat("K", 100); len(NewWriter(nil).name(s)) != maxFieldName {
		t.Errorf("a long key makes a field name longer than %d", maxFieldName)
	}
}
