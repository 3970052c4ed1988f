// Package auth is the gateway's authentication (who is connecting?),
// authorization (may it publish or subscribe here?) and CONNECT admission
// (may it connect now?). It holds no connections and does no network I/O;
// the gateway calls it while handling CONNECT, PUBLISH and SUBSCRIBE.
// docs/auth.md is the operator's guide; this comment records the design.
//
// # Authentication
//
// Authenticator.Authenticate checks a CONNECT's user name and password
// against the password file (package passwd: bcrypt or PBKDF2-SHA512 hashes)
// and decides anonymous access: auth.allow_anonymous = "loopback" (the
// default) admits clients without a user name only on listeners bound to a
// loopback address (see IsLoopback), true everywhere, false nowhere.
// Refusals wrap ErrBadUserNameOrPassword or ErrNotAuthorized; ConnackCode
// turns them into CONNACK 0x86/0x87 (MQTT 5) or 0x04/0x05 (3.1.1).
//
// # JSON Web Tokens
//
// With auth.jwt.enable, a password that has the form of a JWT (three
// base64url parts, the first starting "eyJ") is checked as one, with
// github.com/golang-jwt/jwt/v5, instead of the password file: the signature
// with the one configured algorithm (HS256 with a secret, RS256 or ES256
// with a PEM public key or a JWKS file re-read when it changes, looked at
// at most once per DefaultCheckInterval), "exp" and "nbf" with
// auth.jwt.leeway, and auth.jwt.verify_claims. The identity carries the
// token's string claims (%{name} in ACL patterns) and its expiry, at which
// the gateway closes the connection (session.ConnectResult.AuthExpires).
// A refused token counts against the failure limits like a wrong password.
// Verified tokens are not cached: a signature check costs microseconds, not
// a password hash's milliseconds.
//
// # Client certificates
//
// On a tls or wss listener with verify_peer, use_identity_as_username names
// a field of the verified client certificate (CertUsername) that becomes the
// authenticated username; the CONNECT's username and password are not used.
//
// # The credential cache
//
// A bcrypt verification at cost 10 takes about 50 ms of CPU, so a gateway
// that fails over and sees 10,000 clients reconnect would spend minutes of
// CPU if every CONNECT hashed. Results are therefore cached:
//
//   - Key: HMAC-SHA256 of (length of user name, user name, password) under a
//     32-byte key drawn from crypto/rand at start-up. No password, and no
//     hash an attacker could test guesses against, is kept.
//   - Verified credentials go to an LRU of auth.cache_size entries, each
//     valid for auth.cache_ttl; refused ones go to a separate LRU of a quarter
//     of that size with the same TTL. Caching refusals is safe because the
//     key covers the exact password and both caches are emptied whenever the
//     file changes; keeping them apart means a flood of wrong passwords
//     cannot evict verified entries.
//   - Concurrent checks of the same credentials share one computation
//     (single flight), and at most GOMAXPROCS hashes run at once, so a
//     reconnect storm completes verifications in arrival order rather than
//     slowing all of them past the clients' timeouts. A waiting caller leaves
//     when its context ends.
//   - An unknown user costs a verification against a dummy hash made with
//     the configured algorithm and cost, so timing does not reveal which
//     users exist.
//
// So a mass reconnect costs one hash per distinct (user, password), not one
// per connection.
//
// # Failure limits
//
// The cache makes repeated credentials cheap, but an attacker sending
// distinct wrong passwords misses it every time, and each miss is a hash
// that legitimate logins queue behind. Failed verifications are therefore
// limited with a token bucket per source address (an IPv6 address counts
// as its /64) and one per user name: auth.max_failures_per_address and
// auth.max_failures_per_username failures a minute, refilled evenly. Over
// either limit, a CONNECT whose credentials are not in the cache of
// verified ones is refused at once with ErrTooManyFailures (CONNACK 0x8A,
// 3.1.1: 0x05), before any hashing; verified credentials still connect, so
// an attack on a user name does not lock out its clients that reconnect
// within auth.cache_ttl. Each limiter is an LRU of at most
// auth.failure_table_size keys, and a key whose bucket refilled is
// forgotten.
//
// # Reloading the password file
//
// There is no background goroutine. Authenticate looks at the file's inode,
// size and modification time at most once per DefaultCheckInterval (one
// caller looks; the others go on meanwhile), and Reload re-reads it at once
// (for example on SIGHUP). When the file changed, it is parsed; both caches
// are emptied and the cache generation advances, so a verification that
// started against the old file cannot fill the new cache. A file that no
// longer parses, or has gone, leaves the previously loaded users in force;
// the error is returned by Reload and shown by Stats.
//
// # Authorization
//
// ACL.Authorize applies acl.rules (then acl.file's rules) in order; the first
// rule whose permission, action, user name, client id and topic pattern match
// decides. No rules: everything is allowed. Any rule: what no rule matches is
// denied. For SUBSCRIBE a pattern must cover the whole filter, not just
// overlap it. %u and %c are substituted only with values that stay inside one
// topic level (see Authorize); otherwise the pattern fails closed.
//
// A deny rule holds for every topic it names, whatever filter a client
// chooses: a filter it covers is refused, and a filter granted by a later
// allow rule that it only overlaps ("#" after "deny secret/#") is granted
// but not whole (AuthorizeFilter). The session then asks AuthorizeDelivery
// for each message of that subscription and drops the denied ones; whole
// subscriptions, the usual case, cost nothing per message.
//
// # Admission
//
// Admission.Admit applies mqtt.max_conn_rate per zone with a token bucket
// (golang.org/x/time/rate). Over it: ErrConnectionRateExceeded, which
// ConnackCode sends as CONNACK 0x9F to MQTT 5 clients and as a plain close
// to 3.1.1 clients.
package auth
