package auth

import (
	"net"
	"strings"
)

// IsLoopback reports whether a listener bind address ("127.0.0.1:1883",
// "[::1]:1883", "localhost:1883") is on a loopback interface only. An empty
// host (":1883") or an unspecified address binds every interface and is not.
func IsLoopback(bind string) bool {
	host, _, err := net.SplitHostPort(bind)
	if err != nil {
		host = bind
	}
	host = strings.Trim(host, "[]")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
