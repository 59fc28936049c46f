package reading

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Size is a number of bytes, written in the edge's config and the
// receiver's flags alike as 512MiB, 1.5GiB, 256KiB, 64KB or a plain number.
// The wire's limits (a batch's bytes, a line's bytes) are sizes, so both
// ends read them with the one parser here.
type Size int64

// Binary size units.
const (
	KiB Size = 1 << 10
	MiB Size = 1 << 20
	GiB Size = 1 << 30
)

var sizeUnits = []struct {
	suffix string
	mult   Size
}{
	{"KiB", KiB}, {"MiB", MiB}, {"GiB", GiB},
	{"KB", 1000}, {"MB", 1000 * 1000}, {"GB", 1000 * 1000 * 1000},
	{"B", 1},
}

// ParseSize parses a size such as "512MiB", "1.5GiB", "64KB" or "1048576".
// Units are matched without regard to case ("4mib" is 4MiB).
func ParseSize(s string) (Size, error) {
	num, mult := strings.TrimSpace(s), Size(1)
	for _, u := range sizeUnits {
		if n := len(num) - len(u.suffix); n >= 0 && strings.EqualFold(num[n:], u.suffix) {
			num, mult = strings.TrimSpace(num[:n]), u.mult
			break
		}
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil || math.IsNaN(f) || f < 0 || f*float64(mult) > float64(1<<62) {
		return 0, fmt.Errorf("%q is not a size (e.g. 512MiB, 256KiB, 1GB or a number of bytes)", s)
	}
	return Size(f * float64(mult)), nil
}

// String writes the size in the largest binary unit that divides it.
func (s Size) String() string {
	for _, u := range []struct {
		suffix string
		mult   Size
	}{{"GiB", GiB}, {"MiB", MiB}, {"KiB", KiB}} {
		if s >= u.mult && s%u.mult == 0 {
			return strconv.FormatInt(int64(s/u.mult), 10) + u.suffix
		}
	}
	return strconv.FormatInt(int64(s), 10) + "B"
}
