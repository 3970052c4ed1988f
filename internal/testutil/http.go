package testutil

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

// Get GETs url and returns the status code and the body; a failed request
// fails the test.
func Get(t testing.TB, url string) (status int, body string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return resp.StatusCode, string(b)
}

// Metrics returns the Prometheus text a daemon serves on its HTTP address
// addr (host:port); anything but 200 fails the test.
func Metrics(t testing.TB, addr string) string {
	t.Helper()
	status, body := Get(t, "http://"+addr+"/metrics")
	if status != http.StatusOK {
		t.Fatalf("GET http://%s/metrics: status %d", addr, status)
	}
	return body
}

// Lines returns the lines of s that contain sub, for a failure message.
func Lines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
