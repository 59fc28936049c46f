package testserver

import (
	"strings"
	"testing"
)

// recorder records what missing asks of a test, without ending the goroutine.
type recorder struct {
	testing.TB
	call, msg string
}

func (r *recorder) Helper()           {}
func (r *recorder) Skip(args ...any)  { r.record("Skip", args) }
func (r *recorder) Fatal(args ...any) { r.record("Fatal", args) }
func (r *recorder) record(call string, args []any) {
	if r.call == "" {
		r.call, r.msg = call, args[0].(string)
	}
}

func TestMissingServerSkipsOrFails(t *testing.T) {
	for _, tc := range []struct{ env, call string }{{"", "Skip"}, {"0", "Skip"}, {"1", "Fatal"}} {
		t.Setenv(RequireEnv, tc.env)
		r := &recorder{}
		missing(r, "mosquitto", "mosquitto")
		if r.call != tc.call || !strings.Contains(r.msg, "apt-get install mosquitto") {
			t.Errorf("%s=%q: %s(%q), want %s with the install command", RequireEnv, tc.env, r.call, r.msg, tc.call)
		}
	}
}

func TestPasswordFileRejectsBadNames(t *testing.T) {
	for _, name := range []string{"", "a:b", "a\nb"} {
		if _, err := passwordFile(map[string]string{name: "pw"}); err == nil {
			t.Errorf("user name %q accepted", name)
		}
	}
}
