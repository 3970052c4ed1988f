package release

import (
	"archive/tar"
	"bufio"
	"context"
	"fmt"
	"github.com/stratamq/strata/internal/testutil"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/stratamq/strata/config"
	"github.com/stratamq/strata/integration"
	"github.com/stratamq/strata/internal/sdnotify"
	"github.com/stratamq/strata/internal/testutil/wait"
)

// imagePrograms are the programs the Containerfile copies.
const imagePrograms = "dsd gateway dstool mqttpasswd"

// TestImage builds the release for this machine's architecture, checks that
// every COPY source of the Containerfile exists in it, builds the image with
// podman, exports its file system, and runs the exported dsd and gateway
// against each other with their configuration from the image: a durable
// session survives a restart of both, --version, strata_build_info, dstool
// info and the gateway's registration log name the build, and both send
// sd_notify READY=1. Containers cannot run on every machine (no engine, or
// crun may not set rlimits in a sandbox), so the binaries run directly.
func TestImage(t *testing.T) {
	skipUnderRace(t)
	if runtime.GOOS != "linux" {
		t.Skip("the image holds linux binaries")
	}
	root := testutil.RepoRoot(t)
	dist := filepath.Join(t.TempDir(), "dist")
	start := time.Now()
	version := release(t, root, dist, imagePrograms)
	t.Logf("release %s built in %v", version, time.Since(start).Round(time.Millisecond))
	checkContainerfile(t, root, dist, version)

	podman, err := exec.LookPath("podman")
	if err != nil {
		t.Skip("podman is not installed (apt-get install podman; .ci/run tries): the image was not built; " +
			"the Containerfile's COPY sources and configuration were checked against the release")
	}
	if why := podmanCannotBuild(t, podman); why != "" {
		t.Skip("podman cannot build images on this machine: " + why + "; the Containerfile's COPY sources were checked")
	}
	tag := fmt.Sprintf("localhost/strata-test:%d", time.Now().UnixNano())
	command(t, root, nil, podman, "build", "-q", "--layers=false", "-f", "packaging/container/Containerfile",
		"--build-arg", "VERSION="+version, "--build-arg", "TARGETARCH="+runtime.GOARCH, "-t", tag, dist)
	t.Cleanup(func() { _ = exec.Command(podman, "rmi", "-f", tag).Run() })
	t.Logf("image %s built in %v", tag, time.Since(start).Round(time.Millisecond))
	checkImageConfig(t, podman, tag)

	rootfs := filepath.Join(t.TempDir(), "rootfs")
	exportImage(t, podman, tag, rootfs)
	t.Logf("image exported in %v", time.Since(start).Round(time.Millisecond))
	runExported(t, root, rootfs, version)
	t.Logf("exported dsd and gateway checked in %v", time.Since(start).Round(time.Millisecond))
}

// podmanCannotBuild builds a one-file image from scratch; when that fails
// the machine cannot build images at all, and it returns why.
func podmanCannotBuild(t *testing.T, podman string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "f"), []byte("probe\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "Containerfile"), []byte("FROM scratch\nCOPY f /f\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tag := fmt.Sprintf("localhost/strata-probe:%d", time.Now().UnixNano())
	out, err := exec.Command(podman, "build", "-q", "--layers=false", "-t", tag, dir).CombinedOutput()
	if err != nil {
		return fmt.Sprintf("podman build of FROM scratch + COPY failed: %v: %s", err, strings.TrimSpace(string(out)))
	}
	_ = exec.Command(podman, "rmi", "-f", tag).Run()
	return ""
}

var argRef = regexp.MustCompile(`\$\{?([A-Z_]+)\}?`)

// checkContainerfile checks that every COPY source exists in dist (the
// build context) once the ARGs are set, and that the image's configuration
// is a valid Strata configuration.
func checkContainerfile(t *testing.T, root, dist, version string) {
	t.Helper()
	f, err := os.Open(filepath.Join(root, "packaging", "container", "Containerfile"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	args := map[string]string{"VERSION": version, "TARGETARCH": runtime.GOARCH}
	copies := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 3 || !strings.EqualFold(fields[0], "COPY") {
			continue
		}
		var srcs []string
		for _, a := range fields[1 : len(fields)-1] {
			if strings.HasPrefix(a, "--") {
				continue
			}
			srcs = append(srcs, argRef.ReplaceAllStringFunc(a, func(m string) string {
				name := argRef.FindStringSubmatch(m)[1]
				v, ok := args[name]
				if !ok {
					t.Errorf("Containerfile: COPY uses %s, which the test does not know", m)
				}
				return v
			}))
		}
		for _, src := range srcs {
			copies++
			if _, err := os.Stat(filepath.Join(dist, src)); err != nil {
				t.Errorf("Containerfile: COPY source %s is not in the release: %v", src, err)
			}
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if copies < 5 {
		t.Errorf("Containerfile: only %d COPY sources found", copies)
	}
	cfgPath := filepath.Join(dist, "container", "etc", "strata", "strata.toml")
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatalf("the image's configuration: %v", err)
	}
	if err := cfg.Validate(); err != nil {
		t.Errorf("the image's configuration: %v", err)
	}
	if !strings.HasPrefix(cfg.DurableStorage.Messages.DataDir, "/var/lib/strata/") {
		t.Errorf("the image's data_dir %q is not on the /var/lib/strata volume", cfg.DurableStorage.Messages.DataDir)
	}
}

// checkImageConfig checks the image's user, volume, ports and default
// command.
func checkImageConfig(t *testing.T, podman, tag string) {
	t.Helper()
	out := command(t, "", nil, podman, "image", "inspect", "--format",
		"{{.Config.User}}|{{range $k, $v := .Config.Volumes}}{{$k}} {{end}}|{{range $k, $v := .Config.ExposedPorts}}{{$k}} {{end}}|{{join .Config.Cmd \" \"}}", tag)
	parts := strings.Split(strings.TrimSpace(out), "|")
	if len(parts) != 4 {
		t.Fatalf("podman image inspect: %q", out)
	}
	if parts[0] != "65532:65532" {
		t.Errorf("image user %q, want 65532:65532 (strata)", parts[0])
	}
	if !strings.Contains(parts[1], "/var/lib/strata") {
		t.Errorf("image volumes %q lack /var/lib/strata", parts[1])
	}
	for _, p := range []string{"1883/tcp", "7070/tcp", "7071/tcp", "7072/tcp"} {
		if !strings.Contains(parts[2], p) {
			t.Errorf("image exposes %q, not %s", parts[2], p)
		}
	}
	if parts[3] != "dsd --config /etc/strata/strata.toml" {
		t.Errorf("image command %q", parts[3])
	}
}

// exportImage writes the file system of a container created (not started)
// from tag into dir, and checks who owns what.
func exportImage(t *testing.T, podman, tag, dir string) {
	t.Helper()
	id := strings.TrimSpace(command(t, "", nil, podman, "create", tag))
	t.Cleanup(func() { _ = exec.Command(podman, "rm", "-f", id).Run() })
	cmd := exec.Command(podman, "export", id)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	owners := map[string]int{}
	tr := tar.NewReader(stdout)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("podman export: %v", err)
		}
		name := filepath.Clean(h.Name)
		if strings.HasPrefix(name, "..") || filepath.IsAbs(name) {
			t.Fatalf("podman export: entry %q", h.Name)
		}
		owners[name] = h.Uid
		to := filepath.Join(dir, name)
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(to, 0o755); err != nil {
				t.Fatal(err)
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
				t.Fatal(err)
			}
			f, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, os.FileMode(h.Mode).Perm())
			if err != nil {
				t.Fatal(err)
			}
			if _, err := io.Copy(f, tr); err != nil {
				t.Fatal(err)
			}
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("podman export: %v: %s", err, stderr.String())
	}
	for _, p := range []string{"usr/local/bin/dsd", "usr/local/bin/gateway", "usr/local/bin/dstool", "usr/local/bin/mqttpasswd",
		"etc/passwd", "etc/group", "etc/ssl/certs/ca-certificates.crt", "etc/strata/strata.toml"} {
		uid, ok := owners[p]
		if !ok {
			t.Errorf("the image lacks /%s", p)
		} else if uid != 0 {
			t.Errorf("/%s belongs to uid %d, want root (the strata user must not change it)", p, uid)
		}
	}
	if uid, ok := owners["var/lib/strata"]; !ok || uid != 65532 {
		t.Errorf("/var/lib/strata: present %t, uid %d; want the strata user (65532)", ok, uid)
	}
	passwd, err := os.ReadFile(filepath.Join(dir, "etc", "passwd"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(passwd), "strata:x:65532:65532:") {
		t.Errorf("/etc/passwd has no strata user:\n%s", passwd)
	}
}

// runExported runs the image's dsd and gateway from rootfs with the image's
// configuration (listen addresses moved to free loopback ports).
func runExported(t *testing.T, root, rootfs, version string) {
	t.Helper()
	commit, modified := headCommit(t, root)
	bins := integration.Binaries{Dir: filepath.Join(rootfs, "usr", "local", "bin")}
	cfgFile := filepath.Join(rootfs, "etc", "strata", "strata.toml")

	for _, p := range strings.Fields(imagePrograms) {
		got := command(t, root, nil, bins.Path(p), "--version")
		want := fmt.Sprintf("%s %s commit=%s modified=%t go=go", p, version, commit, modified)
		if !strings.HasPrefix(got, want) {
			t.Errorf("%s --version = %q, want the prefix %q", p, got, want)
		}
	}

	// Both programs tell systemd when they are ready.
	notify, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: filepath.Join(t.TempDir(), "notify"), Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer notify.Close()
	t.Setenv(sdnotify.EnvVar, notify.LocalAddr().String())

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	data := t.TempDir()
	dsd, err := integration.StartDSD(ctx, bins, integration.DSDConfig{DataDir: data, ConfigFile: cfgFile})
	if err != nil {
		t.Fatal(err)
	}
	defer dsd.Kill()
	gw, err := integration.StartGateway(ctx, bins, integration.GatewayConfig{DSDAddr: dsd.GRPCAddr, ConfigFile: cfgFile})
	if err != nil {
		t.Fatal(err)
	}
	defer gw.Kill()
	for range 2 {
		if got := recvNotify(t, notify); got != "READY=1" {
			t.Errorf("sd_notify %q, want READY=1", got)
		}
	}

	buildInfo := fmt.Sprintf(`strata_build_info{commit="%s",goversion="%s",version="%s"} 1`, commit, goVersion(t, bins.Path("dsd")), version)
	for name, addr := range map[string]string{"dsd": dsd.HTTPAddr, "gateway": gw.Addrs["http"]} {
		if body := testutil.Metrics(t, addr); !strings.Contains(body, buildInfo) {
			t.Errorf("%s /metrics lacks %s", name, buildInfo)
		}
	}
	info := command(t, root, nil, bins.Path("dstool"), "info", "--addr", dsd.GRPCAddr)
	if !strings.Contains(info, "version   "+version+"\n") {
		t.Errorf("dstool info does not name dsd's version %s:\n%s", version, info)
	}
	waitFor(t, func() bool { return strings.Contains(gw.Log(), `msg="registered with dsd"`) })
	if want := "dsd_version=" + version; !strings.Contains(gw.Log(), want) {
		t.Errorf("the gateway's registration log lacks %s:\n%s", want, gw.Log())
	}

	// A durable session: subscribe, go away, messages arrive, both programs
	// restart, the session resumes with every message in order.
	sub := connect(t, ctx, gw.Addrs["tcp.default"], "image-sub", true, nil)
	if _, err := sub.c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "image/#", QoS: 1}}}); err != nil {
		t.Fatal(err)
	}
	sub.close(t)
	pub := connect(t, ctx, gw.Addrs["tcp.default"], "image-pub", true, nil)
	const n = 5
	for i := range n {
		pr, err := pub.c.Publish(ctx, &paho.Publish{Topic: "image/m", QoS: 1, Payload: []byte(strconv.Itoa(i))})
		if err != nil || pr.ReasonCode != 0 {
			t.Fatalf("publish %d: %+v, %v", i, pr, err)
		}
	}
	pub.close(t)

	if err := gw.Stop(15 * time.Second); err != nil {
		t.Fatalf("gateway stop: %v\n%s", err, gw.Log())
	}
	if err := dsd.Stop(30 * time.Second); err != nil {
		t.Fatalf("dsd stop: %v\n%s", err, dsd.Log())
	}
	dsd, err = integration.StartDSD(ctx, bins, integration.DSDConfig{DataDir: data, ConfigFile: cfgFile})
	if err != nil {
		t.Fatal(err)
	}
	defer dsd.Kill()
	gw, err = integration.StartGateway(ctx, bins, integration.GatewayConfig{DSDAddr: dsd.GRPCAddr, ConfigFile: cfgFile})
	if err != nil {
		t.Fatal(err)
	}
	defer gw.Kill()

	got := make(chan string, 2*n)
	sub = connect(t, ctx, gw.Addrs["tcp.default"], "image-sub", false, got)
	if !sub.sessionPresent {
		t.Fatal("resumed CONNACK: Session Present 0, want 1")
	}
	for i := range n {
		select {
		case p := <-got:
			if p != strconv.Itoa(i) {
				t.Fatalf("message %d: payload %q, want %q", i, p, strconv.Itoa(i))
			}
		case <-ctx.Done():
			t.Fatalf("after a restart of both programs, %d of %d messages arrived", i, n)
		}
	}
	sub.close(t)
	if err := gw.Stop(15 * time.Second); err != nil {
		t.Errorf("gateway stop: %v", err)
	}
	if err := dsd.Stop(30 * time.Second); err != nil {
		t.Errorf("dsd stop: %v", err)
	}
}

type mqttClient struct {
	c              *paho.Client
	sessionPresent bool
}

// connect opens an MQTT 5 session of one hour's expiry; received payloads
// go to got when it is set.
func connect(t *testing.T, ctx context.Context, addr, id string, clean bool, got chan<- string) *mqttClient {
	t.Helper()
	var nc net.Conn
	var err error
	waitFor(t, func() bool {
		nc, err = net.Dial("tcp", addr)
		return err == nil
	})
	cfg := paho.ClientConfig{Conn: nc}
	if got != nil {
		cfg.OnPublishReceived = []func(paho.PublishReceived) (bool, error){func(r paho.PublishReceived) (bool, error) {
			got <- string(r.Packet.Payload)
			return true, nil
		}}
	}
	c := paho.NewClient(cfg)
	expiry := uint32(3600)
	ca, err := c.Connect(ctx, &paho.Connect{ClientID: id, CleanStart: clean, KeepAlive: 30,
		Properties: &paho.ConnectProperties{SessionExpiryInterval: &expiry}})
	if err != nil || ca.ReasonCode != 0 {
		t.Fatalf("CONNECT %s: %+v, %v", id, ca, err)
	}
	return &mqttClient{c: c, sessionPresent: ca.SessionPresent}
}

func (m *mqttClient) close(t *testing.T) {
	t.Helper()
	if err := m.c.Disconnect(&paho.Disconnect{ReasonCode: 0}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-m.c.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("MQTT client did not finish")
	}
}

func recvNotify(t *testing.T, c *net.UnixConn) string {
	t.Helper()
	if err := c.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatalf("no sd_notify message: %v", err)
	}
	return string(buf[:n])
}

func goVersion(t *testing.T, bin string) string {
	t.Helper()
	out := command(t, "", nil, "go", "version", bin)
	f := strings.Fields(out)
	if len(f) < 2 {
		t.Fatalf("go version %s: %q", bin, out)
	}
	return f[1]
}

// waitFor polls cond for up to 10 s.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	wait.For(t, 10*time.Second, "the condition", cond)
}
