package passwd

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"unicode"
	"unicode/utf8"
)

// ErrSyntax is wrapped by every error about a line of a password file.
var ErrSyntax = errors.New("passwd: syntax error")

// LineError is a load error that names the 1-based line of the file.
type LineError struct {
	Line int
	Err  error
}

func (e *LineError) Error() string { return fmt.Sprintf("line %d: %v", e.Line, e.Err) }

// Unwrap returns the cause.
func (e *LineError) Unwrap() error { return e.Err }

// File is a parsed password file. It keeps comments, blank lines and the order
// of users, so that a tool that changes one user rewrites the rest verbatim.
// A File is not safe for concurrent mutation; readers may share one that is
// no longer changed.
type File struct {
	lines []line
	index map[string]int // username -> position in lines
}

// line is either an entry (user != "") or a comment or blank line kept verbatim.
type line struct {
	raw        string
	user, hash string
}

// Parse reads a password file: one "username:hash" per line; blank lines and
// lines whose first non-space character is '#' are comments. The username is
// everything before the last ':' (a hash never contains ':'), taken verbatim;
// trailing spaces, tabs and a CR are ignored. A malformed line, an invalid
// username or hash, or a username given twice is an error naming the line.
func Parse(data []byte) (*File, error) {
	f := &File{index: map[string]int{}}
	text := string(data)
	text = strings.TrimSuffix(text, "\n")
	if text == "" {
		return f, nil
	}
	for i, raw := range strings.Split(text, "\n") {
		n := i + 1
		s := strings.TrimRight(raw, " \t\r")
		if t := strings.TrimSpace(s); t == "" || t[0] == '#' {
			f.lines = append(f.lines, line{raw: s})
			continue
		}
		colon := strings.LastIndexByte(s, ':')
		if colon < 0 {
			return nil, &LineError{n, fmt.Errorf("%w: want username:hash", ErrSyntax)}
		}
		user, hash := s[:colon], s[colon+1:]
		if err := ValidUsername(user); err != nil {
			return nil, &LineError{n, err}
		}
		if err := Check(hash); err != nil {
			return nil, &LineError{n, fmt.Errorf("user %q: %w", user, err)}
		}
		if prev, dup := f.index[user]; dup {
			return nil, &LineError{n, fmt.Errorf("%w: user %q is already on line %d", ErrSyntax, user, f.lineNumber(prev))}
		}
		f.index[user] = len(f.lines)
		f.lines = append(f.lines, line{user: user, hash: hash})
	}
	return f, nil
}

// lineNumber is the 1-based line of lines[pos] in a freshly parsed file.
func (f *File) lineNumber(pos int) int { return pos + 1 }

// ReadFile reads and parses the password file at path.
func ReadFile(path string) (*File, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("passwd: %w", err)
	}
	f, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("passwd: %s: %w", path, err)
	}
	return f, nil
}

// ValidUsername reports whether u can be stored in a password file: not
// empty, valid UTF-8 without control characters, no leading or trailing white
// space, and not starting with '#' (which would read as a comment). ':' is
// allowed (lines are split at the last ':').
func ValidUsername(u string) error {
	switch {
	case u == "":
		return fmt.Errorf("%w: empty username", ErrSyntax)
	case !utf8.ValidString(u):
		return fmt.Errorf("%w: username is not valid UTF-8", ErrSyntax)
	case u[0] == '#':
		return fmt.Errorf("%w: username %q starts with '#'", ErrSyntax, u)
	case strings.TrimSpace(u) != u:
		return fmt.Errorf("%w: username %q has leading or trailing white space", ErrSyntax, u)
	case len(u) > 65535:
		return fmt.Errorf("%w: username longer than 65535 bytes (the MQTT limit)", ErrSyntax)
	}
	for _, r := range u {
		if unicode.IsControl(r) {
			return fmt.Errorf("%w: username %q has a control character", ErrSyntax, u)
		}
	}
	return nil
}

// Lookup returns the hash of user.
func (f *File) Lookup(user string) (hash string, ok bool) {
	i, ok := f.index[user]
	if !ok {
		return "", false
	}
	return f.lines[i].hash, true
}

// Len returns the number of users.
func (f *File) Len() int { return len(f.index) }

// Users returns the usernames, sorted.
func (f *File) Users() []string {
	users := make([]string, 0, len(f.index))
	for u := range f.index {
		users = append(users, u)
	}
	sort.Strings(users)
	return users
}

// Set adds user with hash, or replaces the hash of an existing user in place.
func (f *File) Set(user, hash string) error {
	if err := ValidUsername(user); err != nil {
		return err
	}
	if err := Check(hash); err != nil {
		return err
	}
	if f.index == nil {
		f.index = map[string]int{}
	}
	if i, ok := f.index[user]; ok {
		f.lines[i].hash = hash
		return nil
	}
	f.index[user] = len(f.lines)
	f.lines = append(f.lines, line{user: user, hash: hash})
	return nil
}

// Delete removes user and reports whether it was there.
func (f *File) Delete(user string) bool {
	i, ok := f.index[user]
	if !ok {
		return false
	}
	f.lines = append(f.lines[:i], f.lines[i+1:]...)
	delete(f.index, user)
	for u, j := range f.index {
		if j > i {
			f.index[u] = j - 1
		}
	}
	return true
}

// Bytes renders the file: comments verbatim, one "username:hash" per entry,
// each line ending in '\n'.
func (f *File) Bytes() []byte {
	var b bytes.Buffer
	for _, l := range f.lines {
		if l.user == "" {
			b.WriteString(l.raw)
		} else {
			b.WriteString(l.user)
			b.WriteByte(':')
			b.WriteString(l.hash)
		}
		b.WriteByte('\n')
	}
	return b.Bytes()
}

// WriteFile writes f to path atomically: a temporary file in the same
// directory with mode 0600, fsynced, then renamed over path, then the
// directory fsynced. A reader sees the old file or the new one, never a mix.
func WriteFile(path string, f *File) (err error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	tmp, err := os.CreateTemp(dir, "."+base+".tmp*")
	if err != nil {
		return fmt.Errorf("passwd: %w", err)
	}
	defer func() {
		if err != nil {
			_ = tmp.Close()
			_ = os.Remove(tmp.Name())
		}
	}()
	if err := tmp.Chmod(0o600); err != nil {
		return fmt.Errorf("passwd: %w", err)
	}
	if _, err := tmp.Write(f.Bytes()); err != nil {
		return fmt.Errorf("passwd: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("passwd: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("passwd: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("passwd: %w", err)
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync() // best effort: the rename is done; not every system can fsync a directory
		_ = d.Close()
	}
	return nil
}
