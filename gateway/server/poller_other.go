//go:build !linux

package server

// poller is Linux's epoll set (poller_linux.go); elsewhere there is none
// and idle connections wait in their own goroutines.
type poller struct{}

// newPoller returns no poller.
func newPoller() (*poller, error) { return nil, nil }

func (p *poller) park(*conn) bool { return false }
func (p *poller) forget(*conn)    {}
func (p *poller) close()          {}
