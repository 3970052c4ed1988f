package config

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/stratamq/strata/lts"
)

// Auth are the gateway's authentication keys (auth.*). docs/auth.md describes
// them in full.
type Auth struct {
	// AllowAnonymous says where clients without a username may connect:
	// "loopback" (only on listeners bound to a loopback address), true or
	// false. Default "loopback".
	AllowAnonymous AnonymousMode `toml:"allow_anonymous"`
	// PasswordFile is the password file (tools/mqttpasswd); empty means no
	// password users. It is re-read when it changes. Default "".
	PasswordFile string `toml:"password_file"`
	// Hash is the algorithm mqttpasswd uses for new entries: "bcrypt" or
	// "pbkdf2". The gateway verifies both whatever this says. Default "bcrypt".
	Hash string `toml:"hash"`
	// BcryptCost is the cost of new bcrypt hashes (4..31). Default 10.
	BcryptCost int `toml:"bcrypt_cost"`
	// PBKDF2Iterations is the iteration count of new PBKDF2-SHA512 hashes. Default 210000.
	PBKDF2Iterations int `toml:"pbkdf2_iterations"`
	// CacheTTL is how long a verified username and password are remembered;
	// 0 disables the cache. Default 5m.
	CacheTTL Duration `toml:"cache_ttl"`
	// CacheSize is the most verified credentials remembered; 0 disables the cache. Default 100000.
	CacheSize int `toml:"cache_size"`
	// MaxFailuresPerAddress is how many failed password checks a minute
	// one client address (an IPv6 /64) may have; past it, its CONNECTs
	// are refused without hashing (CONNACK 0x8A, 3.1.1: 0x05) until the
	// bucket refills. 0 disables. Default 30.
	MaxFailuresPerAddress int `toml:"max_failures_per_address"`
	// MaxFailuresPerUsername is the same per user name. 0 disables. Default 10.
	MaxFailuresPerUsername int `toml:"max_failures_per_username"`
	// FailureTableSize is how many addresses and, apart, how many user
	// names with recent failures are remembered (least recently failed
	// forgotten first). Default 100000.
	FailureTableSize int `toml:"failure_table_size"`
	// JWT accepts a JSON Web Token in the CONNECT password (auth.jwt.*).
	JWT JWT `toml:"jwt"`
}

// JWT are the auth.jwt.* keys: a CONNECT whose password has the form of a
// JWT is authenticated by the token instead of the password file.
// docs/auth.md describes them.
type JWT struct {
	// Enable turns JWT authentication on. Default false.
	Enable bool `toml:"enable"`
	// Algorithm is the only signature algorithm accepted: "HS256", "RS256"
	// or "ES256". Default "HS256".
	Algorithm string `toml:"algorithm"`
	// Secret is the HS256 key; it is printed redacted. Prefer SecretFile.
	// Default "".
	Secret Secret `toml:"secret"`
	// SecretFile holds the HS256 key (the whole file, a trailing newline
	// removed), read at start-up. Default "".
	SecretFile string `toml:"secret_file"`
	// PublicKeyFile is the RS256 or ES256 public key (PEM: PUBLIC KEY or
	// CERTIFICATE), read at start-up. Default "".
	PublicKeyFile string `toml:"public_key_file"`
	// JWKSFile is a JSON Web Key Set of RS256 or ES256 keys, chosen by the
	// token's "kid"; it is read again when it changes on disk (checked at
	// most once a second). Default "".
	JWKSFile string `toml:"jwks_file"`
	// Leeway is the clock skew allowed when checking "exp" and "nbf".
	// Default 5s.
	Leeway Duration `toml:"leeway"`
	// VerifyClaims are claims the token must carry with these string
	// values; "%u" stands for the CONNECT's username and "%c" for the
	// client id (for example sub = "%u"). Default none.
	VerifyClaims map[string]string `toml:"verify_claims"`
}

// Secret is a key that String prints as "<redacted>" unless it is empty.
type Secret string

// MarshalText implements encoding.TextMarshaler.
func (s Secret) MarshalText() ([]byte, error) {
	if s == "" {
		return []byte{}, nil
	}
	return []byte("<redacted>"), nil
}

// AnonymousMode is auth.allow_anonymous: the string "loopback", or a boolean
// (true and false may also be written as strings).
type AnonymousMode string

// The values of AnonymousMode.
const (
	AnonymousLoopback AnonymousMode = "loopback"
	AnonymousAllow    AnonymousMode = "true"
	AnonymousDeny     AnonymousMode = "false"
)

// UnmarshalTOML implements toml.Unmarshaler.
func (m *AnonymousMode) UnmarshalTOML(v any) error {
	switch v := v.(type) {
	case bool:
		*m = AnonymousDeny
		if v {
			*m = AnonymousAllow
		}
		return nil
	case string:
		switch AnonymousMode(v) {
		case AnonymousLoopback, AnonymousAllow, AnonymousDeny:
			*m = AnonymousMode(v)
			return nil
		}
	}
	return fmt.Errorf("%w: allow_anonymous: want \"loopback\", true or false, got %v", ErrInvalid, v)
}

// MarshalText implements encoding.TextMarshaler.
func (m AnonymousMode) MarshalText() ([]byte, error) { return []byte(m), nil }

// Allowed reports whether an anonymous client may connect on a listener
// that is (or is not) bound to a loopback address.
func (m AnonymousMode) Allowed(listenerIsLoopback bool) bool {
	switch m {
	case AnonymousAllow:
		return true
	case AnonymousLoopback:
		return listenerIsLoopback
	}
	return false
}

// ACL are the gateway's authorization keys (acl.*): rules in order, the first
// that matches decides; with no rules at all everything is allowed, with any
// rule a request no rule matches is denied. docs/auth.md describes them.
type ACL struct {
	// File is a TOML file with more [[acl.rules]], evaluated after the rules
	// given here. Default "" (none).
	File string `toml:"file"`
	// Rules are the inline rules. Default none.
	Rules []ACLRule `toml:"rules"`
	// DenyAction is what a PUBLISH or SUBSCRIBE the rules refuse does to
	// the connection (EMQX's authorization.deny_action): "ignore" answers
	// it (PUBACK/PUBREC 0x87 for MQTT 5, a normal acknowledgement for
	// 3.1.1, the message dropped; SUBACK 0x87/0x80) and goes on;
	// "disconnect" closes the connection (MQTT 5: DISCONNECT 0x87).
	// Default "ignore".
	DenyAction string `toml:"deny_action"`
}

// The values of ACL.DenyAction.
const (
	DenyIgnore     = "ignore"
	DenyDisconnect = "disconnect"
)

// ACLRule is one [[acl.rules]] entry.
type ACLRule struct {
	// Permission is "allow" or "deny".
	Permission string `toml:"permission"`
	// Action is "publish", "subscribe" or "all".
	Action string `toml:"action"`
	// Username is a username, "%any" (also when empty: every client) or
	// "%anonymous" (clients that did not authenticate with a password).
	Username string `toml:"username,omitempty"`
	// ClientID, when set, restricts the rule to this client id.
	ClientID string `toml:"clientid,omitempty"`
	// Topics are topic filter patterns; %u is replaced by the username,
	// %c by the client id and %{name} by the string claim name of the
	// client's JWT.
	Topics []string `toml:"topics"`
}

// claimPlaceholder is %{name} in an ACL topic pattern: the string claim
// name of the client's JWT.
var claimPlaceholder = regexp.MustCompile(`%\{[^}/+#]*\}`)

// validateAuth checks the auth.* and acl.* keys.
func (c Config) validateAuth(bad func(key, format string, args ...any)) {
	a := c.Auth
	switch a.AllowAnonymous {
	case AnonymousLoopback, AnonymousAllow, AnonymousDeny:
	default:
		bad("auth.allow_anonymous", "want \"loopback\", true or false, got %q", string(a.AllowAnonymous))
	}
	if a.Hash != "bcrypt" && a.Hash != "pbkdf2" {
		bad("auth.hash", "want \"bcrypt\" or \"pbkdf2\", got %q", a.Hash)
	}
	if a.BcryptCost < 4 || a.BcryptCost > 31 {
		bad("auth.bcrypt_cost", "must be 4..31, got %d", a.BcryptCost)
	}
	if a.PBKDF2Iterations < 1000 || a.PBKDF2Iterations > 10_000_000 {
		bad("auth.pbkdf2_iterations", "must be 1000..10000000, got %d", a.PBKDF2Iterations)
	}
	if a.CacheSize < 0 {
		bad("auth.cache_size", "must not be negative, got %d", a.CacheSize)
	}
	for key, n := range map[string]int{
		"auth.max_failures_per_address":  a.MaxFailuresPerAddress,
		"auth.max_failures_per_username": a.MaxFailuresPerUsername,
		"auth.failure_table_size":        a.FailureTableSize,
	} {
		if n < 0 {
			bad(key, "must not be negative, got %d", n)
		}
	}
	if j := a.JWT; j.Enable {
		set := func(vals ...string) (n int) {
			for _, v := range vals {
				if v != "" {
					n++
				}
			}
			return n
		}
		switch j.Algorithm {
		case "HS256":
			if set(string(j.Secret), j.SecretFile) != 1 || set(j.PublicKeyFile, j.JWKSFile) != 0 {
				bad("auth.jwt", "HS256 needs exactly one of secret and secret_file (and no public key)")
			}
		case "RS256", "ES256":
			if set(j.PublicKeyFile, j.JWKSFile) != 1 || set(string(j.Secret), j.SecretFile) != 0 {
				bad("auth.jwt", "%s needs exactly one of public_key_file and jwks_file (and no secret)", j.Algorithm)
			}
		default:
			bad("auth.jwt.algorithm", "want \"HS256\", \"RS256\" or \"ES256\", got %q", j.Algorithm)
		}
		if j.Leeway < 0 {
			bad("auth.jwt.leeway", "must not be negative")
		}
	}
	for name, z := range c.Zone {
		if z.MQTT != nil && z.MQTT.MaxConnRate != nil && *z.MQTT.MaxConnRate < 1 {
			bad("zone."+name+".mqtt.max_conn_rate", "must be at least 1/s, got %d", *z.MQTT.MaxConnRate)
		}
	}
	if d := c.ACL.DenyAction; d != DenyIgnore && d != DenyDisconnect {
		bad("acl.deny_action", "want %q or %q, got %q", DenyIgnore, DenyDisconnect, d)
	}
	for i, r := range c.ACL.Rules {
		for _, err := range ValidateACLRule(r) {
			bad(fmt.Sprintf("acl.rules[%d]", i), "%v", err)
		}
	}
}

// ValidateACLRule returns every problem of one rule: permission, action, and
// each topic pattern, which must be a valid topic filter once %u and %c are
// replaced by a plain level value.
func ValidateACLRule(r ACLRule) []error {
	var errs []error
	if r.Permission != "allow" && r.Permission != "deny" {
		errs = append(errs, fmt.Errorf("permission: want \"allow\" or \"deny\", got %q", r.Permission))
	}
	if r.Action != "publish" && r.Action != "subscribe" && r.Action != "all" {
		errs = append(errs, fmt.Errorf("action: want \"publish\", \"subscribe\" or \"all\", got %q", r.Action))
	}
	if len(r.Topics) == 0 {
		errs = append(errs, fmt.Errorf("topics: at least one topic pattern is needed"))
	}
	for _, t := range r.Topics {
		probe := strings.NewReplacer("%u", "u", "%c", "c").Replace(claimPlaceholder.ReplaceAllString(t, "x"))
		if strings.Contains(probe, "%{") {
			errs = append(errs, fmt.Errorf("topic pattern %q: %%{ without a closing } (or with / + # in the claim name)", t))
			continue
		}
		if err := lts.ValidateTopicFilter(probe, 0); err != nil {
			errs = append(errs, fmt.Errorf("topic pattern %q: %w", t, err))
		}
	}
	return errs
}
