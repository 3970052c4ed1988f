package cluster

import (
	"fmt"
	"log/slog"
)

// raftLogger routes etcd raft's logging into slog: its chatty info lines
// (votes, term changes, every conf change) at debug, warnings and errors
// as they are. The site logs the leader changes itself, once each.
type raftLogger struct{ l *slog.Logger }

func (r raftLogger) Debug(v ...any)                 { r.l.Debug(fmt.Sprint(v...)) }
func (r raftLogger) Debugf(format string, v ...any) { r.l.Debug(fmt.Sprintf(format, v...)) }
func (r raftLogger) Info(v ...any)                  { r.l.Debug(fmt.Sprint(v...)) }
func (r raftLogger) Infof(format string, v ...any)  { r.l.Debug(fmt.Sprintf(format, v...)) }
func (r raftLogger) Warning(v ...any)               { r.l.Warn(fmt.Sprint(v...)) }
func (r raftLogger) Warningf(format string, v ...any) {
	r.l.Warn(fmt.Sprintf(format, v...))
}
func (r raftLogger) Error(v ...any)                 { r.l.Error(fmt.Sprint(v...)) }
func (r raftLogger) Errorf(format string, v ...any) { r.l.Error(fmt.Sprintf(format, v...)) }
func (r raftLogger) Fatal(v ...any)                 { r.fatal(fmt.Sprint(v...)) }
func (r raftLogger) Fatalf(format string, v ...any) { r.fatal(fmt.Sprintf(format, v...)) }
func (r raftLogger) Panic(v ...any)                 { r.fatal(fmt.Sprint(v...)) }
func (r raftLogger) Panicf(format string, v ...any) { r.fatal(fmt.Sprintf(format, v...)) }

func (r raftLogger) fatal(msg string) {
	r.l.Error("raft: " + msg)
	// Invariant: raft calls Fatal and Panic only when its own state broke;
	// like a storage panic this ends dsd, whose restart recovers from disk.
	panic("raft: " + msg)
}
