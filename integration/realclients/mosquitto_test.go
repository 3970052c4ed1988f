package realclients

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// mosquittoDriver runs Debian's mosquitto_sub and mosquitto_pub. A
// subscriber slot is one mosquitto_sub process: it connects when it is
// given its filter (at subscribe), and a later connect of the same slot
// starts it again with the filters it had, so it subscribes again as
// mosquitto_sub always does; disconnect is SIGTERM, on which it sends
// DISCONNECT. A publish is one mosquitto_pub -l run. mosquitto_sub does not
// print Session Present, so its connack is not known.
type mosquittoDriver struct {
	b  *broker
	mu sync.Mutex
	s  map[string]*mosqSlot
}

type mosqSlot struct {
	o       connOpts
	filters []string
	qos     int
	proc    *exec.Cmd
	exited  chan struct{}
	subRe   chan []int // the codes of the SUBACK, once
	got     []message
	out     strings.Builder
	nextDup bool // the DUP flag of the PUBLISH whose payload line comes next
}

func newMosquittoDriver(b *broker) *mosquittoDriver {
	return &mosquittoDriver{b: b, s: map[string]*mosqSlot{}}
}

func mosquittoMissing() string {
	for _, tool := range []string{"mosquitto_sub", "mosquitto_pub"} {
		if _, err := exec.LookPath(tool); err != nil {
			return tool + " not found: apt-get install mosquitto-clients"
		}
	}
	return ""
}

func (m *mosquittoDriver) hostArgs(o connOpts) []string {
	host, port, _ := net.SplitHostPort(m.b.tcp)
	v := "mqttv5"
	if o.version == 4 {
		v = "mqttv311"
	}
	return []string{"-h", host, "-p", port, "-V", v, "-k", "30"}
}

func (m *mosquittoDriver) slot(name string) *mosqSlot {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, ok := m.s[name]
	if !ok {
		s = &mosqSlot{}
		m.s[name] = s
	}
	return s
}

func (m *mosquittoDriver) connect(ctx context.Context, slot string, o connOpts) (connack, error) {
	s := m.slot(slot)
	m.mu.Lock()
	s.o = o
	resubscribe := len(s.filters) > 0
	m.mu.Unlock()
	if resubscribe {
		if _, err := m.startSub(ctx, s); err != nil {
			return connack{}, err
		}
	}
	return connack{known: false}, nil
}

func (m *mosquittoDriver) subscribe(ctx context.Context, slot, filter string, qos int) ([]int, error) {
	s := m.slot(slot)
	m.mu.Lock()
	if s.proc != nil {
		m.mu.Unlock()
		return nil, errors.New("mosquitto_sub subscribes only when it starts")
	}
	s.filters = append(s.filters, filter)
	s.qos = qos
	m.mu.Unlock()
	return m.startSub(ctx, s)
}

var (
	mosqPublish    = regexp.MustCompile(`received PUBLISH \(d(\d),`)
	mosqSubscribed = regexp.MustCompile(`^Subscribed \(mid: \d+\): (.*)$`)
)

// startSub starts mosquitto_sub for s and waits for its SUBACK.
func (m *mosquittoDriver) startSub(ctx context.Context, s *mosqSlot) ([]int, error) {
	m.mu.Lock()
	args := append(m.hostArgs(s.o), "-i", s.o.clientID, "-q", strconv.Itoa(s.qos), "-d", "-F", "MSG %q %t %p")
	if !s.o.clean {
		args = append(args, "-c")
		if s.o.version == 5 && s.o.expiry > 0 {
			args = append(args, "-x", strconv.Itoa(int(s.o.expiry)))
		}
	}
	for _, f := range s.filters {
		args = append(args, "-t", f)
	}
	// stdbuf: mosquitto_sub's standard output is a pipe, and each line
	// must arrive as it is printed.
	cmd := exec.Command("stdbuf", append([]string{"-oL", "mosquitto_sub"}, args...)...)
	m.mu.Unlock()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stderr = cmd.Stdout // its errors in the same transcript
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	subRe := make(chan []int, 1)
	exited := make(chan struct{})
	m.mu.Lock()
	s.proc, s.exited, s.subRe = cmd, exited, subRe
	m.mu.Unlock()
	go func() {
		defer close(exited)
		m.readSub(s, stdout)
		_ = cmd.Wait()
	}()
	select {
	case codes := <-subRe:
		return codes, nil
	case <-exited:
		return nil, fmt.Errorf("mosquitto_sub %s ended before its SUBACK:\n%s", strings.Join(args, " "), m.out(s))
	case <-ctx.Done():
		return nil, fmt.Errorf("mosquitto_sub: no SUBACK: %w\n%s", ctx.Err(), m.out(s))
	}
}

func (m *mosquittoDriver) readSub(s *mosqSlot, r io.Reader) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		m.mu.Lock()
		s.out.WriteString(line + "\n")
		if p := mosqPublish.FindStringSubmatch(line); p != nil {
			s.nextDup = p[1] == "1"
		} else if rest, ok := strings.CutPrefix(line, "MSG "); ok {
			f := strings.SplitN(rest, " ", 3)
			if len(f) == 3 {
				q, _ := strconv.Atoi(f[0])
				s.got = append(s.got, message{Topic: f[1], Payload: f[2], QoS: q, Dup: s.nextDup})
			}
		} else if p := mosqSubscribed.FindStringSubmatch(line); p != nil {
			var codes []int
			for _, c := range strings.Split(p[1], ", ") {
				n, _ := strconv.Atoi(c)
				codes = append(codes, n)
			}
			select {
			case s.subRe <- codes:
			default:
			}
		}
		m.mu.Unlock()
	}
}

func (m *mosquittoDriver) out(s *mosqSlot) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return tail(s.out.String(), 40)
}

// publish runs mosquitto_pub -l, one line a message; it exits once every
// message is acknowledged. A slot whose mosquitto_sub runs publishes under
// a client id of mosquitto_pub's choosing (its own would take the
// subscriber's session over).
func (m *mosquittoDriver) publish(ctx context.Context, slot, topic string, payloads []string, qos int) error {
	s := m.slot(slot)
	m.mu.Lock()
	args := append(m.hostArgs(s.o), "-q", strconv.Itoa(qos), "-t", topic, "-l", "-d")
	if s.proc == nil && s.o.clientID != "" {
		args = append(args, "-i", s.o.clientID)
	}
	m.mu.Unlock()
	cmd := exec.CommandContext(ctx, "mosquitto_pub", args...)
	cmd.Stdin = strings.NewReader(strings.Join(payloads, "\n") + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("mosquitto_pub %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return nil
}

func (m *mosquittoDriver) disconnect(ctx context.Context, slot string) error {
	s := m.slot(slot)
	m.mu.Lock()
	proc, exited := s.proc, s.exited
	s.proc = nil
	m.mu.Unlock()
	if proc == nil {
		return nil // a publisher: each mosquitto_pub run disconnected
	}
	_ = proc.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
		return nil
	case <-ctx.Done():
		_ = proc.Process.Kill()
		return fmt.Errorf("mosquitto_sub did not end on SIGTERM:\n%s", m.out(s))
	}
}

func (m *mosquittoDriver) messages(slot string) []message {
	s := m.slot(slot)
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]message(nil), s.got...)
}

func (m *mosquittoDriver) close() error {
	m.mu.Lock()
	var running []*mosqSlot
	for _, s := range m.s {
		if s.proc != nil {
			running = append(running, s)
		}
	}
	m.mu.Unlock()
	for _, s := range running {
		_ = s.proc.Process.Kill()
		select {
		case <-s.exited:
		case <-time.After(5 * time.Second):
		}
	}
	return nil
}
