//go:build !unix

package server

import (
	"bufio"
	"errors"
	"net"
	"syscall"
)

// socketOf returns nil where the socket cannot be read without waiting:
// the read buffer is taken before the first byte arrives.
func socketOf(net.Conn) syscall.RawConn { return nil }

// socketSource is unused where socketOf returns nil.
type socketSource struct{ head *headRecorder }

func fillFromSocket(syscall.RawConn, *socketSource) (*bufio.Reader, error) {
	return nil, errors.New("server: no socket to read from")
}

// writeFD is never called where socketOf returns nil.
func (w *inlineWrite) writeFD(uintptr) bool {
	w.err = errors.ErrUnsupported
	return true
}
