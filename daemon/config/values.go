package config

import (
	neturl "net/url"
	"os"
	"slices"
	"strings"

	"github.com/outpost-iot/outpost/daemon/internal/strictyaml"
	"github.com/outpost-iot/outpost/internal/reading"
)

// The kinds of value the config has beyond strictyaml's: sizes, URLs and
// files, each checked where it is read so that its problem names its key.

// size reads a byte size such as 512MiB, or def.
func size(m *strictyaml.Map, key string, def reading.Size) reading.Size {
	s, ok := m.Scalar(key)
	if !ok {
		return def
	}
	n, err := reading.ParseSize(s)
	if err != nil {
		m.Errorf(key, "%v", err)
		return def
	}
	return n
}

// file reads a path that must name a regular file, or def. A secret file
// must not be readable by others (mode 0640 root:outpost, say): secrets
// never sit world-readable.
func file(m *strictyaml.Map, key, def string, secret bool) string {
	p, ok := m.Scalar(key)
	if !ok {
		return def
	}
	if p == "" {
		return p
	}
	fi, err := os.Stat(p)
	switch {
	case err != nil:
		m.Errorf(key, "%v", err)
	case !fi.Mode().IsRegular():
		m.Errorf(key, "%s is not a regular file", p)
	case secret && fi.Mode().Perm()&0o007 != 0:
		m.Errorf(key, "%s is accessible by others (mode %04o); it holds a secret: chmod o-rwx %s", p, fi.Mode().Perm(), p)
	}
	return p
}

// url reads an absolute URL with one of the given schemes, or def. A
// password in it is refused: secrets go in files.
func url(m *strictyaml.Map, key, def string, schemes ...string) string {
	s, ok := m.Scalar(key)
	if !ok || s == "" {
		return def
	}
	u, err := neturl.Parse(s)
	if err != nil || u.Host == "" || !slices.Contains(schemes, u.Scheme) {
		m.Errorf(key, "%s is not a URL of the form %s://host[:port]", RedactURL(s), strings.Join(schemes, "|"))
		return def
	}
	if _, hasPassword := u.User.Password(); hasPassword {
		m.Errorf(key, "%s carries a password; put secrets in a file (token_file, password_file)", RedactURL(s))
		return def
	}
	return s
}

// RedactURL hides a password in a URL's user info, for logs.
func RedactURL(s string) string {
	u, err := neturl.Parse(s)
	if err != nil || u.User == nil {
		return s
	}
	if _, ok := u.User.Password(); ok {
		u.User = neturl.UserPassword(u.User.Username(), "REDACTED")
	}
	return u.String()
}
