// Package sdnotify tells systemd about a service's state over the socket
// that systemd names in $NOTIFY_SOCKET (sd_notify(3)), for units of
// Type=notify: dsd and the gateway send READY=1 once they serve and
// STOPPING=1 when they begin to stop (packaging/systemd). Outside systemd
// $NOTIFY_SOCKET is unset and every call does nothing.
package sdnotify

import (
	"fmt"
	"net"
	"os"
)

// EnvVar names the socket; systemd sets it for Type=notify services.
const EnvVar = "NOTIFY_SOCKET"

// Ready sends READY=1: the service is up.
func Ready() error { return Send("READY=1") }

// Stopping sends STOPPING=1: the service is shutting down.
func Stopping() error { return Send("STOPPING=1") }

// Send writes state (newline-separated VAR=value assignments) as one
// datagram to $NOTIFY_SOCKET; without it, it does nothing. A name starting
// with @ is an abstract socket.
func Send(state string) error {
	name := os.Getenv(EnvVar)
	if name == "" {
		return nil
	}
	if name[0] == '@' {
		name = "\x00" + name[1:]
	}
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		return fmt.Errorf("sdnotify: %w", err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte(state)); err != nil {
		return fmt.Errorf("sdnotify: %w", err)
	}
	return nil
}
