package config

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// ErrInvalid is wrapped by every error about a value that cannot be parsed or
// is out of range.
var ErrInvalid = errors.New("config: invalid value")

// Duration is a time.Duration that reads "1d", "10s", "500ms" or an integer
// number of seconds, and prints in the shortest exact unit.
type Duration time.Duration

// Std returns the value as a time.Duration.
func (d Duration) Std() time.Duration { return time.Duration(d) }

// UnmarshalTOML implements toml.Unmarshaler.
func (d *Duration) UnmarshalTOML(v any) error {
	switch v := v.(type) {
	case int64:
		if v < 0 || v > math.MaxInt64/int64(time.Second) {
			return fmt.Errorf("%w: duration %d s out of range", ErrInvalid, v)
		}
		*d = Duration(time.Duration(v) * time.Second)
		return nil
	case string:
		p, err := ParseDuration(v)
		if err != nil {
			return err
		}
		*d = p
		return nil
	default:
		return fmt.Errorf("%w: duration must be a string such as \"10s\" or an integer of seconds, got %T", ErrInvalid, v)
	}
}

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// String prints the duration in the largest unit that divides it exactly.
func (d Duration) String() string {
	v := time.Duration(d)
	units := []struct {
		name string
		size time.Duration
	}{{"d", 24 * time.Hour}, {"h", time.Hour}, {"m", time.Minute}, {"s", time.Second}, {"ms", time.Millisecond}, {"us", time.Microsecond}}
	if v == 0 {
		return "0s"
	}
	for _, u := range units {
		if v%u.size == 0 {
			return strconv.FormatInt(int64(v/u.size), 10) + u.name
		}
	}
	return v.String()
}

// ParseDuration reads a non-negative duration with a unit suffix (ms, s, m, h, d;
// Go's own forms such as "1h30m" are accepted too).
func ParseDuration(s string) (Duration, error) {
	s = strings.TrimSpace(s)
	if n, ok := strings.CutSuffix(s, "d"); ok {
		days, err := strconv.ParseUint(n, 10, 32)
		if err != nil {
			return 0, fmt.Errorf("%w: duration %q: want a whole number of days such as \"1d\"", ErrInvalid, s)
		}
		return Duration(time.Duration(days) * 24 * time.Hour), nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%w: duration %q: use units ms, s, m, h or d", ErrInvalid, s)
	}
	if v < 0 {
		return 0, fmt.Errorf("%w: duration %q is negative", ErrInvalid, s)
	}
	return Duration(v), nil
}

// Size is a byte count that reads "4MiB", "1MB" or an integer.
type Size int64

// UnmarshalTOML implements toml.Unmarshaler.
func (z *Size) UnmarshalTOML(v any) error {
	switch v := v.(type) {
	case int64:
		if v < 0 {
			return fmt.Errorf("%w: size %d is negative", ErrInvalid, v)
		}
		*z = Size(v)
		return nil
	case string:
		p, err := ParseSize(v)
		if err != nil {
			return err
		}
		*z = p
		return nil
	default:
		return fmt.Errorf("%w: size must be a string such as \"4MiB\" or an integer of bytes, got %T", ErrInvalid, v)
	}
}

// MarshalText implements encoding.TextMarshaler.
func (z Size) MarshalText() ([]byte, error) { return []byte(z.String()), nil }

var sizeUnits = []struct {
	name string
	mult int64
}{
	{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10},
	{"GB", 1e9}, {"MB", 1e6}, {"KB", 1e3}, {"B", 1},
}

// String prints the size in the largest binary unit that divides it exactly.
func (z Size) String() string {
	for _, u := range sizeUnits[:3] {
		if z != 0 && int64(z)%u.mult == 0 {
			return strconv.FormatInt(int64(z)/u.mult, 10) + u.name
		}
	}
	return strconv.FormatInt(int64(z), 10) + "B"
}

// ParseSize reads a byte count with an optional unit (B, KB, MB, GB, KiB, MiB, GiB).
func ParseSize(s string) (Size, error) {
	s = strings.TrimSpace(s)
	for _, u := range sizeUnits {
		if n, ok := strings.CutSuffix(s, u.name); ok {
			v, err := strconv.ParseInt(strings.TrimSpace(n), 10, 64)
			if err != nil || v < 0 || v > math.MaxInt64/u.mult {
				return 0, fmt.Errorf("%w: size %q: want a whole non-negative number such as \"4MiB\"", ErrInvalid, s)
			}
			return Size(v * u.mult), nil
		}
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil || v < 0 {
		return 0, fmt.Errorf("%w: size %q: use units B, KB, MB, GB, KiB, MiB or GiB", ErrInvalid, s)
	}
	return Size(v), nil
}
