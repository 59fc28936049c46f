package thermal

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"periph.io/x/conn/v3"
)

// ErrNoZone is returned by New when the thermal zone does not exist.
var ErrNoZone = errors.New("thermal: no such thermal zone")

// Dev reads one thermal zone.
type Dev struct {
	zone int
	path string // …/thermal_zoneN/temp
	kind string // contents of …/thermal_zoneN/type, e.g. "cpu-thermal"
}

// New opens thermal zone zone under sysRoot ("/sys" on a live system; tests
// point it at a testdata tree).
func New(sysRoot string, zone int) (*Dev, error) {
	if zone < 0 {
		return nil, fmt.Errorf("thermal: zone must be >= 0, got %d", zone)
	}
	dir := filepath.Join(sysRoot, "class", "thermal", "thermal_zone"+strconv.Itoa(zone))
	d := &Dev{zone: zone, path: filepath.Join(dir, "temp")}
	if _, err := os.Stat(d.path); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%w: %s", ErrNoZone, dir)
		}
		return nil, fmt.Errorf("thermal: %w", err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "type")); err == nil {
		d.kind = string(bytes.TrimSpace(b))
	}
	return d, nil
}

// String returns e.g. "thermal_zone0(cpu-thermal)".
func (d *Dev) String() string {
	if d.kind == "" {
		return "thermal_zone" + strconv.Itoa(d.zone)
	}
	return "thermal_zone" + strconv.Itoa(d.zone) + "(" + d.kind + ")"
}

// Type returns the zone's type as the kernel names it, e.g. "cpu-thermal",
// or "" when the kernel does not say.
func (d *Dev) Type() string { return d.kind }

// Read returns the zone's temperature in degrees Celsius.
func (d *Dev) Read() (float64, error) {
	b, err := os.ReadFile(d.path)
	if err != nil {
		return 0, fmt.Errorf("thermal: %w", err)
	}
	milli, err := strconv.ParseInt(string(bytes.TrimSpace(b)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("thermal: %s: %w", d.path, err)
	}
	return float64(milli) / 1000, nil
}

// Halt does nothing: the kernel samples the zone.
func (d *Dev) Halt() error { return nil }

// Interface guards.
var _ conn.Resource = (*Dev)(nil)
