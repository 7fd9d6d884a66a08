package natstest

import (
	"fmt"
	"os"
	"strings"
	"sync"
)

// logger is the servers' logger: silent unless NATSTEST_LOG is set, but it
// always remembers the last few errors so a failed start can say why.
type logger struct {
	name         string
	print        bool
	debug, trace bool

	mu     sync.Mutex
	errors []string
	fatal  bool
}

const keptErrors = 5

func newLogger(name string) *logger {
	l := &logger{name: name}
	switch v := os.Getenv("NATSTEST_LOG"); v {
	case "", "0", "false":
	case "trace":
		l.print, l.debug, l.trace = true, true, true
	case "debug":
		l.print, l.debug = true, true
	default:
		l.print = true
	}
	return l
}

func (l *logger) write(level, format string, v []any) string {
	line := fmt.Sprintf(format, v...)
	if l.print {
		fmt.Fprintf(os.Stderr, "[%s] %s %s\n", l.name, level, line)
	}
	return line
}

func (l *logger) keep(line string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.errors = append(l.errors, line)
	if len(l.errors) > keptErrors {
		l.errors = l.errors[len(l.errors)-keptErrors:]
	}
}

// reset forgets the errors of an earlier run.
func (l *logger) reset() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.errors, l.fatal = nil, false
}

// failed reports whether the server gave up (logged a fatal error).
func (l *logger) failed() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.fatal
}

// lastErrors formats the remembered errors for a test failure message.
func (l *logger) lastErrors() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.errors) == 0 {
		return ""
	}
	return "; server errors: " + strings.Join(l.errors, "; ")
}

func (l *logger) Noticef(format string, v ...any) { l.write("INF", format, v) }
func (l *logger) Warnf(format string, v ...any)   { l.write("WRN", format, v) }
func (l *logger) Debugf(format string, v ...any)  { l.write("DBG", format, v) }
func (l *logger) Tracef(format string, v ...any)  { l.write("TRC", format, v) }
func (l *logger) Errorf(format string, v ...any)  { l.keep(l.write("ERR", format, v)) }

// Fatalf is what the server logs when it cannot go on (a port in use, say);
// unlike the server's own logger it does not exit the test binary.
func (l *logger) Fatalf(format string, v ...any) {
	l.keep(l.write("FTL", format, v))
	l.mu.Lock()
	l.fatal = true
	l.mu.Unlock()
}
