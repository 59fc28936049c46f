package daemon

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"unicode"

	"github.com/coreos/go-systemd/v22/journal"
)

// NewLogger returns the daemon's logger. Under systemd it writes to the
// journal's native protocol, so each attribute becomes a field an operator
// can search (`journalctl -u outpost SENSOR=greenhouse`); when stderr is
// the journal stream but the socket is not there, stderr lines carry
// sd-daemon priority prefixes (`<4>…`) so `journalctl -p warning` works;
// anywhere else it writes plain text lines.
func NewLogger(stderr io.Writer, level slog.Leveler, ident string) *slog.Logger {
	isJournal, _ := journal.StderrIsJournalStream()
	switch {
	case isJournal && journal.Enabled():
		fallback := &prefixSink{w: stderr}
		return slog.New(&handler{level: level, sink: &journalSink{ident: ident, send: journal.Send, fallback: fallback}})
	case isJournal:
		return slog.New(&handler{level: level, sink: &prefixSink{w: stderr}})
	default:
		return slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	}
}

// ParseLevel maps the config's log.level to a slog level.
func ParseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, fmt.Errorf("log level %q: want debug, info, warn or error", s)
	}
	return l, nil
}

// priority maps a slog level to a syslog priority.
func priority(l slog.Level) journal.Priority {
	switch {
	case l >= slog.LevelError:
		return journal.PriErr
	case l >= slog.LevelWarn:
		return journal.PriWarning
	case l >= slog.LevelInfo:
		return journal.PriInfo
	default:
		return journal.PriDebug
	}
}

// field is one attribute, flattened: groups joined with dots.
type field struct{ key, val string }

// sink writes one record.
type sink interface {
	write(level slog.Level, msg string, fields []field)
}

// handler is a slog.Handler that flattens attributes and hands records to
// a sink.
type handler struct {
	level  slog.Leveler
	prefix string // group prefix for attributes added from now on
	attrs  []field
	sink   sink
}

func (h *handler) Enabled(_ context.Context, l slog.Level) bool { return l >= h.level.Level() }

func (h *handler) Handle(_ context.Context, r slog.Record) error {
	fields := append(make([]field, 0, len(h.attrs)+r.NumAttrs()), h.attrs...)
	r.Attrs(func(a slog.Attr) bool {
		fields = appendAttr(fields, h.prefix, a)
		return true
	})
	h.sink.write(r.Level, r.Message, fields)
	return nil
}

func (h *handler) WithAttrs(as []slog.Attr) slog.Handler {
	h2 := *h
	h2.attrs = append([]field(nil), h.attrs...)
	for _, a := range as {
		h2.attrs = appendAttr(h2.attrs, h.prefix, a)
	}
	return &h2
}

func (h *handler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	h2 := *h
	h2.prefix = h.prefix + name + "."
	return &h2
}

func appendAttr(fields []field, prefix string, a slog.Attr) []field {
	a.Value = a.Value.Resolve()
	if a.Equal(slog.Attr{}) {
		return fields
	}
	if a.Value.Kind() == slog.KindGroup {
		p := prefix
		if a.Key != "" {
			p += a.Key + "."
		}
		for _, g := range a.Value.Group() {
			fields = appendAttr(fields, p, g)
		}
		return fields
	}
	return append(fields, field{prefix + a.Key, a.Value.String()})
}

// text renders a record on one line: msg key=value … (journald splits
// records on newlines, so none may appear).
func text(msg string, fields []field) string {
	var b strings.Builder
	b.WriteString(oneLine(msg))
	for _, f := range fields {
		b.WriteByte(' ')
		b.WriteString(f.key)
		b.WriteByte('=')
		if needsQuote(f.val) {
			b.WriteString(strconv.Quote(f.val))
		} else {
			b.WriteString(f.val)
		}
	}
	return b.String()
}

func oneLine(s string) string {
	if !strings.ContainsAny(s, "\r\n") {
		return s
	}
	return strings.NewReplacer("\r", `\r`, "\n", `\n`).Replace(s)
}

func needsQuote(s string) bool {
	if s == "" {
		return true
	}
	for _, r := range s {
		if r == ' ' || r == '=' || r == '"' || !unicode.IsPrint(r) {
			return true
		}
	}
	return false
}

// prefixSink writes "<priority>text\n" lines, as sd-daemon(3) describes.
type prefixSink struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *prefixSink) write(l slog.Level, msg string, fields []field) {
	line := "<" + strconv.Itoa(int(priority(l))) + ">" + text(msg, fields) + "\n"
	s.mu.Lock()
	defer s.mu.Unlock()
	io.WriteString(s.w, line)
}

// journalSink writes through the journal's native protocol: MESSAGE is the
// whole line (what journalctl shows), and each attribute is also a field of
// its own, named in upper case (sensor → SENSOR, spool.path → SPOOL_PATH).
type journalSink struct {
	ident    string
	send     func(msg string, p journal.Priority, vars map[string]string) error
	fallback *prefixSink
}

func (s *journalSink) write(l slog.Level, msg string, fields []field) {
	vars := make(map[string]string, len(fields)+1)
	if s.ident != "" {
		vars["SYSLOG_IDENTIFIER"] = s.ident
	}
	for _, f := range fields {
		if name := journalField(f.key); name != "" {
			vars[name] = f.val
		}
	}
	if err := s.send(text(msg, fields), priority(l), vars); err != nil {
		s.fallback.write(l, msg, fields)
	}
}

// journalField turns an attribute key into a journal field name: upper
// case letters, digits and underscores, not starting with an underscore
// (those are trusted fields journald sets itself) and not one of the
// fields the sink sets.
func journalField(key string) string {
	name := strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z':
			return r - 'a' + 'A'
		case r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
			return r
		default:
			return '_'
		}
	}, key)
	name = strings.TrimLeft(name, "_0123456789")
	switch name {
	case "", "MESSAGE", "PRIORITY", "SYSLOG_IDENTIFIER":
		if name == "" {
			return ""
		}
		return "ATTR_" + name
	}
	return name
}
