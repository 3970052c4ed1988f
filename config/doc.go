// Package config is the one configuration schema that dsd and the gateway
// both read: a TOML file whose keys use the seed documents' dotted names
// (durable_sessions.*, durable_storage.messages.*, mqtt.*, zone.<z>.*).
//
// Both programs parse the whole schema and ignore the sections they do not
// use; a key that the schema does not know is an error, so a typo never
// silently leaves a default in force. Durations accept the units ms, s, m, h
// and d ("1d", "500ms") or a bare integer number of seconds; sizes accept
// bytes as an integer or a string with KB, MB, GB (powers of 1000) or KiB,
// MiB, GiB (powers of 1024).
//
// Use Default for the built-in values, Load to read a file over them,
// Validate before use and String to print the effective configuration at
// start-up. docs/configuration.md documents every key.
package config
