package session

// Every test of the package checks that a targeted settleAll visits every
// stream that is ready to settle (deliver_settle.go).
func init() { checkSettling = true }
