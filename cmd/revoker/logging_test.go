package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestNewLoggerFormat(t *testing.T) {
	t.Parallel()
	tests := []struct {
		format   string
		wantJSON bool
	}{
		{"auto", true}, // a buffer is not a terminal
		{"json", true},
		{"text", false},
	}
	for _, tt := range tests {
		t.Run(tt.format, func(t *testing.T) {
			var buf bytes.Buffer
			newLogger(&buf, tt.format, slog.LevelInfo).Info("hello", "err", errors.New("boom"), "n", 3)
			line := strings.TrimSpace(buf.String())
			var doc map[string]any
			isJSON := json.Unmarshal([]byte(line), &doc) == nil
			if isJSON != tt.wantJSON {
				t.Fatalf("JSON = %v, want %v: %q", isJSON, tt.wantJSON, line)
			}
			if isJSON {
				if doc["msg"] != "hello" || doc["err"] != "boom" || doc["level"] != "INFO" {
					t.Errorf("unexpected record %v", doc)
				}
				return
			}
			for _, want := range []string{"INF", "hello", "err=boom", "n=3"} {
				if !strings.Contains(line, want) {
					t.Errorf("text line %q lacks %q", line, want)
				}
			}
			if strings.Contains(line, "\x1b[") {
				t.Errorf("colours written to a non-terminal: %q", line)
			}
		})
	}
}

func TestNewLoggerLevel(t *testing.T) {
	t.Parallel()
	for _, format := range []string{"json", "text"} {
		t.Run(format, func(t *testing.T) {
			var buf bytes.Buffer
			log := newLogger(&buf, format, slog.LevelWarn)
			log.Debug("debug-line")
			log.Info("info-line")
			log.Warn("warn-line")
			log.Error("error-line")
			out := buf.String()
			for _, dropped := range []string{"debug-line", "info-line"} {
				if strings.Contains(out, dropped) {
					t.Errorf("%s logged at level warn", dropped)
				}
			}
			for _, kept := range []string{"warn-line", "error-line"} {
				if !strings.Contains(out, kept) {
					t.Errorf("%s missing at level warn", kept)
				}
			}

			buf.Reset()
			newLogger(&buf, format, slog.LevelDebug).Debug("debug-line")
			if !strings.Contains(buf.String(), "debug-line") {
				t.Error("debug line missing at level debug")
			}
		})
	}
}

func TestIsTerminal(t *testing.T) {
	t.Parallel()
	f, err := os.Create(filepath.Join(t.TempDir(), "log"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if isTerminal(f) {
		t.Error("a regular file is a terminal")
	}
	if isTerminal(&bytes.Buffer{}) {
		t.Error("a buffer is a terminal")
	}
	// A character device is taken for a terminal.
	if dev, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0); err == nil {
		defer dev.Close()
		if info, err := dev.Stat(); err == nil && info.Mode()&os.ModeCharDevice != 0 && !isTerminal(dev) {
			t.Error("a character device is not taken for a terminal")
		}
	}

	// auto on a regular file writes JSON.
	newLogger(f, "auto", slog.LevelInfo).Info("to-file")
	data, err := os.ReadFile(f.Name())
	if err != nil {
		t.Fatal(err)
	}
	if !json.Valid(bytes.TrimSpace(data)) {
		t.Errorf("auto wrote %q to a file, want JSON", data)
	}
}
