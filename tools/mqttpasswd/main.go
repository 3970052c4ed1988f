// Command mqttpasswd creates, updates and deletes users in a Strata password
// file (auth.password_file; the format is described in docs/auth.md and
// package gateway/auth/passwd).
//
//	mqttpasswd [-c] [-b] [-D] [--hash bcrypt|pbkdf2] [--cost N] [--iterations N] [--config F] <file> <username> [password]
//
// -c creates the file (replacing an existing one); without it the file must
// exist. -b takes the password from the command line (visible to other
// users of the machine in the process list and shell history); without it
// the password is read as one line from standard input. -D deletes the user.
// The hash defaults come from the auth.* keys of --config when given, else
// bcrypt cost 10 / PBKDF2-SHA512 210000 iterations; --hash, --cost and
// --iterations override them. The file is written atomically (a temporary
// file renamed over it) with mode 0600; comments and the order of the other
// users are kept. A running gateway notices the change within a second.
package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/stratamq/strata/config"
	"github.com/stratamq/strata/gateway/auth/passwd"
	"github.com/stratamq/strata/internal/buildinfo"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stderr))
}

const usage = "usage: mqttpasswd [-c] [-b] [-D] [--hash bcrypt|pbkdf2] [--cost N] [--iterations N] [--config F] <file> <username> [password]"

// run is main without the process: it returns the exit status (0 ok, 1
// failure, 2 usage error).
func run(args []string, stdin io.Reader, stderr io.Writer) int {
	fs := flag.NewFlagSet("mqttpasswd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, usage)
		fs.PrintDefaults()
	}
	create := fs.Bool("c", false, "create the file, replacing an existing one")
	batch := fs.Bool("b", false, "take the password from the command line instead of standard input")
	del := fs.Bool("D", false, "delete the user")
	hash := fs.String("hash", "", "hash for the new entry: bcrypt or pbkdf2 (default: auth.hash, else bcrypt)")
	cost := fs.Int("cost", 0, "bcrypt cost 4..31 (default: auth.bcrypt_cost, else 10)")
	iterations := fs.Int("iterations", 0, "PBKDF2-SHA512 iterations (default: auth.pbkdf2_iterations, else 210000)")
	cfgPath := fs.String("config", "", "Strata configuration file whose auth.* keys give the hash defaults")
	showVersion := buildinfo.VersionFlag(fs)

	// Flags may come before, between or after the positional arguments.
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return 0
			}
			return 2
		}
		args = fs.Args()
		if len(args) == 0 {
			break
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
	if *showVersion {
		buildinfo.Fprint(os.Stdout, "mqttpasswd")
		return 0
	}
	if err := check(pos, *create, *batch, *del); err != nil {
		fmt.Fprintf(stderr, "mqttpasswd: %v\n%s\n", err, usage)
		return 2
	}
	if err := apply(pos, *create, *batch, *del, *hash, *cost, *iterations, *cfgPath, stdin); err != nil {
		fmt.Fprintf(stderr, "mqttpasswd: %v\n", err)
		return 1
	}
	return 0
}

func check(pos []string, create, batch, del bool) error {
	switch {
	case len(pos) < 2:
		return errors.New("want a file and a username")
	case del && (create || batch):
		return errors.New("-D does not go with -c or -b")
	case del && len(pos) != 2:
		return errors.New("-D takes a file and a username only")
	case batch && len(pos) != 3:
		return errors.New("-b needs the password as the third argument")
	case !batch && len(pos) != 2:
		return errors.New("give the password on standard input, or use -b")
	}
	return nil
}

func apply(pos []string, create, batch, del bool, hash string, cost, iterations int, cfgPath string, stdin io.Reader) error {
	path, user := pos[0], pos[1]
	var f *passwd.File
	if create {
		f = &passwd.File{}
	} else {
		var err error
		if f, err = passwd.ReadFile(path); err != nil {
			return fmt.Errorf("%w (use -c to create a new file)", err)
		}
	}
	if del {
		if !f.Delete(user) {
			return fmt.Errorf("user %q is not in %s", user, path)
		}
		return passwd.WriteFile(path, f)
	}
	if err := passwd.ValidUsername(user); err != nil {
		return err
	}
	cfg := config.Default().Auth
	if cfgPath != "" {
		c, err := config.Load(cfgPath)
		if err != nil {
			return err
		}
		cfg = c.Auth
	}
	if hash == "" {
		hash = cfg.Hash
	}
	if cost == 0 {
		cost = cfg.BcryptCost
	}
	if iterations == 0 {
		iterations = cfg.PBKDF2Iterations
	}
	alg, err := passwd.ParseAlgorithm(hash)
	if err != nil {
		return err
	}
	var pw string
	if batch {
		pw = pos[2]
	} else {
		if pw, err = readLine(stdin); err != nil {
			return err
		}
	}
	if pw == "" {
		return errors.New("empty password")
	}
	h, err := passwd.Hash(alg, []byte(pw), passwd.Params{BcryptCost: cost, PBKDF2Iterations: iterations})
	if err != nil {
		return err
	}
	if err := f.Set(user, h); err != nil {
		return err
	}
	return passwd.WriteFile(path, f)
}

// readLine reads one line of standard input without its line ending.
func readLine(r io.Reader) (string, error) {
	line, err := bufio.NewReader(r).ReadString('\n')
	if err != nil && !(errors.Is(err, io.EOF) && line != "") {
		return "", fmt.Errorf("reading the password from standard input: %w", err)
	}
	return strings.TrimRight(line, "\r\n"), nil
}
