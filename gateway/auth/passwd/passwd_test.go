package passwd

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var fast = Params{BcryptCost: MinBcryptCost, PBKDF2Iterations: 1000}

func TestHashVerify(t *testing.T) {
	for _, alg := range []Algorithm{Bcrypt, PBKDF2} {
		for _, pw := range []string{"secret", "", "ünïcødé pässwörd", strings.Repeat("x", 72)} {
			h, err := Hash(alg, []byte(pw), fast)
			if err != nil {
				t.Fatalf("%s: %v", alg, err)
			}
			if got, ok := AlgorithmOf(h); !ok || got != alg {
				t.Errorf("AlgorithmOf(%q) = %v, %v", h, got, ok)
			}
			if err := Check(h); err != nil {
				t.Errorf("Check(%q) = %v", h, err)
			}
			if err := Verify(h, []byte(pw)); err != nil {
				t.Errorf("%s: Verify(right password %q) = %v", alg, pw, err)
			}
			if err := Verify(h, []byte(pw+"!")); !errors.Is(err, ErrMismatch) {
				t.Errorf("%s: Verify(wrong password) = %v, want ErrMismatch", alg, err)
			}
			h2, _ := Hash(alg, []byte(pw), fast)
			if h2 == h {
				t.Errorf("%s: two hashes of the same password are equal (no salt?)", alg)
			}
		}
	}
}

func TestHashFormat(t *testing.T) {
	h, err := Hash(PBKDF2, []byte("pw"), Params{})
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(h, "$")
	// "", "pbkdf2-sha512", "i=210000", salt, key
	if len(parts) != 5 || parts[1] != "pbkdf2-sha512" || parts[2] != "i=210000" || len(parts[3]) != 22 || len(parts[4]) != 86 {
		t.Errorf("default PBKDF2 hash %q: want $pbkdf2-sha512$i=210000$<22 chars>$<86 chars>", h)
	}
	b, err := Hash(Bcrypt, []byte("pw"), Params{})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(b, "$2a$10$") || len(b) != 60 {
		t.Errorf("default bcrypt hash %q: want $2a$10$ and 60 characters", b)
	}
}

// Hashes made by other implementations verify.
func TestKnownVectors(t *testing.T) {
	cases := []struct{ hash, pw string }{
		// Python: hashlib.pbkdf2_hmac("sha512", b"correct horse", b"saltsaltsaltsalt", 1000), unpadded base64.
		{"$pbkdf2-sha512$i=1000$c2FsdHNhbHRzYWx0c2FsdA$EHLBej+uEvxlmr0QnHnceg1vM6h1wbwSP5XErh3SmizNDWZsIi28RPGARe0EssjGRoiACzxgHjNvqwJY1zxKig", "correct horse"},
		// crypt_blowfish's test vectors.
		{"$2a$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW", "U*U"},
		{"$2a$05$CCCCCCCCCCCCCCCCCCCCC.VGOzA784oUp/Z0DY336zx7pLYAy0lwK", "U*U*"},
		// The same with the $2b$ and $2y$ prefixes (identical algorithm for these inputs).
		{"$2b$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW", "U*U"},
		{"$2y$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW", "U*U"},
	}
	for _, tc := range cases {
		if err := Verify(tc.hash, []byte(tc.pw)); err != nil {
			t.Errorf("Verify(%q, %q) = %v", tc.hash, tc.pw, err)
		}
		if err := Verify(tc.hash, []byte(tc.pw+"x")); !errors.Is(err, ErrMismatch) {
			t.Errorf("Verify(%q, wrong) = %v", tc.hash, err)
		}
	}
}

func TestBcryptLongPasswords(t *testing.T) {
	long := strings.Repeat("a", 73)
	if _, err := Hash(Bcrypt, []byte(long), fast); !errors.Is(err, ErrPasswordTooLong) {
		t.Errorf("Hash(73 bytes) = %v, want ErrPasswordTooLong", err)
	}
	h, err := Hash(Bcrypt, []byte(long[:72]), fast)
	if err != nil {
		t.Fatal(err)
	}
	// bcrypt itself would accept any tail after 72 bytes.
	if err := Verify(h, []byte(long)); !errors.Is(err, ErrMismatch) {
		t.Errorf("Verify(72 bytes + tail) = %v, want ErrMismatch", err)
	}
	p, err := Hash(PBKDF2, []byte(long+long), fast)
	if err != nil || Verify(p, []byte(long+long)) != nil {
		t.Errorf("PBKDF2 takes long passwords: %v", err)
	}
}

func TestMalformedHashes(t *testing.T) {
	good := "$pbkdf2-sha512$i=1000$c2FsdHNhbHRzYWx0c2FsdA$EHLBej+uEvxlmr0QnHnceg1vM6h1wbwSP5XErh3SmizNDWZsIi28RPGARe0EssjGRoiACzxgHjNvqwJY1zxKig"
	for _, h := range []string{
		"",
		"plaintext",
		"$6$rounds=5000$salt$hash", // mosquitto's/crypt's SHA-512, not ours
		"$2a$10$short",
		"$2a$03$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW", // cost below 4
		"$2a$xx$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW",
		"$2a$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOe!",
		"$2x$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW",
		strings.Replace(good, "i=1000", "i=0", 1),
		strings.Replace(good, "i=1000", "i=01000", 1),
		strings.Replace(good, "i=1000", "i=99999999", 1),
		strings.Replace(good, "i=1000", "iterations=1000", 1),
		strings.Replace(good, "c2FsdHNhbHRzYWx0c2FsdA", "c2FsdA", 1),                   // 4-byte salt
		strings.Replace(good, "c2FsdHNhbHRzYWx0c2FsdA", "c2FsdHNhbHRzYWx0c2FsdA==", 1), // padded
		strings.Replace(good, "c2FsdHNhbHRzYWx0c2FsdA", "c2Fs*HNhbHRzYWx0c2FsdA", 1),
		good + "$extra",
		good[:len(good)-70], // key too short
		strings.Replace(good, "pbkdf2-sha512", "pbkdf2-sha256", 1),
	} {
		if err := Check(h); !errors.Is(err, ErrMalformedHash) {
			t.Errorf("Check(%q) = %v, want ErrMalformedHash", h, err)
		}
		if err := Verify(h, []byte("x")); !errors.Is(err, ErrMalformedHash) {
			t.Errorf("Verify(%q) = %v, want ErrMalformedHash", h, err)
		}
	}
	if _, err := Hash("md5", []byte("x"), fast); err == nil {
		t.Error("Hash(md5) should fail")
	}
	if _, err := Hash(Bcrypt, []byte("x"), Params{BcryptCost: 32}); err == nil {
		t.Error("Hash(bcrypt cost 32) should fail")
	}
	if _, err := Hash(PBKDF2, []byte("x"), Params{PBKDF2Iterations: -1}); err == nil {
		t.Error("Hash(pbkdf2 -1 iterations) should fail")
	}
}

const (
	vecBcrypt = "$2a$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW"
	vecPBKDF2 = "$pbkdf2-sha512$i=1000$c2FsdHNhbHRzYWx0c2FsdA$EHLBej+uEvxlmr0QnHnceg1vM6h1wbwSP5XErh3SmizNDWZsIi28RPGARe0EssjGRoiACzxgHjNvqwJY1zxKig"
)

func TestParse(t *testing.T) {
	src := "# Strata users\n\nalice:" + vecBcrypt + "\r\n  # indented comment\nbob:ops:" + vecPBKDF2 + "  \nc a r o l:" + vecBcrypt
	f, err := Parse([]byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(f.Users(), ","); got != "alice,bob:ops,c a r o l" {
		t.Errorf("users %q", got)
	}
	if h, ok := f.Lookup("bob:ops"); !ok || h != vecPBKDF2 {
		t.Errorf("Lookup(bob:ops) = %q, %v", h, ok)
	}
	if _, ok := f.Lookup("bob"); ok {
		t.Error("bob should not exist")
	}
	// Editing keeps comments and order.
	if err := f.Set("alice", vecPBKDF2); err != nil {
		t.Fatal(err)
	}
	if err := f.Set("dave", vecBcrypt); err != nil {
		t.Fatal(err)
	}
	if !f.Delete("bob:ops") || f.Delete("bob:ops") {
		t.Error("Delete")
	}
	want := "# Strata users\n\nalice:" + vecPBKDF2 + "\n  # indented comment\nc a r o l:" + vecBcrypt + "\ndave:" + vecBcrypt + "\n"
	if got := string(f.Bytes()); got != want {
		t.Errorf("Bytes():\n%s\nwant:\n%s", got, want)
	}
	back, err := Parse(f.Bytes())
	if err != nil || !bytes.Equal(back.Bytes(), f.Bytes()) || back.Len() != 3 {
		t.Errorf("round trip: %v", err)
	}
	if h, ok := back.Lookup("dave"); !ok || h != vecBcrypt {
		t.Error("dave lost after Delete shifted the index")
	}
	for _, empty := range []string{"", "\n", "# only a comment\n"} {
		if f, err := Parse([]byte(empty)); err != nil || f.Len() != 0 {
			t.Errorf("Parse(%q) = %v", empty, err)
		}
	}
}

func TestParseErrorsNameTheLine(t *testing.T) {
	ok := "alice:" + vecBcrypt
	cases := []struct {
		src  string
		line int
		says string
	}{
		{"no colon here", 1, "username:hash"},
		{ok + "\n# c\nbob", 3, "username:hash"},
		{ok + "\nbob:", 2, "malformed hash"},
		{ok + "\nbob:plaintext", 2, "malformed hash"},
		{ok + "\nbob:$2a$10$tooshort", 2, "bcrypt"},
		{":" + vecBcrypt, 1, "empty username"},
		{" alice:" + vecBcrypt, 1, "white space"},
		{"al\x01ice:" + vecBcrypt, 1, "control"},
		{"\xffalice:" + vecBcrypt, 1, "UTF-8"},
		{ok + "\n\n" + ok, 3, "already on line 1"},
		{ok + "\nbob:" + vecBcrypt + " trailing", 2, "malformed hash"},
	}
	for _, tc := range cases {
		_, err := Parse([]byte(tc.src))
		var le *LineError
		if !errors.As(err, &le) || le.Line != tc.line {
			t.Errorf("Parse(%q) = %v, want an error on line %d", tc.src, err, tc.line)
			continue
		}
		if !strings.Contains(err.Error(), "line ") || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("Parse(%q) = %v, want it to say %q", tc.src, err, tc.says)
		}
	}
}

func TestValidUsername(t *testing.T) {
	for _, u := range []string{"alice", "a:b", "with space", "ünï", "%u", "a#b"} {
		if err := ValidUsername(u); err != nil {
			t.Errorf("ValidUsername(%q) = %v", u, err)
		}
	}
	for _, u := range []string{"", "#alice", " alice", "alice ", "a\nb", "a\x00b", "\xff", strings.Repeat("a", 65536)} {
		if err := ValidUsername(u); !errors.Is(err, ErrSyntax) {
			t.Errorf("ValidUsername(%q) = %v, want ErrSyntax", u, err)
		}
	}
}

func TestWriteFileAtomic(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "passwd")
	if err := os.WriteFile(path, []byte("old contents\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	f := &File{}
	if err := f.Set("alice", vecBcrypt); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(path, f); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", st.Mode().Perm())
	}
	back, err := ReadFile(path)
	if err != nil || back.Len() != 1 {
		t.Fatalf("ReadFile: %v", err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("temporary files left behind: %v", entries)
	}
	if err := WriteFile(filepath.Join(dir, "missing", "passwd"), f); err == nil {
		t.Error("WriteFile into a missing directory should fail")
	}
	if _, err := ReadFile(filepath.Join(dir, "none")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("ReadFile(missing) = %v", err)
	}
	if err := os.WriteFile(path, []byte("bad line\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadFile(path); err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "line 1") {
		t.Errorf("ReadFile(bad) = %v, want the path and line 1", err)
	}
}

func BenchmarkVerify(b *testing.B) {
	for _, tc := range []struct {
		name string
		alg  Algorithm
	}{{"hash=bcrypt-cost10", Bcrypt}, {"hash=pbkdf2-sha512-i210000", PBKDF2}} {
		b.Run(tc.name, func(b *testing.B) {
			h, err := Hash(tc.alg, []byte("secret"), Params{})
			if err != nil {
				b.Fatal(err)
			}
			for b.Loop() {
				if err := Verify(h, []byte("secret")); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
