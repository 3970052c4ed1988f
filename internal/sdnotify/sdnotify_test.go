package sdnotify

import (
	"net"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// listen opens a datagram socket the way systemd does and returns it.
func listen(t *testing.T, name string) *net.UnixConn {
	t.Helper()
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func recv(t *testing.T, c *net.UnixConn) string {
	t.Helper()
	if err := c.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	return string(buf[:n])
}

func TestReadyAndStopping(t *testing.T) {
	path := filepath.Join(t.TempDir(), "notify")
	c := listen(t, path)
	t.Setenv(EnvVar, path)
	if err := Ready(); err != nil {
		t.Fatal(err)
	}
	if got := recv(t, c); got != "READY=1" {
		t.Errorf("got %q, want READY=1", got)
	}
	if err := Stopping(); err != nil {
		t.Fatal(err)
	}
	if got := recv(t, c); got != "STOPPING=1" {
		t.Errorf("got %q, want STOPPING=1", got)
	}
}

func TestAbstractSocket(t *testing.T) {
	name := "strata-sdnotify-test-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	c := listen(t, "@"+name)
	t.Setenv(EnvVar, "@"+name)
	if err := Send("STATUS=testing"); err != nil {
		t.Fatal(err)
	}
	if got := recv(t, c); got != "STATUS=testing" {
		t.Errorf("got %q, want STATUS=testing", got)
	}
}

func TestWithoutSocket(t *testing.T) {
	t.Setenv(EnvVar, "")
	if err := Ready(); err != nil {
		t.Errorf("Ready without %s = %v, want nil", EnvVar, err)
	}
}

func TestMissingSocket(t *testing.T) {
	t.Setenv(EnvVar, filepath.Join(t.TempDir(), "absent"))
	if err := Ready(); err == nil {
		t.Error("Ready to a missing socket = nil, want an error")
	}
}
