//go:build !linux

package server

import "syscall"

// poller is Linux's epoll set (poller_linux.go); elsewhere there is none
// and idle connections wait in their own goroutines.
type poller struct{}

// newPoller returns no poller.
func newPoller() (*poller, error) { return nil, nil }

func (p *poller) register(*conn) bool                    { return false }
func (p *poller) arm(syscall.RawConn, uint64, bool) bool { return false }
func (p *poller) take(uint64) *conn                      { return nil }
func (p *poller) stopped() bool                          { return true }
func (p *poller) forget(*conn)                           {}
func (p *poller) close()                                 {}
