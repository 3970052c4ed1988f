package main

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// clockTick is the unit of /proc CPU times (USER_HZ), 100 on Linux.
const clockTick = 10 * time.Millisecond

// cpuSample is a moment's CPU accounting: the machine's busy time over all
// cores, and the CPU time of each process of interest (user + system).
type cpuSample struct {
	at    time.Time
	busy  time.Duration
	procs map[int]time.Duration
}

// sampleCPU reads /proc/stat and /proc/<pid>/stat for pids and for this
// process. ok is false where /proc is not there.
func sampleCPU(pids []int) (s cpuSample, ok bool) {
	s = cpuSample{at: time.Now(), procs: map[int]time.Duration{}}
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return s, false
	}
	busy, err := parseProcStat(b)
	if err != nil {
		return s, false
	}
	s.busy = busy
	for _, pid := range append([]int{os.Getpid()}, pids...) {
		if d, err := procCPU(pid); err == nil {
			s.procs[pid] = d
		}
	}
	return s, true
}

// parseProcStat returns the busy time of the "cpu" line of /proc/stat:
// user, nice, system, irq, softirq and steal (idle and iowait are not busy;
// guest time is already inside user).
func parseProcStat(b []byte) (time.Duration, error) {
	line, _, _ := bytes.Cut(b, []byte("\n"))
	f := strings.Fields(string(line))
	if len(f) < 9 || f[0] != "cpu" {
		return 0, fmt.Errorf("/proc/stat: unexpected first line %q", line)
	}
	var busy int64
	for _, i := range []int{1, 2, 3, 6, 7, 8} {
		v, err := strconv.ParseInt(f[i], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/stat: %w", err)
		}
		busy += v
	}
	return time.Duration(busy) * clockTick, nil
}

// procCPU is a process's user + system time from /proc/<pid>/stat.
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	return parsePidStat(b)
}

// parsePidStat reads utime and stime, fields 14 and 15 of /proc/<pid>/stat;
// the command name (field 2) is in parentheses and may hold spaces.
func parsePidStat(b []byte) (time.Duration, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/pid/stat: no command name")
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state), so field n is f[n-3].
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/pid/stat: %d fields", len(f))
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/pid/stat: bad utime/stime %q %q", f[11], f[12])
	}
	return time.Duration(ut+st) * clockTick, nil
}

// cpuUse is what the CPU did between two samples, in cores (CPU seconds
// per second of wall time).
type cpuUse struct {
	// Server is the system under test's processes.
	Server float64
	// Other is everything that was neither a server, the load generator
	// nor benchcmp: other people's work on a shared machine.
	Other float64
}

// use computes the CPU use between before and after. server are the pids
// of the system under test, all are every child benchcmp runs, and load is
// the load generator's CPU time (it has exited by now).
func use(before, after cpuSample, server, all []int, load time.Duration) cpuUse {
	wall := after.at.Sub(before.at).Seconds()
	if wall <= 0 {
		return cpuUse{}
	}
	delta := func(pid int) time.Duration {
		a, ok1 := after.procs[pid]
		b, ok2 := before.procs[pid]
		if !ok1 || !ok2 {
			return 0
		}
		return a - b
	}
	var srv, ours time.Duration
	for _, pid := range server {
		srv += delta(pid)
	}
	for _, pid := range append([]int{os.Getpid()}, all...) {
		ours += delta(pid)
	}
	other := after.busy - before.busy - ours - load
	return cpuUse{Server: srv.Seconds() / wall, Other: max(0, other.Seconds()/wall)}
}
