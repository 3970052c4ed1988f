package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stratamq/strata/config"
	"github.com/stratamq/strata/gateway/auth"
	"github.com/stratamq/strata/gateway/auth/passwd"
)

func mqttpasswd(t *testing.T, stdin string, args ...string) (int, string) {
	t.Helper()
	var stderr bytes.Buffer
	code := run(args, strings.NewReader(stdin), &stderr)
	return code, stderr.String()
}

// authenticate checks user/pw against the file with the gateway's code.
func authenticate(t *testing.T, path, user, pw string) error {
	t.Helper()
	c := config.Default().Auth
	c.PasswordFile = path
	c.AllowAnonymous = config.AnonymousDeny
	a, err := auth.New(c)
	if err != nil {
		t.Fatal(err)
	}
	_, err = a.Authenticate(context.Background(), false, user, []byte(pw), true)
	return err
}

func TestRoundTrip(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "passwd")
	// Create with a cheap bcrypt cost, password from the command line.
	if code, out := mqttpasswd(t, "", "-c", "-b", "--cost", "4", path, "alice", "s3cret"); code != 0 {
		t.Fatalf("create: %d %s", code, out)
	}
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("file mode: %v %v", st, err)
	}
	// Add a PBKDF2 user with the password on stdin; flags after the arguments.
	if code, out := mqttpasswd(t, "hunter2\r\n", path, "bob", "--hash", "pbkdf2", "--iterations", "1000"); code != 0 {
		t.Fatalf("add bob: %d %s", code, out)
	}
	if err := authenticate(t, path, "alice", "s3cret"); err != nil {
		t.Errorf("alice: %v", err)
	}
	if err := authenticate(t, path, "bob", "hunter2"); err != nil {
		t.Errorf("bob: %v", err)
	}
	if err := authenticate(t, path, "bob", "hunter2\r"); !errors.Is(err, auth.ErrBadUserNameOrPassword) {
		t.Errorf("bob with the line ending: %v", err)
	}
	f, err := passwd.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	ha, _ := f.Lookup("alice")
	hb, _ := f.Lookup("bob")
	if !strings.HasPrefix(ha, "$2a$04$") || !strings.HasPrefix(hb, "$pbkdf2-sha512$i=1000$") {
		t.Errorf("hashes %q %q", ha, hb)
	}

	// Update alice; comments added by hand survive.
	if err := os.WriteFile(path, append([]byte("# managed by ops\n"), mustRead(t, path)...), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, out := mqttpasswd(t, "", "-b", "--cost", "4", path, "alice", "changed"); code != 0 {
		t.Fatalf("update: %d %s", code, out)
	}
	if err := authenticate(t, path, "alice", "s3cret"); !errors.Is(err, auth.ErrBadUserNameOrPassword) {
		t.Errorf("old password still works: %v", err)
	}
	if err := authenticate(t, path, "alice", "changed"); err != nil {
		t.Errorf("new password: %v", err)
	}
	if !strings.HasPrefix(string(mustRead(t, path)), "# managed by ops\n") {
		t.Error("comment lost")
	}

	// Delete.
	if code, out := mqttpasswd(t, "", "-D", path, "alice"); code != 0 {
		t.Fatalf("delete: %d %s", code, out)
	}
	if err := authenticate(t, path, "alice", "changed"); !errors.Is(err, auth.ErrBadUserNameOrPassword) {
		t.Errorf("deleted user: %v", err)
	}
	if err := authenticate(t, path, "bob", "hunter2"); err != nil {
		t.Errorf("bob after deleting alice: %v", err)
	}
	if code, _ := mqttpasswd(t, "", "-D", path, "alice"); code != 1 {
		t.Errorf("deleting a missing user: exit %d, want 1", code)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("temporary files left: %v", entries)
	}
}

func TestConfigDefaults(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "strata.toml")
	if err := os.WriteFile(cfg, []byte("auth.hash = \"pbkdf2\"\nauth.pbkdf2_iterations = 1000\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "passwd")
	if code, out := mqttpasswd(t, "", "--config", cfg, "-c", "-b", path, "u", "p"); code != 0 {
		t.Fatalf("%d %s", code, out)
	}
	if !strings.Contains(string(mustRead(t, path)), "u:$pbkdf2-sha512$i=1000$") {
		t.Errorf("file %q: want a PBKDF2 hash with 1000 iterations from the config", mustRead(t, path))
	}
}

func TestErrors(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "passwd")
	cases := []struct {
		args  []string
		stdin string
		code  int
		says  string
	}{
		{[]string{path}, "", 2, "want a file and a username"},
		{[]string{"-b", path, "u"}, "", 2, "-b needs the password"},
		{[]string{path, "u", "pw"}, "", 2, "use -b"},
		{[]string{"-D", "-c", path, "u"}, "", 2, "-D does not go"},
		{[]string{"-D", path, "u", "x"}, "", 2, "-D takes"},
		{[]string{"--nope", path, "u"}, "", 2, "flag provided but not defined"},
		{[]string{"-b", path, "u", "pw"}, "", 1, "use -c"},
		{[]string{"-c", path, "u"}, "", 1, "standard input"},
		{[]string{"-c", path, "u"}, "\n", 1, "empty password"},
		{[]string{"-c", "-b", path, "#u", "pw"}, "", 1, "starts with '#'"},
		{[]string{"-c", "-b", "--hash", "md5", path, "u", "pw"}, "", 1, "unknown hash"},
		{[]string{"-c", "-b", "--cost", "40", path, "u", "pw"}, "", 1, "cost"},
		{[]string{"-c", "-b", "--cost", "4", path, "u", strings.Repeat("p", 73)}, "", 1, "72 bytes"},
		{[]string{"-c", "-b", "--config", filepath.Join(dir, "none.toml"), path, "u", "pw"}, "", 1, "none.toml"},
	}
	for _, tc := range cases {
		code, out := mqttpasswd(t, tc.stdin, tc.args...)
		if code != tc.code || !strings.Contains(out, tc.says) {
			t.Errorf("mqttpasswd %q: exit %d, %q; want %d and %q", tc.args, code, out, tc.code, tc.says)
		}
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a failed run created the file: %v", err)
	}
	if code, _ := mqttpasswd(t, "", "-h"); code != 0 {
		t.Errorf("-h: exit %d", code)
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
