package auth

import (
	"fmt"
	"time"

	"golang.org/x/time/rate"

	"github.com/stratamq/strata/config"
)

// Admission limits the rate of CONNECTs per zone (mqtt.max_conn_rate, and
// zone.<z>.mqtt.max_conn_rate where set) with one token bucket per zone. A
// bucket holds one second's worth of tokens, so a burst up to the rate is
// admitted at once. It is safe for concurrent use.
type Admission struct {
	zones map[string]*rate.Limiter
	def   *rate.Limiter
}

// NewAdmission returns the limiters of every configured zone. A zone without
// its own max_conn_rate gets its own bucket at the global rate.
func NewAdmission(c config.Config) *Admission {
	a := &Admission{zones: make(map[string]*rate.Limiter)}
	for name, z := range c.Zone {
		r := c.MQTT.MaxConnRate
		if z.MQTT != nil && z.MQTT.MaxConnRate != nil {
			r = *z.MQTT.MaxConnRate
		}
		a.zones[name] = newLimiter(r)
	}
	a.def = a.zones["default"]
	if a.def == nil {
		a.def = newLimiter(c.MQTT.MaxConnRate)
	}
	return a
}

func newLimiter(r config.Rate) *rate.Limiter {
	return rate.NewLimiter(rate.Limit(r), max(int(r), 1))
}

// Admit takes a token of zone's bucket (the default zone's for a zone that is
// not configured): nil, or ErrConnectionRateExceeded when the bucket is
// empty. Call it when a CONNECT arrives, before Authenticate, so the limit
// also bounds the hashing work.
func (a *Admission) Admit(zone string) error {
	return a.admitAt(zone, time.Now())
}

func (a *Admission) admitAt(zone string, now time.Time) error {
	l, ok := a.zones[zone]
	if !ok {
		l = a.def
	}
	if !l.AllowN(now, 1) {
		return fmt.Errorf("%w: zone %q", ErrConnectionRateExceeded, zone)
	}
	return nil
}
