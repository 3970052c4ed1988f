package realclients

import (
	"context"
	"testing"
)

// TestPahoGolang: paho.golang, the project's own Go client (MQTT 5).
func TestPahoGolang(t *testing.T) {
	t.Parallel()
	b := startBroker(t, context.Background())
	d := newPahoDriver(b)
	defer d.close()
	t.Run("resume/v5", func(t *testing.T) { resumeRound(t, b, d, 5, "paho-go-v5") })
}

// TestMosquittoClients: Debian's mosquitto_sub and mosquitto_pub, MQTT 5
// and 3.1.1.
func TestMosquittoClients(t *testing.T) {
	t.Parallel()
	requireTool(t, mosquittoMissing())
	b := startBroker(t, context.Background())
	d := newMosquittoDriver(b)
	defer d.close()
	t.Cleanup(func() {
		if t.Failed() {
			for name, s := range d.s {
				t.Logf("%s transcript:\n%s", name, d.out(s))
			}
		}
	})
	t.Run("resume/v5", func(t *testing.T) { resumeRound(t, b, d, 5, "mosq-v5") })
	t.Run("resume/v3.1.1", func(t *testing.T) { resumeRound(t, b, d, 4, "mosq-v311") })
}
