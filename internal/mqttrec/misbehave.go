package mqttrec

import "github.com/stratamq/strata/gateway/packet"

// Withhold makes the connection not send the next n acknowledgements of
// type t (packet.PUBACK, PUBREC or PUBCOMP), so a test can, say, kill the
// server while messages are unacknowledged. Withheld acknowledgements are
// kept in order for SendWithheld. A message whose PUBREC is withheld has
// still been delivered and its identifier is held: a resend is suppressed.
func (c *Conn) Withhold(t packet.Type, n int) {
	c.mu.Lock()
	c.mu.withhold[t] += n
	c.mu.Unlock()
}

// Withheld returns how many acknowledgements are withheld now.
func (c *Conn) Withheld() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.mu.withheld)
}

// SendWithheld sends the withheld acknowledgements, in the order they were
// due, and stops withholding.
func (c *Conn) SendWithheld() error {
	c.mu.Lock()
	ps := c.mu.withheld
	c.mu.withheld = nil
	clear(c.mu.withhold)
	clear(c.mu.unacked)
	c.mu.Unlock()
	for _, p := range ps {
		if err := c.send(p); err != nil {
			return err
		}
	}
	return nil
}

// Pause stops reading from the connection before the next packet (one
// already being read is still handled), so the server's writes back up.
func (c *Conn) Pause() {
	c.mu.Lock()
	if c.mu.resume == nil {
		c.mu.resume = make(chan struct{})
	}
	c.mu.Unlock()
}

// Resume undoes Pause.
func (c *Conn) Resume() {
	c.mu.Lock()
	if c.mu.resume != nil {
		close(c.mu.resume)
		c.mu.resume = nil
	}
	c.mu.Unlock()
}
