package config

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestAuthKeys(t *testing.T) {
	src := `
auth.allow_anonymous = false
auth.password_file = "/etc/strata/passwd"
auth.hash = "pbkdf2"
auth.cache_ttl = "1m"
acl.file = "/etc/strata/acl.toml"
acl.deny_action = "disconnect"

[[acl.rules]]
permission = "allow"
action = "publish"
username = "%any"
topics = ["fleet/%u/#", "cmd/%c"]

[[acl.rules]]
permission = "deny"
action = "all"
clientid = "legacy"
topics = ["#"]
`
	c := Default()
	if err := Parse([]byte(src), &c); err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	want := Default()
	want.Auth.AllowAnonymous = AnonymousDeny
	want.Auth.PasswordFile = "/etc/strata/passwd"
	want.Auth.Hash = "pbkdf2"
	want.Auth.CacheTTL = Duration(60e9)
	want.ACL = ACL{File: "/etc/strata/acl.toml", DenyAction: DenyDisconnect, Rules: []ACLRule{
		{Permission: "allow", Action: "publish", Username: "%any", Topics: []string{"fleet/%u/#", "cmd/%c"}},
		{Permission: "deny", Action: "all", ClientID: "legacy", Topics: []string{"#"}},
	}}
	if diff := cmp.Diff(want, c); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	// The printed form reads back the same.
	var back Config
	if err := Parse([]byte(c.String()), &back); err != nil {
		t.Fatalf("%v\n%s", err, c.String())
	}
	if diff := cmp.Diff(c, back); diff != "" {
		t.Errorf("round trip (-want +got):\n%s", diff)
	}
}

func TestAllowAnonymous(t *testing.T) {
	for src, want := range map[string]AnonymousMode{
		`auth.allow_anonymous = true`:       AnonymousAllow,
		`auth.allow_anonymous = false`:      AnonymousDeny,
		`auth.allow_anonymous = "loopback"`: AnonymousLoopback,
		`auth.allow_anonymous = "true"`:     AnonymousAllow,
	} {
		c := Default()
		if err := Parse([]byte(src), &c); err != nil || c.Auth.AllowAnonymous != want {
			t.Errorf("%s: %q, %v; want %q", src, c.Auth.AllowAnonymous, err, want)
		}
	}
	for _, src := range []string{`auth.allow_anonymous = "yes"`, `auth.allow_anonymous = 1`} {
		c := Default()
		if err := Parse([]byte(src), &c); err == nil || !strings.Contains(err.Error(), `want "loopback", true or false`) {
			t.Errorf("%s: %v, want an error saying what is allowed", src, err)
		}
	}
	if !AnonymousLoopback.Allowed(true) || AnonymousLoopback.Allowed(false) || !AnonymousAllow.Allowed(false) || AnonymousDeny.Allowed(true) {
		t.Error("Allowed")
	}
}

func TestAuthUnknownKeys(t *testing.T) {
	c := Default()
	err := Parse([]byte("auth.pasword_file = \"x\"\n[[acl.rules]]\npermission = \"allow\"\naction = \"all\"\ntopics = [\"a\"]\nuser = \"bob\"\n"), &c)
	if err == nil || !strings.Contains(err.Error(), "auth.pasword_file") || !strings.Contains(err.Error(), "acl.rules.user") {
		t.Errorf("want an error naming both unknown keys, got %v", err)
	}
}

func TestValidateAuth(t *testing.T) {
	rate0 := Rate(0)
	cases := map[string]func(*Config){
		"auth.allow_anonymous":            func(c *Config) { c.Auth.AllowAnonymous = "maybe" },
		"auth.hash":                       func(c *Config) { c.Auth.Hash = "md5" },
		"auth.bcrypt_cost":                func(c *Config) { c.Auth.BcryptCost = 3 },
		"auth.pbkdf2_iterations":          func(c *Config) { c.Auth.PBKDF2Iterations = 10 },
		"auth.cache_size":                 func(c *Config) { c.Auth.CacheSize = -1 },
		"zone.default.mqtt.max_conn_rate": func(c *Config) { c.Zone["default"] = Zone{MQTT: &ZoneMQTT{MaxConnRate: &rate0}} },
		"acl.deny_action":                 func(c *Config) { c.ACL.DenyAction = "drop" },
		"auth.max_failures_per_address":   func(c *Config) { c.Auth.MaxFailuresPerAddress = -1 },
		"auth.jwt.algorithm":              func(c *Config) { c.Auth.JWT = JWT{Enable: true, Algorithm: "none"} },
		"auth.jwt":                        func(c *Config) { c.Auth.JWT = JWT{Enable: true, Algorithm: "HS256"} },
		"auth.jwt.leeway": func(c *Config) {
			c.Auth.JWT = JWT{Enable: true, Algorithm: "RS256", PublicKeyFile: "k.pem", Leeway: -1}
		},
		"listeners.tcp.default.use_identity_as_username": func(c *Config) {
			c.Listeners["tcp"] = map[string]Listener{"default": {Bind: ":1883", UseIdentityAsUsername: "cn"}}
		},
		"listeners.tls.x.use_identity_as_username": func(c *Config) {
			c.Listeners["tls"] = map[string]Listener{"x": {Bind: ":8883", CertFile: "c", KeyFile: "k", VerifyPeer: true, UseIdentityAsUsername: "serial"}}
		},
		"acl.rules[0]": func(c *Config) {
			c.ACL.Rules = []ACLRule{{Permission: "allow", Action: "all", Topics: []string{"a/#/b"}}}
		},
	}
	for key, mutate := range cases {
		c := Default()
		mutate(&c)
		err := c.Validate()
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), key) {
			t.Errorf("%s: Validate() = %v, want an ErrInvalid naming the key", key, err)
		}
	}
	c := Default()
	c.Auth.CacheSize, c.Auth.CacheTTL = 0, 0 // cache off is valid
	if err := c.Validate(); err != nil {
		t.Error(err)
	}
}

// TestJWTSecretIsRedacted: the printed configuration (logged at start-up)
// does not show auth.jwt.secret.
func TestJWTSecretIsRedacted(t *testing.T) {
	c := Default()
	if err := Parse([]byte("[auth.jwt]\nenable = true\nsecret = \"hunter2\"\nverify_claims = { sub = \"%u\" }\n"), &c); err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.Auth.JWT.Secret != "hunter2" || c.Auth.JWT.VerifyClaims["sub"] != "%u" {
		t.Fatalf("parsed %+v", c.Auth.JWT)
	}
	if s := c.String(); strings.Contains(s, "hunter2") || !strings.Contains(s, "<redacted>") {
		t.Errorf("printed config shows the secret:\n%s", s)
	}
}
