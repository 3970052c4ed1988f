//go:build unix

package server

import (
	"errors"
	"net"
	"syscall"
)

// waitReadable blocks until a plain TCP connection has a byte to read, an
// error, or its read deadline passes, without reading (MSG_PEEK). Other
// connections (TLS, WebSocket: they buffer anyway) return at once.
func waitReadable(nc net.Conn) error {
	if gc, ok := nc.(*gatedConn); ok {
		nc = gc.Conn
	}
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	var b [1]byte
	return rc.Read(func(fd uintptr) bool {
		_, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		return !errors.Is(err, syscall.EAGAIN)
	})
}
