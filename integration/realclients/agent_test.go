package realclients

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"
)

// agent drives a client script (testdata/node/agent.mjs, browser.mjs,
// testdata/python/agent.py) over its standard input and output: one JSON
// command a line in, one JSON event a line out.
type agent struct {
	b     *broker
	ws    bool // connect over the broker's WebSocket URL
	cmd   *exec.Cmd
	stdin io.WriteCloser
	done  chan struct{} // closed when the script's output has ended
	ready chan struct{} // closed at its "ready" event (browser.mjs)

	mu      sync.Mutex
	nextID  int
	waiting map[int]chan event
	got     map[string][]message
	// transcript is every line the script wrote, and stderr its errors,
	// for the failure message.
	transcript strings.Builder
	stderr     bytes.Buffer
	readyOnce  sync.Once
	closeOnce  sync.Once
	closeErr   error
}

// event is one line of a script's output.
type event struct {
	ID             *int   `json:"id"`
	C              string `json:"c"`
	Ev             string `json:"ev"`
	SessionPresent bool   `json:"session_present"`
	Reason         int    `json:"reason"`
	Codes          []int  `json:"codes"`
	Msg            string `json:"msg"`
	message
}

// startAgent runs name with args as an agent against b.
func startAgent(b *broker, ws bool, name string, args ...string) (*agent, error) {
	a := &agent{b: b, ws: ws, done: make(chan struct{}), ready: make(chan struct{}), waiting: map[int]chan event{}, got: map[string][]message{}}
	a.cmd = exec.Command(name, args...)
	a.cmd.Stderr = &lockedWriter{mu: &a.mu, w: &a.stderr}
	var err error
	if a.stdin, err = a.cmd.StdinPipe(); err != nil {
		return nil, err
	}
	stdout, err := a.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := a.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go a.read(stdout)
	return a, nil
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func (a *agent) read(r io.Reader) {
	defer close(a.done)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		var ev event
		err := json.Unmarshal([]byte(line), &ev)
		a.mu.Lock()
		a.transcript.WriteString(line + "\n")
		switch {
		case err != nil:
			// Not an event: kept in the transcript only.
		case ev.Ev == "message":
			a.got[ev.C] = append(a.got[ev.C], ev.message)
		case ev.Ev == "ready":
			a.readyOnce.Do(func() { close(a.ready) })
		case ev.ID != nil:
			if ch, ok := a.waiting[*ev.ID]; ok {
				ch <- ev
				delete(a.waiting, *ev.ID)
			}
		}
		a.mu.Unlock()
	}
}

// waitReady waits for the script's "ready" event.
func (a *agent) waitReady(within time.Duration) error {
	select {
	case <-a.ready:
		return nil
	case <-a.done:
		return fmt.Errorf("the agent ended before it was ready:\n%s", a.log())
	case <-time.After(within):
		return fmt.Errorf("the agent was not ready within %v:\n%s", within, a.log())
	}
}

// request sends one command and waits for its answer.
func (a *agent) request(ctx context.Context, cmd map[string]any) (event, error) {
	a.mu.Lock()
	a.nextID++
	id := a.nextID
	ch := make(chan event, 1)
	a.waiting[id] = ch
	a.mu.Unlock()
	cmd["id"] = id
	line, err := json.Marshal(cmd)
	if err != nil {
		return event{}, err
	}
	if _, err := a.stdin.Write(append(line, '\n')); err != nil {
		return event{}, fmt.Errorf("write to the agent: %w", err)
	}
	select {
	case ev := <-ch:
		if ev.Ev == "error" {
			return ev, fmt.Errorf("%s %s: %s", cmd["cmd"], cmd["c"], ev.Msg)
		}
		return ev, nil
	case <-a.done:
		return event{}, fmt.Errorf("the agent ended during %s %s:\n%s", cmd["cmd"], cmd["c"], a.log())
	case <-ctx.Done():
		return event{}, fmt.Errorf("%s %s: no answer: %w", cmd["cmd"], cmd["c"], ctx.Err())
	}
}

func (a *agent) connect(ctx context.Context, slot string, o connOpts) (connack, error) {
	host, portStr, _ := strings.Cut(a.b.tcp, ":")
	port, _ := strconv.Atoi(portStr)
	url := "mqtt://" + a.b.tcp
	if a.ws {
		url = a.b.ws
	}
	ev, err := a.request(ctx, map[string]any{"cmd": "connect", "c": slot, "url": url, "host": host, "port": port,
		"client_id": o.clientID, "version": o.version, "clean": o.clean, "expiry": o.expiry, "topic_alias_max": o.topicAliasMax})
	if err != nil {
		return connack{}, err
	}
	return connack{sessionPresent: ev.SessionPresent, known: true, reason: ev.Reason}, nil
}

func (a *agent) subscribe(ctx context.Context, slot, filter string, qos int) ([]int, error) {
	ev, err := a.request(ctx, map[string]any{"cmd": "subscribe", "c": slot, "filter": filter, "qos": qos})
	return ev.Codes, err
}

func (a *agent) publish(ctx context.Context, slot, topic string, payloads []string, qos int) error {
	_, err := a.request(ctx, map[string]any{"cmd": "publish", "c": slot, "topic": topic, "payloads": payloads, "qos": qos})
	return err
}

func (a *agent) disconnect(ctx context.Context, slot string) error {
	_, err := a.request(ctx, map[string]any{"cmd": "disconnect", "c": slot})
	return err
}

func (a *agent) messages(slot string) []message {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]message(nil), a.got[slot]...)
}

// close ends the agent's input, which ends the script, and waits for it;
// a second close returns the first one's result.
func (a *agent) close() error {
	a.closeOnce.Do(func() { a.closeErr = a.end() })
	return a.closeErr
}

func (a *agent) end() error {
	_ = a.stdin.Close()
	exited := make(chan error, 1)
	go func() {
		<-a.done
		exited <- a.cmd.Wait()
	}()
	select {
	case err := <-exited:
		if err != nil {
			return fmt.Errorf("the agent failed: %w\n%s", err, a.log())
		}
		return nil
	case <-time.After(20 * time.Second):
		_ = a.cmd.Process.Kill()
		<-exited
		return errors.New("the agent did not end within 20 s of its input's end:\n" + a.log())
	}
}

// log is the script's output and errors so far.
func (a *agent) log() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return "output:\n" + tail(a.transcript.String(), 60) + "\nstderr:\n" + tail(a.stderr.String(), 30)
}
