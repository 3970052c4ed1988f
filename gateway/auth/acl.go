package auth

import (
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/BurntSushi/toml"

	"github.com/stratamq/strata/config"
	"github.com/stratamq/strata/gateway/packet"
	"github.com/stratamq/strata/lts"
)

// Action is what a client asks to do with a topic.
type Action uint8

// The actions Authorize decides.
const (
	// Publish is a PUBLISH (or a will) to a topic name.
	Publish Action = 1 << iota
	// Subscribe is a SUBSCRIBE to a topic filter.
	Subscribe
)

func (a Action) String() string {
	switch a {
	case Publish:
		return "publish"
	case Subscribe:
		return "subscribe"
	}
	return fmt.Sprintf("Action(%d)", uint8(a))
}

// ErrACL is wrapped by every error about ACL rules or the ACL file.
var ErrACL = errors.New("auth: invalid ACL")

// ACL decides PUBLISH and SUBSCRIBE requests by rules (acl.rules, then the
// rules of acl.file): the first rule that matches decides. With no rules
// everything is allowed; with any rule, a request that no rule matches is
// denied. A nil *ACL has no rules. An ACL is immutable and safe for
// concurrent use.
type ACL struct {
	rules []rule
}

type userMatch uint8

const (
	anyUser userMatch = iota
	anonymousUser
	namedUser
)

type rule struct {
	allow    bool
	actions  Action
	who      userMatch
	username string // namedUser only
	clientID string // "" matches every client id
	topics   []pattern
}

// pattern is one topic pattern of a rule.
type pattern struct {
	raw   string
	subst bool // has %u, %c or %{
}

// NewACL compiles the inline rules of c and, if c.File is set, the rules of
// that file after them. Every rule is checked; an error names the rule (and
// the file).
func NewACL(c config.ACL) (*ACL, error) {
	a := &ACL{}
	for i, r := range c.Rules {
		cr, err := compileRule(r)
		if err != nil {
			return nil, fmt.Errorf("acl.rules[%d]: %w", i, err)
		}
		a.rules = append(a.rules, cr)
	}
	if c.File != "" {
		rules, err := readACLFile(c.File)
		if err != nil {
			return nil, err
		}
		for i, r := range rules {
			cr, err := compileRule(r)
			if err != nil {
				return nil, fmt.Errorf("%s: acl.rules[%d]: %w", c.File, i, err)
			}
			a.rules = append(a.rules, cr)
		}
	}
	return a, nil
}

// readACLFile reads a TOML file that holds only [[acl.rules]] tables, in the
// same form as in the main configuration file.
func readACLFile(path string) ([]config.ACLRule, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: acl.file: %w", ErrACL, err)
	}
	var f struct {
		ACL struct {
			Rules []config.ACLRule `toml:"rules"`
		} `toml:"acl"`
	}
	md, err := toml.Decode(string(data), &f)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrACL, path, err)
	}
	if undecoded := md.Undecoded(); len(undecoded) > 0 {
		keys := make([]string, len(undecoded))
		for i, k := range undecoded {
			keys[i] = k.String()
		}
		sort.Strings(keys)
		return nil, fmt.Errorf("%w: %s: unknown key(s): %s (the file holds only [[acl.rules]])", ErrACL, path, strings.Join(keys, ", "))
	}
	return f.ACL.Rules, nil
}

func compileRule(r config.ACLRule) (rule, error) {
	if errs := config.ValidateACLRule(r); len(errs) > 0 {
		return rule{}, fmt.Errorf("%w: %w", ErrACL, errors.Join(errs...))
	}
	cr := rule{allow: r.Permission == "allow", clientID: r.ClientID}
	switch r.Action {
	case "publish":
		cr.actions = Publish
	case "subscribe":
		cr.actions = Subscribe
	default:
		cr.actions = Publish | Subscribe
	}
	switch r.Username {
	case "", "%any":
		cr.who = anyUser
	case "%anonymous":
		cr.who = anonymousUser
	default:
		cr.who, cr.username = namedUser, r.Username
	}
	for _, t := range r.Topics {
		cr.topics = append(cr.topics, pattern{raw: t, subst: strings.Contains(t, "%u") || strings.Contains(t, "%c") || strings.Contains(t, "%{")})
	}
	return cr, nil
}

// Len returns the number of rules.
func (a *ACL) Len() int {
	if a == nil {
		return 0
	}
	return len(a.rules)
}

// Authorize reports whether the client may do action with topic: a topic
// name for Publish, a topic filter for Subscribe (a "$share/{group}/" prefix
// is removed first; rules apply to the filter). For Subscribe, a rule's
// pattern matches when it covers the filter: every topic name the filter
// matches is matched by the pattern (pattern "fleet/%u/#" covers
// "fleet/alice/+/temp" but not "fleet/#"). The topic is assumed valid.
//
// A Subscribe that Authorize allows may still match topics a deny rule
// before the deciding allow rule names ("#" after a deny of "secret/#"):
// AuthorizeFilter tells when, and AuthorizeDelivery then decides each topic
// delivered.
//
// In a pattern, %u is replaced by an authenticated username, %c by the
// client id and %{name} by the string claim name of the client's token (see
// Identity.Claims). A value that cannot be substituted safely (empty,
// missing, an unauthenticated username, or one containing '+', '#', '/' or
// U+0000, or starting with '$') never widens a pattern: in an allow rule
// such a pattern matches nothing; in a deny rule it matches everything (fail
// closed).
func (a *ACL) Authorize(id Identity, clientID string, action Action, topic string) bool {
	m := modePublish
	if action == Subscribe {
		m, topic = modeSubscribe, stripShare(topic)
	}
	ok, _ := a.decide(id, clientID, m, topic)
	return ok
}

// AuthorizeFilter decides a SUBSCRIBE's topic filter like Authorize, and
// reports in whole whether every topic name the filter matches may be
// delivered without asking AuthorizeDelivery: true unless a deny rule that
// is evaluated before the deciding allow rule overlaps the filter (some
// topic name matches both). whole is false whenever ok is.
func (a *ACL) AuthorizeFilter(id Identity, clientID, filter string) (ok, whole bool) {
	ok, overlap := a.decide(id, clientID, modeSubscribe, stripShare(filter))
	return ok, ok && !overlap
}

// AuthorizeDelivery reports whether a message published to the topic name
// may be delivered to the client: the subscribe rules, each pattern matched
// against the topic name, first match decides. The gateway asks it for the
// messages of subscriptions AuthorizeFilter did not find whole, so a deny
// rule holds for every topic it names whatever filter the client chose.
func (a *ACL) AuthorizeDelivery(id Identity, clientID, topic string) bool {
	ok, _ := a.decide(id, clientID, modeDeliver, topic)
	return ok
}

// mode is what decide matches a rule's patterns against.
type mode uint8

const (
	// modePublish: a topic name against the publish rules.
	modePublish mode = iota
	// modeSubscribe: a topic filter against the subscribe rules; a pattern
	// must cover the filter.
	modeSubscribe
	// modeDeliver: a topic name against the subscribe rules.
	modeDeliver
)

// decide applies the rules in order; the first whose pattern matches
// decides. overlap (modeSubscribe only) reports a deny rule passed over on
// the way that overlaps the filter without covering it.
func (a *ACL) decide(id Identity, clientID string, m mode, topic string) (ok, overlap bool) {
	if a == nil || len(a.rules) == 0 {
		return true, false
	}
	action := Subscribe
	if m == modePublish {
		action = Publish
	}
	var levels []string
	for i := range a.rules {
		r := &a.rules[i]
		if r.actions&action == 0 || !r.matchesClient(id, clientID) {
			continue
		}
		for _, p := range r.topics {
			pat := p.raw
			if p.subst {
				s, ok := substitute(pat, id, clientID)
				if !ok {
					if r.allow {
						continue
					}
					return false, overlap
				}
				pat = s
			}
			if m != modeSubscribe {
				if lts.MatchTopic(pat, topic) {
					return r.allow, false
				}
				continue
			}
			if levels == nil {
				levels = lts.SplitTopic(topic)
			}
			pl := lts.SplitTopic(pat)
			if covers(pl, levels) {
				return r.allow, overlap
			}
			if !r.allow && !overlap && overlaps(pl, levels) {
				overlap = true
			}
		}
	}
	return false, overlap
}

func (r *rule) matchesClient(id Identity, clientID string) bool {
	if r.clientID != "" && r.clientID != clientID {
		return false
	}
	switch r.who {
	case anonymousUser:
		return !id.Authenticated
	case namedUser:
		return id.Authenticated && id.Username == r.username
	}
	return true
}

// substitute replaces %u, %c and %{name} in p, or reports false when a
// needed value is missing or not safe to put into a topic filter.
func substitute(p string, id Identity, clientID string) (string, bool) {
	if strings.Contains(p, "%u") && (!id.Authenticated || !safeLevel(id.Username)) {
		return "", false
	}
	if strings.Contains(p, "%c") && !safeLevel(clientID) {
		return "", false
	}
	// One pass, so a "%c" inside a username is not replaced in turn.
	var b strings.Builder
	b.Grow(len(p) + len(id.Username) + len(clientID))
	for {
		i := strings.IndexByte(p, '%')
		if i < 0 || i == len(p)-1 {
			b.WriteString(p)
			return b.String(), true
		}
		b.WriteString(p[:i])
		switch p[i+1] {
		case 'u':
			b.WriteString(id.Username)
		case 'c':
			b.WriteString(clientID)
		case '{':
			end := strings.IndexByte(p[i:], '}')
			if end < 0 {
				return "", false // config.ValidateACLRule refuses it
			}
			v, ok := claim(id, p[i+2:i+end])
			if !ok {
				return "", false
			}
			b.WriteString(v)
			p = p[i+end+1:]
			continue
		default:
			b.WriteString(p[i : i+2])
		}
		p = p[i+2:]
	}
}

// claim returns the string claim name of the client's JWT, if it is safe to
// put into a topic level.
func claim(id Identity, name string) (string, bool) {
	if !id.Authenticated || id.Token == nil {
		return "", false
	}
	v, ok := id.Token.Claims[name]
	return v, ok && safeLevel(v)
}

// safeLevel: the value stays inside one topic level, adds no wildcard, and
// cannot turn a level into a '$' (system) topic.
func safeLevel(v string) bool {
	return v != "" && v[0] != '$' && !strings.ContainsAny(v, "+#/\x00")
}

// stripShare removes "$share/{group}/" from a shared subscription's filter
// (by the codec's rule, packet.SplitShared).
func stripShare(f string) string {
	if _, rest, ok := packet.SplitShared(f); ok {
		return rest
	}
	return f
}

// covers reports whether every topic name that filter f matches is matched by
// pattern p (both split into levels and valid). '+' in p covers any single
// level of f, including '+'; '#' in p covers the rest of f, including '#' and
// nothing ("a/#" matches "a"); a '#' or '+' in f is covered only by a
// wildcard in p at that level. A pattern that starts with a wildcard does
// not cover a filter whose first level starts with '$' [MQTT-4.7.2-1].
func covers(p, f []string) bool {
	for i := range p {
		if p[i] == "#" {
			return i > 0 || len(f) == 0 || !strings.HasPrefix(f[0], "$")
		}
		if i >= len(f) {
			return false
		}
		switch {
		case f[i] == "#":
			return false
		case p[i] == "+":
			if i == 0 && strings.HasPrefix(f[0], "$") {
				return false
			}
		case p[i] != f[i]:
			return false
		}
	}
	return len(f) == len(p)
}

// overlaps reports whether some topic name matches both filters a and b
// (split into levels and valid), with the rule that a filter starting with
// a wildcard matches no topic starting with '$' [MQTT-4.7.2-1].
func overlaps(a, b []string) bool {
	if len(a) > 0 && len(b) > 0 &&
		(isWildcard(a[0]) && strings.HasPrefix(b[0], "$") || isWildcard(b[0]) && strings.HasPrefix(a[0], "$")) {
		return false
	}
	for i := 0; ; i++ {
		aEnd, bEnd := i >= len(a), i >= len(b)
		if !aEnd && a[i] == "#" || !bEnd && b[i] == "#" {
			return true // "#" also matches the parent level: "a/#" and "a" overlap
		}
		if aEnd || bEnd {
			return aEnd && bEnd
		}
		if a[i] != "+" && b[i] != "+" && a[i] != b[i] {
			return false
		}
	}
}

func isWildcard(level string) bool { return level == "+" || level == "#" }
