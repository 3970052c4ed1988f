package realclients

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stratamq/strata/internal/testutil"
)

// TestPahoGolang: paho.golang, the project's own Go client (MQTT 5).
func TestPahoGolang(t *testing.T) {
	t.Parallel()
	b := startBroker(t, context.Background())
	d := newPahoDriver(b)
	defer d.close()
	t.Run("resume/v5", func(t *testing.T) { resumeRound(t, b, d, 5, "paho-go-v5") })
	sharedRounds(t, d, "paho-go", 5)
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
	sharedRounds(t, d, "mosq", 5, 4)
}

// TestPythonPaho: Eclipse paho-mqtt in Python (Debian's python3-paho-mqtt,
// the 1.x API), MQTT 5 and 3.1.1.
func TestPythonPaho(t *testing.T) {
	t.Parallel()
	python, missing := pythonWithPaho()
	requireTool(t, missing)
	b := startBroker(t, context.Background())
	a := startAgentT(t, b, false, python, filepath.Join("testdata", "python", "agent.py"))
	t.Run("resume/v5", func(t *testing.T) { resumeRound(t, b, a, 5, "py-v5") })
	t.Run("resume/v3.1.1", func(t *testing.T) { resumeRound(t, b, a, 4, "py-v311") })
	sharedRounds(t, a, "py", 5, 4)
}

// TestMQTTJSNode: MQTT.js (npm mqtt, testdata/node/package.json) in Node,
// over TCP, MQTT 5 and 3.1.1.
func TestMQTTJSNode(t *testing.T) {
	t.Parallel()
	requireTool(t, nodeMissing("mqtt"))
	b := startBroker(t, context.Background())
	a := startAgentT(t, b, false, "node", filepath.Join("testdata", "node", "agent.mjs"))
	t.Run("resume/v5", func(t *testing.T) { resumeRound(t, b, a, 5, "js-v5") })
	t.Run("resume/v3.1.1", func(t *testing.T) { resumeRound(t, b, a, 4, "js-v311") })
	t.Run("alias/v5", func(t *testing.T) { aliasRound(t, b, a, "js-alias") })
	sharedRounds(t, a, "js", 5, 4)
}

// TestMQTTJSBrowser: MQTT.js's browser bundle in a page of headless
// Chromium (Debian's, driven by playwright-core), over the gateway's
// WebSocket listener; the page's screenshot is kept (the test logs where).
func TestMQTTJSBrowser(t *testing.T) {
	t.Parallel()
	requireTool(t, nodeMissing("mqtt", "playwright-core"))
	requireTool(t, chromiumMissing())
	dir := filepath.Join(testutil.RepoRoot(t), "bin", "test-artifacts", "realclients")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	shot := filepath.Join(dir, "mqttjs-browser.png")
	_ = os.Remove(shot)
	b := startBroker(t, context.Background())
	a := startAgentT(t, b, true, "node", filepath.Join("testdata", "node", "browser.mjs"), shot)
	if err := a.waitReady(60 * time.Second); err != nil {
		t.Fatal(err)
	}
	t.Run("resume/v5", func(t *testing.T) { resumeRound(t, b, a, 5, "browser-v5") })
	t.Run("alias/v5", func(t *testing.T) { aliasRound(t, b, a, "browser-alias") })
	sharedRounds(t, a, "browser", 5)
	if err := a.close(); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(shot); err != nil || fi.Size() == 0 {
		t.Fatalf("no screenshot at %s: %v", shot, err)
	}
	t.Logf("screenshot of the page: %s", shot)
}

// startAgentT starts an agent for the test and closes it at the end (a
// second close is harmless); on failure the test logs its transcript.
func startAgentT(t *testing.T, b *broker, ws bool, name string, args ...string) *agent {
	t.Helper()
	a, err := startAgent(b, ws, name, args...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := a.close(); err != nil {
			t.Error(err)
		}
		if t.Failed() {
			t.Logf("agent %s:\n%s", filepath.Base(args[0]), a.log())
		}
	})
	return a
}

// pythonWithPaho finds a Python that imports paho.mqtt with MQTT 5
// support: Debian's /usr/bin/python3 (python3-paho-mqtt) first, since
// python3 on PATH may be another installation without Debian's packages.
func pythonWithPaho() (string, string) {
	for _, py := range []string{"/usr/bin/python3", "python3"} {
		if exec.Command(py, "-c", "import paho.mqtt.client as m; m.MQTTv5").Run() == nil {
			return py, ""
		}
	}
	return "", "no python3 with paho-mqtt (MQTT 5 capable): apt-get install python3-paho-mqtt"
}

// nodeMissing says what is missing for the Node agents: node, or one of
// the npm packages that `make clients` installs into testdata/node.
func nodeMissing(pkgs ...string) string {
	if _, err := exec.LookPath("node"); err != nil {
		return "node not found: apt-get install nodejs npm, then make clients"
	}
	for _, p := range pkgs {
		if _, err := os.Stat(filepath.Join("testdata", "node", "node_modules", p, "package.json")); err != nil {
			return "npm package " + p + " is not installed in integration/realclients/testdata/node: run make clients (npm ci there)"
		}
	}
	return ""
}

// chromiumMissing says whether the browser browser.mjs starts is there.
func chromiumMissing() string {
	path := os.Getenv("CHROMIUM")
	if path == "" {
		path = "/usr/bin/chromium"
	}
	if _, err := exec.LookPath(path); err != nil {
		return strings.TrimSpace(path + " not found: apt-get install chromium (or set CHROMIUM to a Chromium binary)")
	}
	return ""
}
