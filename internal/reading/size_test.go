package reading

import "testing"

func TestParseSize(t *testing.T) {
	for in, want := range map[string]Size{
		"1048576": 1 << 20, "512MiB": 512 << 20, "1.5GiB": 3 << 29, "64KB": 64000,
		"256 KiB": 256 << 10, "7B": 7, "2GB": 2e9, "4mib": 4 << 20, "3kb": 3000,
		// The edge config's cases, from when it had its own parser.
		"1GiB": 1 << 30, "1MB": 1e6, "4096": 4096, "2 MiB": 2 << 20,
	} {
		got, err := ParseSize(in)
		if err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "MiB", "-1KiB", "1.5.2MiB", "ten", "1e30GiB", "NaN", "nanKiB", "Inf", "+InfMiB", "12 parsecs", "0x10"} {
		if got, err := ParseSize(in); err == nil {
			t.Errorf("ParseSize(%q) = %d, nil; want an error", in, got)
		}
	}
	for in, want := range map[Size]string{3 << 29: "1536MiB", 512 << 20: "512MiB", 1000: "1000B", 2 * KiB: "2KiB"} {
		if got := in.String(); got != want {
			t.Errorf("Size(%d).String() = %q; want %q", int64(in), got, want)
		}
	}
}
