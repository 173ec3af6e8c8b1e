package installer

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
)

// sysLogHandler is a slog.Handler for the platform's system log (the Windows
// Event Log): it passes on warnings and errors only, each as one line of
// text "msg key=value …". Values are formatted with slog's own rules, so a
// config.Secret prints as [redacted].
type sysLogHandler struct {
	write  func(level slog.Level, line string) error
	prefix string // pre-formatted attrs from WithAttrs, with group names
	group  string
}

func newSysLogHandler(write func(level slog.Level, line string) error) *sysLogHandler {
	return &sysLogHandler{write: write}
}

func (h *sysLogHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelWarn }

func (h *sysLogHandler) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString(r.Message)
	b.WriteString(h.prefix)
	r.Attrs(func(a slog.Attr) bool {
		appendAttr(&b, h.group, a)
		return true
	})
	if err := h.write(r.Level, b.String()); err != nil {
		return fmt.Errorf("write system log: %w", err)
	}
	return nil
}

func (h *sysLogHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	var b strings.Builder
	for _, a := range attrs {
		appendAttr(&b, h.group, a)
	}
	return &sysLogHandler{write: h.write, prefix: h.prefix + b.String(), group: h.group}
}

func (h *sysLogHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	return &sysLogHandler{write: h.write, prefix: h.prefix, group: h.group + name + "."}
}

func appendAttr(b *strings.Builder, group string, a slog.Attr) {
	a.Value = a.Value.Resolve()
	if a.Equal(slog.Attr{}) {
		return
	}
	if a.Value.Kind() == slog.KindGroup {
		g := group
		if a.Key != "" {
			g += a.Key + "."
		}
		for _, ga := range a.Value.Group() {
			appendAttr(b, g, ga)
		}
		return
	}
	v := a.Value.String()
	if strings.ContainsAny(v, " \t\n\"=") || v == "" {
		v = fmt.Sprintf("%q", v)
	}
	fmt.Fprintf(b, " %s%s=%s", group, a.Key, v)
}
