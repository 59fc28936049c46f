package sampler

import (
	"context"
	"errors"
	"fmt"

	"periph.io/x/conn/v3/i2c"

	"github.com/outpost-iot/outpost/daemon/internal/strictyaml"
	"github.com/outpost-iot/outpost/drivers/bme280"
	"github.com/outpost-iot/outpost/internal/reading"
)

// bme280 and bmp280 keys: bus (required: "1" for /dev/i2c-1), address
// (0x76 or 0x77, default 0x76). Measurements: temperature (C), pressure
// (hPa) and, on a BME280, humidity (%).
type bme280Opts struct {
	bus  string
	addr uint16
}

func decodeBME280(chip string) func(*strictyaml.Map, string) any {
	return func(m *strictyaml.Map, _ string) any {
		return &bme280Opts{
			bus:  i2cBus(m),
			addr: address(m, "address", bme280.AddrLow, chip, bme280.ValidAddr, "0x76 or 0x77"),
		}
	}
}

type bme280Sensor struct {
	bus   i2c.BusCloser
	dev   *bme280.Dev
	names *names
}

func openBME280(spec SensorSpec, e *env) (sensor, error) {
	o := spec.opts.(*bme280Opts)
	bus, err := e.openI2C(o.bus)
	if err != nil {
		return nil, err
	}
	dev, err := bme280.New(bus, o.addr)
	if err != nil {
		return nil, errors.Join(err, bus.Close())
	}
	return &bme280Sensor{bus: bus, dev: dev, names: newNames(spec.Name)}, nil
}

func (s *bme280Sensor) String() string { return s.dev.String() }

func (s *bme280Sensor) Close() error {
	return errors.Join(s.dev.Halt(), s.bus.Close())
}

func (s *bme280Sensor) Read(_ context.Context, dst []reading.Reading) ([]reading.Reading, error) {
	v, err := s.dev.Sense()
	if err != nil {
		return dst, err
	}
	dst = append(dst,
		s.names.reading("temperature", "C", v.Temperature),
		s.names.reading("pressure", "hPa", v.Pressure))
	if v.HasHumidity {
		dst = append(dst, s.names.reading("humidity", "%", v.Humidity))
	}
	return dst, nil
}

// i2cBus reads the required bus key: the number N of /dev/i2c-N, as a
// string ("1") or a number (1).
func i2cBus(m *strictyaml.Map) string {
	v, ok := m.Scalar("bus")
	if !ok {
		if !m.Has("bus") {
			m.Errorf("bus", "missing (the N of /dev/i2c-N; 1 on a Raspberry Pi)")
		}
		return ""
	}
	if _, err := parseBus(v); err != nil {
		m.Errorf("bus", "%v", err)
	}
	return v
}

func parseBus(v string) (int, error) {
	var n int
	if _, err := fmt.Sscanf(v, "%d", &n); err != nil || n < 0 || fmt.Sprint(n) != v {
		return 0, fmt.Errorf("%q is not an I²C bus number such as 1 (for /dev/i2c-1)", v)
	}
	return n, nil
}

// Interface guards.
var _ sensor = (*bme280Sensor)(nil)
