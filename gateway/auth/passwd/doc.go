// Package passwd reads and writes Strata's password file and creates and
// verifies its password hashes. The gateway (package auth) reads the file;
// tools/mqttpasswd edits it.
//
// # File format
//
// UTF-8 text, one user per line:
//
//	# comment
//	alice:$2b$10$N9qo8uLOickgx2ZMRZoMyeIjZAgcfl7p92ldGxad68LJZdL17lhWy
//	bob:$pbkdf2-sha512$i=210000$c2FsdHNhbHRzYWx0c2FsdA$<86 characters of base64>
//
// The username is everything before the last ':' of the line (hashes never
// contain ':'), taken verbatim: it may contain ':' and inner spaces, but not
// control characters, leading or trailing white space, or a leading '#'.
// Blank lines and lines whose first non-space character is '#' are comments.
// Trailing white space and a CR (CRLF files) are ignored. A line that is not
// a comment and not a valid entry, or a username given twice, is a load error
// naming the line; nothing is skipped silently.
//
// # Hashes
//
// bcrypt: the usual 60-character "$2a$", "$2b$" or "$2y$" string with the
// cost in it. bcrypt reads only the first 72 bytes of a password, so Hash
// refuses longer passwords and Verify never matches one.
//
// PBKDF2-HMAC-SHA512, in the PHC string style:
//
//	$pbkdf2-sha512$i=<iterations>$<salt>$<derived key>
//
// with salt and key in standard base64 without padding (RFC 4648 section 4,
// no '='). Hash draws a 16-byte salt from crypto/rand and derives 64 bytes;
// Verify accepts salts of 8..64 bytes, keys of 16..64 bytes and 1..10,000,000
// iterations. The derived keys are compared in constant time (bcrypt's own
// comparison is constant time too).
package passwd
