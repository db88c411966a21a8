package journald

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode"

	"github.com/coreos/go-systemd/v22/journal"
	"github.com/rs/zerolog"
)

const (
	// DefaultIdentifier is the SYSLOG_IDENTIFIER of every entry: what `journalctl` prints
	// before each message, and what `journalctl -t` selects.
	DefaultIdentifier = "pushdeploy"
	// DefaultPrefix starts the journal name of every field taken from an event: "deploy"
	// becomes PUSHDEPLOY_DEPLOY. Journal field names are upper case, and a prefix keeps them
	// apart from the journal's own (MESSAGE, PRIORITY, _PID, …).
	DefaultPrefix = "PUSHDEPLOY_"
)

// maxFieldName is the longest field name journald accepts.
const maxFieldName = 64

// Writer is a zerolog.LevelWriter that sends each event, a JSON object as zerolog encodes
// it, to the journal as one entry:
//
//   - PRIORITY from the event's level (Priority);
//   - MESSAGE the event's message followed by its fields as key=value, in the event's
//     order, without time, level and component: what `journalctl -u pushdeploy` shows;
//   - every field but time, level and message as a field of its own, named Prefix plus
//     the key in upper case (PUSHDEPLOY_DEPLOY=…, PUSHDEPLOY_APP=…, PUSHDEPLOY_ERROR=…):
//     strings as they are (newlines kept), numbers, booleans and arrays as JSON;
//   - SYSLOG_IDENTIFIER=Identifier.
//
// An event journald does not take (its socket is gone) or that is not a JSON object is
// written to the fallback writer as it came: the line is not lost, only plainer. A Writer
// keeps no state between events and is safe for concurrent use.
type Writer struct {
	Identifier string
	Prefix     string

	send     func(message string, p journal.Priority, fields map[string]string) error
	fallback io.Writer
}

// NewWriter returns a Writer that sends to the local journal (journal.Send, on
// /run/systemd/journal/socket) and falls back to fallback.
func NewWriter(fallback io.Writer) *Writer {
	return &Writer{Identifier: DefaultIdentifier, Prefix: DefaultPrefix, send: journal.Send, fallback: fallback}
}

// Priority is the journal priority of a zerolog level: error is err (3), warn warning (4),
// info and an event without level info (6), debug and trace debug (7), fatal and panic
// crit (2).
func Priority(l zerolog.Level) journal.Priority {
	switch l {
	case zerolog.TraceLevel, zerolog.DebugLevel:
		return journal.PriDebug
	case zerolog.WarnLevel:
		return journal.PriWarning
	case zerolog.ErrorLevel:
		return journal.PriErr
	case zerolog.FatalLevel, zerolog.PanicLevel:
		return journal.PriCrit
	}
	return journal.PriInfo
}

// Write sends an event whose level is read from its own level field.
func (w *Writer) Write(p []byte) (int, error) {
	return w.write(nil, p)
}

// WriteLevel sends an event of level l.
func (w *Writer) WriteLevel(l zerolog.Level, p []byte) (int, error) {
	return w.write(&l, p)
}

func (w *Writer) write(level *zerolog.Level, p []byte) (int, error) {
	fields, err := parse(p)
	if err == nil {
		msg, vars, l := w.entry(fields)
		if level != nil {
			l = *level
		}
		err = w.send(msg, Priority(l), vars)
	}
	if err != nil {
		if _, ferr := w.fallback.Write(p); ferr != nil {
			return 0, errors.Join(err, ferr)
		}
	}
	return len(p), nil
}

// entry builds the journal entry of an event: its MESSAGE, its fields and its level.
func (w *Writer) entry(fields []field) (string, map[string]string, zerolog.Level) {
	var msg, rest strings.Builder
	vars := make(map[string]string, len(fields)+1)
	vars["SYSLOG_IDENTIFIER"] = w.Identifier
	level := zerolog.NoLevel
	for _, f := range fields {
		switch f.key {
		case zerolog.TimestampFieldName:
			continue
		case zerolog.LevelFieldName:
			if l, err := zerolog.ParseLevel(f.value); err == nil {
				level = l
			}
			continue
		case zerolog.MessageFieldName:
			msg.WriteString(f.value)
			continue
		case "component":
		default:
			rest.WriteByte(' ')
			rest.WriteString(f.key)
			rest.WriteByte('=')
			rest.WriteString(f.quoted())
		}
		vars[w.name(f.key)] = f.value
	}
	return strings.TrimSpace(msg.String() + rest.String()), vars, level
}

// name is the journal field name of an event's key: Prefix plus the key in upper case,
// every character journald refuses made an underscore.
func (w *Writer) name(key string) string {
	b := []byte(w.Prefix + strings.ToUpper(key))
	for i, c := range b {
		if (c < 'A' || c > 'Z') && (c < '0' || c > '9') && c != '_' {
			b[i] = '_'
		}
	}
	return string(b[:min(len(b), maxFieldName)])
}

// field is one key of an event and its value: a string's text, or the JSON of anything
// else (raw).
type field struct {
	key, value string
	raw        bool
}

// quoted is the value as MESSAGE shows it: a string in Go quotes when it is empty or holds
// a space, a quote, an equals sign or a character that is not printable (a newline); JSON
// as it is.
func (f field) quoted() string {
	if f.raw {
		return f.value
	}
	if f.value == "" || strings.IndexFunc(f.value, func(r rune) bool {
		return r == ' ' || r == '"' || r == '=' || !unicode.IsPrint(r)
	}) >= 0 {
		return strconv.Quote(f.value)
	}
	return f.value
}

// parse reads an event's keys and values in order.
func parse(p []byte) ([]field, error) {
	dec := json.NewDecoder(bytes.NewReader(p))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, fmt.Errorf("log event is not a JSON object: %.40q", p)
	}
	var fields []field
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, fmt.Errorf("read log event: %w", err)
		}
		key, _ := tok.(string)
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, fmt.Errorf("read log event field %s: %w", key, err)
		}
		f := field{key: key, value: string(raw), raw: true}
		if len(raw) > 0 && raw[0] == '"' {
			if err := json.Unmarshal(raw, &f.value); err != nil {
				return nil, fmt.Errorf("read log event field %s: %w", key, err)
			}
			f.raw = false
		}
		fields = append(fields, f)
	}
	return fields, nil
}
