package config

import (
	"errors"
	"fmt"
	"math"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/outpost-iot/outpost/internal/reading"
)

// nodeDecoder walks a YAML node tree against the schema the caller spells
// out key by key, collecting every problem (not just the first) as an error
// that names the line and the dotted key.
type nodeDecoder struct {
	name string // the config file, for error messages
	errs []lineError
}

type lineError struct {
	line int
	err  error
}

// err returns every problem found, in the order of the file's lines.
func (d *nodeDecoder) err() error {
	slices.SortStableFunc(d.errs, func(a, b lineError) int { return a.line - b.line })
	errs := make([]error, len(d.errs))
	for i, e := range d.errs {
		errs[i] = e.err
	}
	return errors.Join(errs...)
}

func (d *nodeDecoder) errorf(n *yaml.Node, key, format string, args ...any) {
	d.errs = append(d.errs, lineError{n.Line, fmt.Errorf("%sline %d: %s: %s", d.prefix(), n.Line, key, fmt.Sprintf(format, args...))})
}

// prefix names the file at the start of an error.
func (d *nodeDecoder) prefix() string {
	if d.name == "" {
		return ""
	}
	return d.name + ": "
}

// fields decodes the mapping n at key path, calling the handler of each key
// it holds. Unknown and repeated keys are errors; a key that is absent keeps
// its default.
func (d *nodeDecoder) fields(n *yaml.Node, path string, handlers map[string]func(key string, v *yaml.Node)) {
	n = resolve(n)
	if n.Kind != yaml.MappingNode {
		if isNull(n) {
			return // "spool:" with nothing under it: all defaults
		}
		d.errorf(n, path, "must be a mapping of keys")
		return
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		key := join(path, k.Value)
		h, ok := handlers[k.Value]
		switch {
		case !ok:
			known := make([]string, 0, len(handlers))
			for name := range handlers {
				known = append(known, name)
			}
			slices.Sort(known)
			d.errorf(k, key, "unknown key (known here: %s)", strings.Join(known, ", "))
		case seen[k.Value]:
			d.errorf(k, key, "given twice")
		default:
			seen[k.Value] = true
			h(key, resolve(v))
		}
	}
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// resolve follows YAML aliases.
func resolve(n *yaml.Node) *yaml.Node {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	if n.Kind == yaml.DocumentNode && len(n.Content) == 1 {
		return resolve(n.Content[0])
	}
	return n
}

func isNull(n *yaml.Node) bool { return n.Kind == yaml.ScalarNode && n.Tag == "!!null" }

func (d *nodeDecoder) scalar(key string, v *yaml.Node) (string, bool) {
	if v.Kind != yaml.ScalarNode || isNull(v) {
		d.errorf(v, key, "must be a single value")
		return "", false
	}
	return v.Value, true
}

func (d *nodeDecoder) str(dst *string) func(string, *yaml.Node) {
	return func(key string, v *yaml.Node) {
		if s, ok := d.scalar(key, v); ok {
			*dst = s
		}
	}
}

func (d *nodeDecoder) oneOf(dst *string, allowed ...string) func(string, *yaml.Node) {
	return func(key string, v *yaml.Node) {
		s, ok := d.scalar(key, v)
		if !ok {
			return
		}
		if !slices.Contains(allowed, s) {
			d.errorf(v, key, "%q is not one of %s", s, strings.Join(allowed, ", "))
			return
		}
		*dst = s
	}
}

// duration accepts Go durations ("1s", "500ms", "1h30m") and a bare 0.
func (d *nodeDecoder) duration(dst *time.Duration) func(string, *yaml.Node) {
	return func(key string, v *yaml.Node) {
		s, ok := d.scalar(key, v)
		if !ok {
			return
		}
		if s == "0" {
			*dst = 0
			return
		}
		t, err := time.ParseDuration(s)
		if err != nil {
			if _, nerr := strconv.ParseFloat(s, 64); nerr == nil {
				d.errorf(v, key, "%q needs a unit, e.g. %ss", s, s)
				return
			}
			d.errorf(v, key, "%q is not a duration (e.g. 500ms, 10s, 1h)", s)
			return
		}
		if t < 0 {
			d.errorf(v, key, "%q must not be negative", s)
			return
		}
		*dst = t
	}
}

func (d *nodeDecoder) size(dst *reading.Size) func(string, *yaml.Node) {
	return func(key string, v *yaml.Node) {
		s, ok := d.scalar(key, v)
		if !ok {
			return
		}
		n, err := reading.ParseSize(s)
		if err != nil {
			d.errorf(v, key, "%v", err)
			return
		}
		*dst = n
	}
}

func (d *nodeDecoder) integer(dst *int, min, max int) func(string, *yaml.Node) {
	return func(key string, v *yaml.Node) {
		s, ok := d.scalar(key, v)
		if !ok {
			return
		}
		n, err := strconv.ParseInt(s, 0, 64)
		if err != nil || n < int64(min) || n > int64(max) {
			d.errorf(v, key, "%q is not a whole number from %d to %d", s, min, max)
			return
		}
		*dst = int(n)
	}
}

func (d *nodeDecoder) number(dst *float64, min float64) func(string, *yaml.Node) {
	return func(key string, v *yaml.Node) {
		s, ok := d.scalar(key, v)
		if !ok {
			return
		}
		f, err := strconv.ParseFloat(s, 64)
		if err != nil || math.IsNaN(f) || math.IsInf(f, 0) || f < min {
			d.errorf(v, key, "%q is not a number >= %v", s, min)
			return
		}
		*dst = f
	}
}

// file records a path that must name a readable regular file.
func (d *nodeDecoder) file(dst *string) func(string, *yaml.Node) {
	return d.checkedFile(dst, false)
}

// secretFile records a path that must name a file not readable by others
// (mode 0640 root:outpost, say): secrets never sit world-readable.
func (d *nodeDecoder) secretFile(dst *string) func(string, *yaml.Node) {
	return d.checkedFile(dst, true)
}

func (d *nodeDecoder) checkedFile(dst *string, secret bool) func(string, *yaml.Node) {
	return func(key string, v *yaml.Node) {
		p, ok := d.scalar(key, v)
		if !ok {
			return
		}
		*dst = p
		if p == "" {
			return
		}
		fi, err := os.Stat(p)
		switch {
		case err != nil:
			d.errorf(v, key, "%v", err)
		case !fi.Mode().IsRegular():
			d.errorf(v, key, "%s is not a regular file", p)
		case secret && fi.Mode().Perm()&0o007 != 0:
			d.errorf(v, key, "%s is accessible by others (mode %04o); it holds a secret: chmod o-rwx %s", p, fi.Mode().Perm(), p)
		}
	}
}

// url records an absolute URL with one of the given schemes.
func (d *nodeDecoder) url(dst *string, schemes ...string) func(string, *yaml.Node) {
	return func(key string, v *yaml.Node) {
		s, ok := d.scalar(key, v)
		if !ok || s == "" {
			return
		}
		u, err := url.Parse(s)
		if err != nil || u.Host == "" || !slices.Contains(schemes, u.Scheme) {
			d.errorf(v, key, "%s is not a URL of the form %s://host[:port]", RedactURL(s), strings.Join(schemes, "|"))
			return
		}
		if _, hasPassword := u.User.Password(); hasPassword {
			d.errorf(v, key, "%s carries a password; put secrets in a file (token_file, password_file)", RedactURL(s))
			return
		}
		*dst = s
	}
}

// RedactURL hides a password in a URL's user info.
func RedactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.User == nil {
		return s
	}
	if _, ok := u.User.Password(); ok {
		u.User = url.UserPassword(u.User.Username(), "REDACTED")
	}
	return u.String()
}
