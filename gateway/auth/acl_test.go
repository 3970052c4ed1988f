package auth

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stratamq/strata/config"
)

func allow(action, user string, topics ...string) config.ACLRule {
	return config.ACLRule{Permission: "allow", Action: action, Username: user, Topics: topics}
}

func deny(action, user string, topics ...string) config.ACLRule {
	return config.ACLRule{Permission: "deny", Action: action, Username: user, Topics: topics}
}

func TestAuthorize(t *testing.T) {
	alice := Identity{Username: "alice", Authenticated: true}
	bob := Identity{Username: "bob", Authenticated: true}
	anon := Identity{}
	claimed := Identity{Username: "alice", Authenticated: false} // no password file: a claimed name only
	fleet := []config.ACLRule{
		deny("all", "%any", "fleet/admin/#"),
		allow("all", "%any", "fleet/%u/#"),
		allow("publish", "%any", "cmd/%c"),
		allow("subscribe", "bob", "fleet/+/status"),
		allow("subscribe", "%anonymous", "public/#"),
		{Permission: "allow", Action: "publish", ClientID: "gw-1", Topics: []string{"bridge/#"}},
	}
	cases := []struct {
		name   string
		rules  []config.ACLRule
		id     Identity
		client string
		action Action
		topic  string
		want   bool
	}{
		{"no rules allow all", nil, anon, "c", Publish, "any/thing", true},
		{"no rules allow all subscribe", nil, anon, "c", Subscribe, "#", true},
		{"own tree publish", fleet, alice, "c1", Publish, "fleet/alice/t", true},
		{"own tree parent", fleet, alice, "c1", Publish, "fleet/alice", true},
		{"other tree", fleet, alice, "c1", Publish, "fleet/bob/t", false},
		{"deny by default", fleet, alice, "c1", Publish, "elsewhere", false},
		{"first match wins (deny before allow)", fleet, Identity{Username: "admin", Authenticated: true}, "c1", Publish, "fleet/admin/x", false},
		{"subscribe own subtree filter", fleet, alice, "c1", Subscribe, "fleet/alice/+/temp", true},
		{"subscribe own tree #", fleet, alice, "c1", Subscribe, "fleet/alice/#", true},
		{"subscribe wider than the rule", fleet, alice, "c1", Subscribe, "fleet/#", false},
		{"subscribe + across users", fleet, alice, "c1", Subscribe, "fleet/+/temp", false},
		{"named rule for bob", fleet, bob, "c2", Subscribe, "fleet/carol/status", true},
		{"named rule: + filter covered by + pattern", fleet, bob, "c2", Subscribe, "fleet/+/status", true},
		{"named rule not for alice", fleet, alice, "c1", Subscribe, "fleet/carol/status", false},
		{"named rule not for a claimed name", fleet, Identity{Username: "bob", Authenticated: false}, "c2", Subscribe, "fleet/carol/status", false},
		{"publish-only rule does not allow subscribe", fleet, alice, "c1", Subscribe, "cmd/c1", false},
		{"%c", fleet, alice, "c1", Publish, "cmd/c1", true},
		{"%c other client", fleet, alice, "c1", Publish, "cmd/c2", false},
		{"anonymous rule", fleet, anon, "c3", Subscribe, "public/news", true},
		{"anonymous rule matches claimed names", fleet, claimed, "c3", Subscribe, "public/#", true},
		{"anonymous rule not for users", fleet, alice, "c1", Subscribe, "public/news", false},
		{"anonymous has no %u", fleet, anon, "c3", Publish, "fleet//x", false},
		{"claimed name has no %u", fleet, claimed, "c3", Publish, "fleet/alice/x", false},
		{"client id rule", fleet, anon, "gw-1", Publish, "bridge/a/b", true},
		{"client id rule other client", fleet, anon, "gw-2", Publish, "bridge/a/b", false},
		{"shared subscription prefix is stripped", fleet, alice, "c1", Subscribe, "$share/g/fleet/alice/+", true},
		{"shared subscription still needs cover", fleet, alice, "c1", Subscribe, "$share/g/fleet/#", false},

		// Wildcard characters in substituted values never widen a pattern.
		{"username with #", fleet, Identity{Username: "#", Authenticated: true}, "c", Subscribe, "fleet/#", false},
		{"username with # publish", fleet, Identity{Username: "#", Authenticated: true}, "c", Publish, "fleet/x/y", false},
		{"username with +", fleet, Identity{Username: "+", Authenticated: true}, "c", Subscribe, "fleet/+/x", false},
		{"username with /", fleet, Identity{Username: "a/b", Authenticated: true}, "c", Publish, "fleet/a/b/c", false},
		{"client id with #", fleet, alice, "#", Publish, "cmd/x", false},
		{"client id with +", fleet, alice, "+", Publish, "cmd/x", false},
		{"client id with /", fleet, alice, "x/y", Publish, "cmd/x/y", false},
		{"empty client id", fleet, alice, "", Publish, "cmd/", false},
		{"$ client id", []config.ACLRule{allow("subscribe", "", "%c/#")}, alice, "$SYS", Subscribe, "$SYS/#", false},
		{"% sequences in a username are not expanded", []config.ACLRule{allow("publish", "", "u/%u")}, Identity{Username: "x%cy", Authenticated: true}, "c", Publish, "u/x%cy", true},
		{"deny with unsafe value fails closed", []config.ACLRule{deny("publish", "", "private/%u/#"), allow("publish", "", "#")}, Identity{Username: "a/b", Authenticated: true}, "c", Publish, "public/x", false},
		{"deny with safe value", []config.ACLRule{deny("publish", "", "private/%u/#"), allow("publish", "", "#")}, alice, "c", Publish, "public/x", true},
		{"deny with safe value hits", []config.ACLRule{deny("publish", "", "private/%u/#"), allow("publish", "", "#")}, alice, "c", Publish, "private/alice/x", false},

		// Coverage details.
		{"# pattern covers everything", []config.ACLRule{allow("subscribe", "", "#")}, anon, "c", Subscribe, "a/+/#", true},
		{"# pattern does not cover $ topics", []config.ACLRule{allow("subscribe", "", "#")}, anon, "c", Subscribe, "$SYS/#", false},
		{"+ pattern does not cover $ topics", []config.ACLRule{allow("subscribe", "", "+/x")}, anon, "c", Subscribe, "$SYS/x", false},
		{"$ pattern covers $ filter", []config.ACLRule{allow("subscribe", "", "$SYS/#")}, anon, "c", Subscribe, "$SYS/broker/+", true},
		{"# pattern publish not $", []config.ACLRule{allow("publish", "", "#")}, anon, "c", Publish, "$SYS/x", false},
		{"a/# covers a", []config.ACLRule{allow("subscribe", "", "a/#")}, anon, "c", Subscribe, "a", true},
		{"a/+ does not cover a", []config.ACLRule{allow("subscribe", "", "a/+")}, anon, "c", Subscribe, "a", false},
		{"a does not cover a/#", []config.ACLRule{allow("subscribe", "", "a")}, anon, "c", Subscribe, "a/#", false},
		{"a/+ does not cover a/#", []config.ACLRule{allow("subscribe", "", "a/+")}, anon, "c", Subscribe, "a/#", false},
		{"exact filter", []config.ACLRule{allow("subscribe", "", "a/b")}, anon, "c", Subscribe, "a/b", true},
		{"exact pattern does not cover +", []config.ACLRule{allow("subscribe", "", "a/b")}, anon, "c", Subscribe, "a/+", false},
		{"longer filter", []config.ACLRule{allow("subscribe", "", "a/+")}, anon, "c", Subscribe, "a/b/c", false},
		{"empty levels", []config.ACLRule{allow("publish", "", "a/+/c")}, anon, "c", Publish, "a//c", true},
		{"other % sequences stay as they are", []config.ACLRule{allow("publish", "", "a/%x/%u%")}, alice, "c", Publish, "a/%x/alice%", true},
		{"substitution inside a level", []config.ACLRule{allow("publish", "", "dev-%u/#")}, alice, "c", Publish, "dev-alice/x", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			acl, err := NewACL(config.ACL{Rules: tc.rules})
			if err != nil {
				t.Fatal(err)
			}
			if got := acl.Authorize(tc.id, tc.client, tc.action, tc.topic); got != tc.want {
				t.Errorf("Authorize(%+v, %q, %v, %q) = %v, want %v", tc.id, tc.client, tc.action, tc.topic, got, tc.want)
			}
		})
	}
}

func TestNilACLAllows(t *testing.T) {
	var a *ACL
	if !a.Authorize(Identity{}, "c", Publish, "x") || a.Len() != 0 {
		t.Error("a nil ACL must allow everything")
	}
}

func TestACLErrors(t *testing.T) {
	cases := map[string]config.ACLRule{
		"permission":       {Permission: "maybe", Action: "all", Topics: []string{"a"}},
		"action":           {Permission: "allow", Action: "read", Topics: []string{"a"}},
		"at least one":     {Permission: "allow", Action: "all"},
		`"a/#/b"`:          {Permission: "allow", Action: "all", Topics: []string{"a/#/b"}},
		`"a/b+"`:           {Permission: "allow", Action: "all", Topics: []string{"a/b+"}},
		`"x/%u#"`:          {Permission: "allow", Action: "all", Topics: []string{"x/%u#"}},
		`acl.rules[1]`:     {Permission: "allow", Action: "all", Topics: []string{""}},
		"wildcard level":   {Permission: "allow", Action: "all", Topics: []string{"a+"}},
		"not a wildcard 2": {Permission: "allow", Action: "all", Topics: []string{"#/a"}},
	}
	for want, r := range cases {
		_, err := NewACL(config.ACL{Rules: []config.ACLRule{allow("all", "", "ok"), r}})
		if !errors.Is(err, ErrACL) || !strings.Contains(err.Error(), "acl.rules[1]") {
			t.Errorf("%s: err = %v, want ErrACL naming acl.rules[1]", want, err)
		}
		if !strings.HasPrefix(want, "not") && want != "wildcard level" && !strings.Contains(err.Error(), want) {
			t.Errorf("%s: err = %v does not say %s", want, err, want)
		}
	}
}

func TestACLFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "acl.toml")
	src := `
# extra rules, evaluated after the inline ones
[[acl.rules]]
permission = "allow"
action = "subscribe"
topics = ["file/#"]

[[acl.rules]]
permission = "deny"
action = "all"
username = "%any"
topics = ["#"]
`
	if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	acl, err := NewACL(config.ACL{File: path, Rules: []config.ACLRule{allow("subscribe", "", "inline/#")}})
	if err != nil {
		t.Fatal(err)
	}
	if acl.Len() != 3 {
		t.Fatalf("Len() = %d, want 3", acl.Len())
	}
	for topic, want := range map[string]bool{"inline/x": true, "file/x": true, "other": false} {
		if got := acl.Authorize(Identity{}, "c", Subscribe, topic); got != want {
			t.Errorf("%s: %v, want %v", topic, got, want)
		}
	}

	for name, bad := range map[string]string{
		"unknown key":  "[[acl.rules]]\npermission = \"allow\"\naction = \"all\"\ntopics = [\"a\"]\nuser = \"x\"\n",
		"nested file":  "[acl]\nfile = \"other\"\n",
		"bad rule":     "[[acl.rules]]\npermission = \"allow\"\naction = \"all\"\ntopics = [\"a/#/b\"]\n",
		"not toml":     "[[acl.rules]\n",
		"missing file": "",
	} {
		p := filepath.Join(dir, "bad.toml")
		if name == "missing file" {
			p = filepath.Join(dir, "none.toml")
		} else if err := os.WriteFile(p, []byte(bad), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := NewACL(config.ACL{File: p}); !errors.Is(err, ErrACL) || !strings.Contains(err.Error(), filepath.Base(p)) {
			t.Errorf("%s: err = %v, want ErrACL naming the file", name, err)
		}
	}
}

func BenchmarkAuthorize(b *testing.B) {
	rules := []config.ACLRule{
		deny("all", "%any", "fleet/admin/#"),
		allow("subscribe", "bob", "fleet/+/status"),
		allow("publish", "%any", "cmd/%c"),
		allow("all", "%any", "fleet/%u/#"),
	}
	acl, err := NewACL(config.ACL{Rules: rules})
	if err != nil {
		b.Fatal(err)
	}
	id := Identity{Username: "alice", Authenticated: true}
	b.Run("action=publish/rules=4", func(b *testing.B) {
		for b.Loop() {
			if !acl.Authorize(id, "c1", Publish, "fleet/alice/dev7/temp") {
				b.Fatal("denied")
			}
		}
	})
	b.Run("action=subscribe/rules=4", func(b *testing.B) {
		for b.Loop() {
			if !acl.Authorize(id, "c1", Subscribe, "fleet/alice/+/temp") {
				b.Fatal("denied")
			}
		}
	})
}

// TestAuthorizeFilter: a deny rule holds for every topic it could deliver.
// A filter it covers is refused; a filter it only overlaps is granted but not
// whole, and AuthorizeDelivery then refuses the denied topics one by one.
// (Before, "#", "+/a", "+/+/x" and "fleet/#" were granted whole after
// "deny subscribe secret/#" and received secret/... messages.)
func TestAuthorizeFilter(t *testing.T) {
	rules := []config.ACLRule{
		allow("subscribe", "", "secret/public"),
		deny("subscribe", "", "secret/#"),
		deny("all", "", "fleet/+/admin/#"),
		allow("all", "", "#"),
	}
	acl, err := NewACL(config.ACL{Rules: rules})
	if err != nil {
		t.Fatal(err)
	}
	id := Identity{Username: "alice", Authenticated: true}
	for _, tc := range []struct {
		filter    string
		ok, whole bool
	}{
		{"secret/#", false, false},
		{"secret/a", false, false},
		{"secret/+/x", false, false},
		{"secret", false, false}, // "secret/#" matches its parent
		{"$share/g/secret/#", false, false},
		{"secret/public", true, true},
		{"#", true, false},
		{"+/a", true, false},
		{"+/+/x", true, false},
		{"+", true, false},
		{"$share/g/#", true, false},
		{"fleet/#", true, false},
		{"fleet/a/#", true, false},
		{"fleet/a/admin/x", false, false},
		{"fleet/a/status", true, true},
		{"other/#", true, true},
		{"fleet/+/status/#", true, true}, // fleet/+/admin/# needs "admin" as the third level
		{"$SYS/#", false, false},         // "#" does not cover $ topics
	} {
		ok, whole := acl.AuthorizeFilter(id, "c", tc.filter)
		if ok != tc.ok || whole != tc.whole {
			t.Errorf("AuthorizeFilter(%q) = %v, %v; want %v, %v", tc.filter, ok, whole, tc.ok, tc.whole)
		}
		if got := acl.Authorize(id, "c", Subscribe, tc.filter); got != tc.ok {
			t.Errorf("Authorize(Subscribe, %q) = %v, want %v", tc.filter, got, tc.ok)
		}
	}
	for topic, want := range map[string]bool{
		"secret/x":         false,
		"secret":           false,
		"secret/public":    true, // the earlier allow rule decides
		"secret/public/x":  false,
		"fleet/a/admin":    false,
		"fleet/a/admin/b":  false,
		"fleet/a/status":   true,
		"other":            true,
		"$SYS/broker/load": false,
	} {
		if got := acl.AuthorizeDelivery(id, "c", topic); got != want {
			t.Errorf("AuthorizeDelivery(%q) = %v, want %v", topic, got, want)
		}
	}
	var none *ACL
	if ok, whole := none.AuthorizeFilter(id, "c", "#"); !ok || !whole {
		t.Error("without rules every filter is whole")
	}
}

func TestOverlaps(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want bool
	}{
		{"#", "secret/#", true},
		{"#", "secret", true},
		{"+/a", "secret/#", true},
		{"+/+/x", "secret/#", true},
		{"+", "secret/#", true},
		{"a/#", "a", true},
		{"a/+", "a", false},
		{"a/+/c", "a/b/+", true},
		{"a/b/c", "a/+/d", false},
		{"a/b", "a/b/c", false},
		{"a/b", "a/b", true},
		{"#", "$SYS/#", false},
		{"+/x", "$SYS/x", false},
		{"$SYS/+", "$SYS/#", true},
		{"$SYS/x", "$SYS/x", true},
	} {
		a, b := strings.Split(tc.a, "/"), strings.Split(tc.b, "/")
		if got := overlaps(a, b); got != tc.want {
			t.Errorf("overlaps(%q, %q) = %v, want %v", tc.a, tc.b, got, tc.want)
		}
		if got := overlaps(b, a); got != tc.want {
			t.Errorf("overlaps(%q, %q) = %v, want %v", tc.b, tc.a, got, tc.want)
		}
	}
}
