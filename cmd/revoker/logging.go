package main

import (
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/lmittmann/tint"
)

// newLogger returns the program's one logger, writing to w at level and
// above. format is REVOKER_LOG_FORMAT: "json" writes JSON lines, "text"
// writes tint's human-readable lines (coloured only on a terminal), and
// "auto" (or anything else) chooses text when w is a terminal and JSON
// otherwise. Errors are logged under the key "err".
func newLogger(w io.Writer, format string, level slog.Level) *slog.Logger {
	term := isTerminal(w)
	switch {
	case format == "json", format != "text" && !term:
		return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: level}))
	}
	return slog.New(tint.NewTextHandler(w, &tint.Options{
		Level:      level,
		TimeFormat: time.TimeOnly + ".000",
		NoColor:    !term,
	}))
}

// isTerminal reports whether w is a character device, such as a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	info, err := f.Stat()
	return err == nil && info.Mode()&os.ModeCharDevice != 0
}
