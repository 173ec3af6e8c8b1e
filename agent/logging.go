package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tposagent/tposagent/internal/config"
)

// Logging is the agent's log output: text to a console writer, a
// size-rotated file in the data dir, and (as a service) the system log for
// warnings and errors. Every record passes a redactor that replaces any
// configured secret with "[redacted]", whatever path it came by.
type Logging struct {
	Logger *slog.Logger
	file   *RotatingFile
}

// Close flushes and closes the log file.
func (l *Logging) Close() error {
	if l.file == nil {
		return nil
	}
	return l.file.Close()
}

// NewLogging builds the logger for cfg. console may be nil (a service has
// no console); sysLog, when non-nil, gets warnings and errors.
func NewLogging(cfg *config.Config, console io.Writer, sysLog slog.Handler) (*Logging, error) {
	level := ParseLevel(cfg.Log.Level)
	opts := &slog.HandlerOptions{Level: level}
	var hs []slog.Handler
	if console != nil {
		hs = append(hs, slog.NewTextHandler(console, opts))
	}
	l := &Logging{}
	if path := cfg.LogFile(); path != "" {
		f, err := OpenRotatingFile(path, int64(cfg.Log.MaxSize), cfg.Log.MaxBackups)
		if err != nil {
			return nil, fmt.Errorf("open log file: %w", err)
		}
		l.file = f
		hs = append(hs, slog.NewTextHandler(f, opts))
	}
	if sysLog != nil {
		hs = append(hs, minLevel{sysLog, slog.LevelWarn})
	}
	secrets := []string{cfg.TPOSL.Password.Reveal(), cfg.Oduyo.Password.Reveal(), cfg.Oduyo.APIKey.Reveal(), cfg.API.Token.Reveal()}
	l.Logger = slog.New(NewRedactor(slog.NewMultiHandler(hs...), secrets))
	return l, nil
}

// ParseLevel maps the config's level names; unknown names are info.
func ParseLevel(s string) slog.Level {
	switch strings.ToLower(s) {
	case "debug":
		return slog.LevelDebug
	case "warn", "warning":
		return slog.LevelWarn
	case "error":
		return slog.LevelError
	}
	return slog.LevelInfo
}

type minLevel struct {
	slog.Handler
	min slog.Level
}

func (m minLevel) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= m.min && m.Handler.Enabled(ctx, l)
}
func (m minLevel) WithAttrs(as []slog.Attr) slog.Handler {
	return minLevel{m.Handler.WithAttrs(as), m.min}
}
func (m minLevel) WithGroup(g string) slog.Handler { return minLevel{m.Handler.WithGroup(g), m.min} }

// Redactor is a slog.Handler that replaces secrets in the message and in
// every string-valued attribute (including errors and Stringers) before
// they reach the wrapped handler. The packages never log secrets on
// purpose; this is the second line of defence.
type Redactor struct {
	next    slog.Handler
	secrets []string
}

// NewRedactor wraps next; empty and very short secrets are ignored (they
// would redact ordinary words).
func NewRedactor(next slog.Handler, secrets []string) *Redactor {
	var keep []string
	for _, s := range secrets {
		if len(s) >= 4 {
			keep = append(keep, s)
		}
	}
	return &Redactor{next: next, secrets: keep}
}

func (r *Redactor) scrub(s string) string {
	for _, sec := range r.secrets {
		if strings.Contains(s, sec) {
			s = strings.ReplaceAll(s, sec, "[redacted]")
		}
	}
	return s
}

func (r *Redactor) attr(a slog.Attr) slog.Attr {
	v := a.Value.Resolve()
	switch v.Kind() {
	case slog.KindString:
		return slog.String(a.Key, r.scrub(v.String()))
	case slog.KindGroup:
		as := v.Group()
		out := make([]slog.Attr, len(as))
		for i, g := range as {
			out[i] = r.attr(g)
		}
		return slog.Attr{Key: a.Key, Value: slog.GroupValue(out...)}
	case slog.KindAny:
		switch x := v.Any().(type) {
		case error:
			return slog.String(a.Key, r.scrub(x.Error()))
		case fmt.Stringer:
			return slog.String(a.Key, r.scrub(x.String()))
		default:
			return slog.String(a.Key, r.scrub(fmt.Sprintf("%+v", x)))
		}
	}
	return slog.Attr{Key: a.Key, Value: v}
}

func (r *Redactor) Enabled(ctx context.Context, l slog.Level) bool { return r.next.Enabled(ctx, l) }

func (r *Redactor) Handle(ctx context.Context, rec slog.Record) error {
	out := slog.NewRecord(rec.Time, rec.Level, r.scrub(rec.Message), rec.PC)
	rec.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(r.attr(a))
		return true
	})
	return r.next.Handle(ctx, out)
}

func (r *Redactor) WithAttrs(as []slog.Attr) slog.Handler {
	out := make([]slog.Attr, len(as))
	for i, a := range as {
		out[i] = r.attr(a)
	}
	return &Redactor{next: r.next.WithAttrs(out), secrets: r.secrets}
}

func (r *Redactor) WithGroup(name string) slog.Handler {
	return &Redactor{next: r.next.WithGroup(name), secrets: r.secrets}
}

// RotatingFile is an io.Writer that appends to path and, when the file
// would grow beyond maxSize, renames it to path.1 (path.1 to path.2, …,
// keeping backups files) and starts a new one. Safe for concurrent use.
//
// The file is written by a goroutine of its own: a Write waits for its
// line to be written for at most logWriteWait. A disk that does not
// answer (frozen, failing) must not stop whoever logs — the local API's
// answers, the outbox, a stop — so past that wait Write returns, and
// while the disk stays stuck later lines are queued (up to logQueueMax
// of them; beyond, they are dropped and counted in the file once it
// answers again).
type RotatingFile struct {
	mu      sync.Mutex // guards the file: taken by the writer goroutine
	path    string
	max     int64
	backups int
	f       *os.File
	size    int64

	qmu     sync.RWMutex // closed
	closed  bool
	lines   chan logLine
	stuck   atomic.Bool // a write has not returned within logWriteWait
	dropped atomic.Int64
	done    chan struct{}
}

type logLine struct {
	p    []byte
	done chan error // nil: nobody waits
}

// How long a Write waits for the disk, and how many lines wait for it.
const (
	logWriteWait = time.Second
	logQueueMax  = 4096
)

// OpenRotatingFile opens (appends to) path, creating its directory.
func OpenRotatingFile(path string, maxSize int64, backups int) (*RotatingFile, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	r := &RotatingFile{path: path, max: maxSize, backups: backups, lines: make(chan logLine, logQueueMax), done: make(chan struct{})}
	if err := r.open(); err != nil {
		return nil, err
	}
	go r.writer()
	return r, nil
}

func (r *RotatingFile) writer() {
	defer close(r.done)
	for l := range r.lines {
		if n := r.dropped.Swap(0); n > 0 {
			_, _ = r.write([]byte(fmt.Sprintf("tposagent: %d log lines dropped while the disk did not answer\n", n)))
		}
		_, err := r.write(l.p)
		r.stuck.Store(false)
		if l.done != nil {
			l.done <- err
		}
	}
}

func (r *RotatingFile) Write(p []byte) (int, error) {
	r.qmu.RLock()
	defer r.qmu.RUnlock()
	if r.closed {
		return 0, os.ErrClosed
	}
	l := logLine{p: append([]byte(nil), p...)}
	if !r.stuck.Load() {
		l.done = make(chan error, 1)
	}
	select {
	case r.lines <- l:
	default:
		r.dropped.Add(1)
		return len(p), nil
	}
	if l.done == nil {
		return len(p), nil
	}
	t := time.NewTimer(logWriteWait)
	defer t.Stop()
	select {
	case err := <-l.done:
		if err != nil {
			return 0, err
		}
		return len(p), nil
	case <-t.C:
		r.stuck.Store(true)
		return len(p), nil // queued: written when the disk answers
	}
}

func (r *RotatingFile) open() error {
	f, err := os.OpenFile(r.path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return err
	}
	r.f, r.size = f, st.Size()
	return nil
}

func (r *RotatingFile) write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.f == nil {
		return 0, os.ErrClosed
	}
	if r.size > 0 && r.size+int64(len(p)) > r.max {
		if err := r.rotate(); err != nil {
			// Keep logging into the old file rather than losing lines.
			fmt.Fprintf(os.Stderr, "tposagent: rotate log %s: %v\n", r.path, err)
			if r.f == nil {
				return 0, err
			}
		}
	}
	n, err := r.f.Write(p)
	r.size += int64(n)
	return n, err
}

func (r *RotatingFile) rotate() error {
	if err := r.f.Close(); err != nil {
		return err
	}
	r.f = nil
	if r.backups == 0 {
		os.Remove(r.path)
	}
	for i := r.backups; i >= 1; i-- {
		src := r.path
		if i > 1 {
			src = fmt.Sprintf("%s.%d", r.path, i-1)
		}
		os.Rename(src, fmt.Sprintf("%s.%d", r.path, i)) // missing sources are fine
	}
	return r.open()
}

// Close writes the lines still queued and closes the file; a disk that
// does not answer within logWriteWait leaves them (and the file) behind.
func (r *RotatingFile) Close() error {
	r.qmu.Lock()
	if !r.closed {
		r.closed = true
		close(r.lines)
	}
	r.qmu.Unlock()
	select {
	case <-r.done:
	case <-time.After(logWriteWait):
		return errors.New("close log file: the disk did not answer; queued lines left unwritten")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.f == nil {
		return nil
	}
	err := r.f.Close()
	r.f = nil
	return err
}
