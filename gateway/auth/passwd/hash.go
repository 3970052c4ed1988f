package passwd

import (
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/crypto/bcrypt"
)

// Algorithm names a password hash: Bcrypt or PBKDF2 (PBKDF2-HMAC-SHA512).
type Algorithm string

const (
	// Bcrypt is bcrypt as "$2a$", "$2b$" or "$2y$" strings (60 bytes). It only
	// reads the first 72 bytes of a password, so Hash refuses longer ones.
	Bcrypt Algorithm = "bcrypt"
	// PBKDF2 is PBKDF2-HMAC-SHA512 as "$pbkdf2-sha512$i=<iterations>$<salt>$<hash>".
	PBKDF2 Algorithm = "pbkdf2"
)

// Defaults and limits of the hash parameters.
const (
	// DefaultBcryptCost is the bcrypt cost Hash uses when Params leaves it 0:
	// about 50 ms per hash on a current core.
	DefaultBcryptCost = 10
	// DefaultPBKDF2Iterations is the PBKDF2-SHA512 iteration count Hash uses
	// when Params leaves it 0 (OWASP's 2023 advice for SHA-512).
	DefaultPBKDF2Iterations = 210000
	// MinBcryptCost and MaxBcryptCost bound the bcrypt cost (the algorithm's own limits).
	MinBcryptCost = bcrypt.MinCost
	MaxBcryptCost = bcrypt.MaxCost
	// MaxPBKDF2Iterations bounds the iteration count Verify accepts, so that a
	// mistyped file cannot make one verification take minutes.
	MaxPBKDF2Iterations = 10_000_000
	// PBKDF2SaltBytes is the salt length Hash draws; Verify accepts 8..64.
	PBKDF2SaltBytes = 16
	// bcryptMaxPassword is the longest password bcrypt reads.
	bcryptMaxPassword = 72
	pbkdf2Prefix      = "$pbkdf2-sha512$"
)

// Errors of hashing and verification.
var (
	// ErrMismatch is returned by Verify when the password does not match.
	ErrMismatch = errors.New("passwd: password does not match")
	// ErrMalformedHash is wrapped by every error about a hash string that is
	// not one of the accepted formats.
	ErrMalformedHash = errors.New("passwd: malformed hash")
	// ErrPasswordTooLong is returned by Hash for a bcrypt password over 72 bytes.
	ErrPasswordTooLong = errors.New("passwd: bcrypt reads at most 72 bytes of a password; use pbkdf2 for longer ones")
)

// Params are the cost parameters of new hashes; a zero field takes its default.
type Params struct {
	BcryptCost       int
	PBKDF2Iterations int
}

// ParseAlgorithm reads "bcrypt" or "pbkdf2".
func ParseAlgorithm(s string) (Algorithm, error) {
	switch Algorithm(s) {
	case Bcrypt, PBKDF2:
		return Algorithm(s), nil
	}
	return "", fmt.Errorf("passwd: unknown hash %q (want bcrypt or pbkdf2)", s)
}

// Hash returns a new salted hash of password in the given algorithm.
func Hash(alg Algorithm, password []byte, p Params) (string, error) {
	switch alg {
	case Bcrypt:
		cost := p.BcryptCost
		if cost == 0 {
			cost = DefaultBcryptCost
		}
		if cost < MinBcryptCost || cost > MaxBcryptCost {
			return "", fmt.Errorf("passwd: bcrypt cost %d out of range %d..%d", cost, MinBcryptCost, MaxBcryptCost)
		}
		if len(password) > bcryptMaxPassword {
			return "", ErrPasswordTooLong
		}
		h, err := bcrypt.GenerateFromPassword(password, cost)
		if err != nil {
			return "", fmt.Errorf("passwd: bcrypt: %w", err)
		}
		return string(h), nil
	case PBKDF2:
		iter := p.PBKDF2Iterations
		if iter == 0 {
			iter = DefaultPBKDF2Iterations
		}
		if iter < 1 || iter > MaxPBKDF2Iterations {
			return "", fmt.Errorf("passwd: pbkdf2 iterations %d out of range 1..%d", iter, MaxPBKDF2Iterations)
		}
		salt := make([]byte, PBKDF2SaltBytes)
		if _, err := rand.Read(salt); err != nil {
			return "", fmt.Errorf("passwd: salt: %w", err)
		}
		dk, err := pbkdf2.Key(sha512.New, string(password), salt, iter, sha512.Size)
		if err != nil {
			return "", fmt.Errorf("passwd: pbkdf2: %w", err)
		}
		b64 := base64.RawStdEncoding
		return pbkdf2Prefix + "i=" + strconv.Itoa(iter) + "$" + b64.EncodeToString(salt) + "$" + b64.EncodeToString(dk), nil
	}
	return "", fmt.Errorf("passwd: unknown hash %q (want bcrypt or pbkdf2)", alg)
}

// Verify reports whether password matches hash: nil if it does, ErrMismatch if
// it does not, and an error wrapping ErrMalformedHash if hash is not a valid
// hash string. The comparison of the derived keys is in constant time.
func Verify(hash string, password []byte) error {
	switch {
	case isBcrypt(hash):
		if err := checkBcrypt(hash); err != nil {
			return err
		}
		if len(password) > bcryptMaxPassword {
			// bcrypt would ignore the tail; a password that only shares the
			// first 72 bytes must not match.
			return ErrMismatch
		}
		err := bcrypt.CompareHashAndPassword([]byte(hash), password)
		if errors.Is(err, bcrypt.ErrMismatchedHashAndPassword) {
			return ErrMismatch
		}
		if err != nil {
			return fmt.Errorf("%w: %v", ErrMalformedHash, err) // lint:nowrap callers classify by ErrMalformedHash, not by bcrypt's own errors
		}
		return nil
	case strings.HasPrefix(hash, pbkdf2Prefix):
		iter, salt, want, err := parsePBKDF2(hash)
		if err != nil {
			return err
		}
		got, err := pbkdf2.Key(sha512.New, string(password), salt, iter, len(want))
		if err != nil {
			return fmt.Errorf("%w: %v", ErrMalformedHash, err) // lint:nowrap callers classify by ErrMalformedHash, not by pbkdf2's own errors
		}
		if subtle.ConstantTimeCompare(got, want) != 1 {
			return ErrMismatch
		}
		return nil
	}
	return fmt.Errorf("%w: unknown format (want $2a$/$2b$/$2y$ bcrypt or $pbkdf2-sha512$)", ErrMalformedHash)
}

// Check validates the syntax of a hash string without deriving anything, so a
// password file can be checked line by line at load time.
func Check(hash string) error {
	switch {
	case isBcrypt(hash):
		return checkBcrypt(hash)
	case strings.HasPrefix(hash, pbkdf2Prefix):
		_, _, _, err := parsePBKDF2(hash)
		return err
	}
	return fmt.Errorf("%w: unknown format (want $2a$/$2b$/$2y$ bcrypt or $pbkdf2-sha512$)", ErrMalformedHash)
}

// AlgorithmOf returns the algorithm of a well-formed hash string.
func AlgorithmOf(hash string) (Algorithm, bool) {
	switch {
	case isBcrypt(hash):
		return Bcrypt, true
	case strings.HasPrefix(hash, pbkdf2Prefix):
		return PBKDF2, true
	}
	return "", false
}

func isBcrypt(h string) bool {
	return strings.HasPrefix(h, "$2a$") || strings.HasPrefix(h, "$2b$") || strings.HasPrefix(h, "$2y$")
}

// bcryptAlphabet is bcrypt's base64 alphabet.
const bcryptAlphabet = "./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

// checkBcrypt checks "$2b$NN$" + 53 characters of bcrypt's base64.
func checkBcrypt(h string) error {
	if len(h) != 60 || h[6] != '$' {
		return fmt.Errorf("%w: a bcrypt hash is 60 characters, \"$2b$NN$\" then salt and hash", ErrMalformedHash)
	}
	cost, err := strconv.Atoi(h[4:6])
	if err != nil || cost < MinBcryptCost || cost > MaxBcryptCost {
		return fmt.Errorf("%w: bcrypt cost %q out of range %d..%d", ErrMalformedHash, h[4:6], MinBcryptCost, MaxBcryptCost)
	}
	for i := 7; i < len(h); i++ {
		if !strings.ContainsRune(bcryptAlphabet, rune(h[i])) {
			return fmt.Errorf("%w: bcrypt hash has a character outside its alphabet at offset %d", ErrMalformedHash, i)
		}
	}
	return nil
}

// parsePBKDF2 reads "$pbkdf2-sha512$i=N$salt$hash" (standard base64 without
// padding, as in the PHC string format).
func parsePBKDF2(h string) (iter int, salt, dk []byte, err error) {
	parts := strings.Split(strings.TrimPrefix(h, pbkdf2Prefix), "$")
	if len(parts) != 3 {
		return 0, nil, nil, fmt.Errorf("%w: want $pbkdf2-sha512$i=<iterations>$<salt>$<hash>", ErrMalformedHash)
	}
	n, ok := strings.CutPrefix(parts[0], "i=")
	iter, err = strconv.Atoi(n)
	if !ok || err != nil || iter < 1 || iter > MaxPBKDF2Iterations || strconv.Itoa(iter) != n {
		return 0, nil, nil, fmt.Errorf("%w: pbkdf2 iterations %q: want i=1..%d", ErrMalformedHash, parts[0], MaxPBKDF2Iterations)
	}
	b64 := base64.RawStdEncoding.Strict()
	salt, err = b64.DecodeString(parts[1])
	if err != nil || len(salt) < 8 || len(salt) > 64 {
		return 0, nil, nil, fmt.Errorf("%w: pbkdf2 salt: want 8..64 bytes of unpadded base64", ErrMalformedHash)
	}
	dk, err = b64.DecodeString(parts[2])
	if err != nil || len(dk) < 16 || len(dk) > sha512.Size {
		return 0, nil, nil, fmt.Errorf("%w: pbkdf2 hash: want 16..64 bytes of unpadded base64", ErrMalformedHash)
	}
	return iter, salt, dk, nil
}
