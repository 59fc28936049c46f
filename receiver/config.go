package receiver

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/outpost-iot/outpost/internal/reading"
)

// Config is what the serve command is given: its flags, which Validate
// checks, each problem naming the flag (--listen and so on) that sets
// the field.
type Config struct {
	Listen         string // host:port
	DatabaseURL    string // see OpenStore
	AdminTokenFile string // "" disables the query API
	// Limits of one batch (HTTP and MQTT). Validate wants them set (the
	// flags' defaults are Options' defaults); Serve takes zero values for
	// those defaults.
	MaxBodyBytes, MaxDecodedBytes int64
	MaxLineBytes, MaxLines        int
	// MQTT ingest: see MQTTOptions. MQTTBroker "" disables it.
	MQTTBroker, MQTTClientID, MQTTPrefix, MQTTGroup string
	MQTTUsername, MQTTPassword                      string
	// MQTTPasswordFile names the file Validate reads MQTTPassword from
	// ("" for none).
	MQTTPasswordFile string
	// TLSCert and TLSKey, both or neither, are the PEM files of the
	// certificate served over HTTPS (re-read when they change).
	TLSCert, TLSKey string
	// Retention deletes readings received longer ago than this (0:
	// keep them forever).
	Retention time.Duration
	Logger    *slog.Logger
	// Ready, when set, is called with the listening address once the
	// store is migrated and the server accepts connections.
	Ready func(addr net.Addr)
}

// minLineBytes is the smallest line limit allowed: a reading with short
// names takes about 150 bytes.
const minLineBytes = 256

// Validate checks c as the serve command's flags set it, and reads the
// MQTT password from MQTTPasswordFile into MQTTPassword, so that a
// missing or open file is reported with the rest. It reports every
// problem at once (joined), each naming its flag.
func (c *Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	body, decoded, line := reading.Size(c.MaxBodyBytes), reading.Size(c.MaxDecodedBytes), reading.Size(c.MaxLineBytes)
	if body < reading.KiB {
		bad("--max-body-bytes: %s is below the minimum of 1KiB", sizeText(body))
	}
	if decoded < body {
		bad("--max-decoded-bytes: %s is below --max-body-bytes (%s): a plain body could never reach its limit", sizeText(decoded), sizeText(body))
	}
	if line < minLineBytes {
		bad("--max-line-bytes: %s is below the minimum of %d bytes", sizeText(line), minLineBytes)
	}
	if line > decoded {
		bad("--max-line-bytes: %s is above --max-decoded-bytes (%s)", sizeText(line), sizeText(decoded))
	}
	if c.MaxLines < 1 {
		bad("--max-lines: %d; want at least 1", c.MaxLines)
	}
	if c.MQTTBroker != "" {
		u, err := url.Parse(c.MQTTBroker)
		switch {
		case err != nil:
			bad("--mqtt-broker: %v", err)
		case u.Scheme == "" || u.Host == "":
			bad("--mqtt-broker: %q is not a URL such as tcp://host:1883", u.Redacted())
		default:
			if _, ok := u.User.Password(); ok {
				bad("--mqtt-broker: the URL carries a password; put it in a file named by --mqtt-password-file instead")
			}
		}
	}
	if err := checkTopic(c.MQTTPrefix, true); err != nil {
		bad("--mqtt-prefix: %q %v", c.MQTTPrefix, err)
	}
	if err := checkTopic(c.MQTTGroup, false); err != nil {
		bad("--mqtt-group: %q %v", c.MQTTGroup, err)
	}
	if c.MQTTClientID == "" || len(c.MQTTClientID) > 256 || !utf8.ValidString(c.MQTTClientID) {
		bad("--mqtt-client-id: %q; want 1 to 256 bytes of UTF-8", c.MQTTClientID)
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		bad("--tls-cert and --tls-key go together: give both or neither")
	} else if c.TLSCert != "" {
		if _, err := newCertFiles(c.TLSCert, c.TLSKey, nil); err != nil {
			bad("--tls-cert, --tls-key: %v", err)
		}
	}
	if c.Retention < 0 {
		bad("--retention: %v is negative; want 0 (keep forever) or a duration such as 90d or 720h", c.Retention)
	} else if c.Retention > 0 && c.Retention < time.Hour {
		bad("--retention: %v is below the minimum of 1h", c.Retention)
	}
	if c.AdminTokenFile != "" {
		if _, err := ReadAdminToken(c.AdminTokenFile); err != nil {
			bad("--admin-token-file: %v", err)
		}
	}
	if c.MQTTPasswordFile != "" {
		if c.MQTTUsername == "" {
			bad("--mqtt-password-file needs --mqtt-username")
		}
		pw, err := ReadSecretFile(c.MQTTPasswordFile)
		if err != nil {
			bad("--mqtt-password-file: %v", err)
		}
		c.MQTTPassword = pw
	}
	return errors.Join(errs...)
}

// sizeText writes a size as the flags take it: in the largest binary unit
// that divides it (8MiB), or in bytes without a unit (300).
func sizeText(s reading.Size) string {
	if t := s.String(); strings.HasSuffix(t, "iB") {
		return t
	}
	return strconv.FormatInt(int64(s), 10)
}

// checkTopic checks a topic prefix (levels allowed) or a shared-subscription
// group name (one level).
func checkTopic(s string, levels bool) error {
	switch {
	case s == "":
		return errors.New("is empty")
	case strings.ContainsAny(s, "+#\x00"):
		return errors.New("holds an MQTT wildcard (+ or #) or NUL")
	case !levels && strings.Contains(s, "/"):
		return errors.New("holds a /; want one topic level")
	case strings.HasPrefix(s, "$"):
		return errors.New("starts with $, which brokers reserve")
	case strings.HasPrefix(s, "/") || strings.HasSuffix(s, "/") || strings.Contains(s, "//"):
		return errors.New("has an empty topic level")
	case !utf8.ValidString(s):
		return errors.New("is not UTF-8")
	}
	return nil
}
