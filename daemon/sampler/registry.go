package sampler

import (
	"time"

	"github.com/outpost-iot/outpost/daemon/internal/strictyaml"
)

// driver is one kind of sensor the config can name.
type driver struct {
	// minInterval is the shortest interval the driver accepts.
	minInterval time.Duration
	// decode reads the driver's own keys of the config entry m of the
	// sensor named sensor.
	decode func(m *strictyaml.Map, sensor string) any
	// open opens a sensor from its decoded spec.
	open func(SensorSpec, *env) (sensor, error)
}

// drivers maps the config's `driver:` names to the drivers: the one place
// where a new kind of sensor is wired in.
var drivers = map[string]driver{
	"sim":       {minInterval: time.Millisecond, decode: decodeSim, open: openSim},
	"thermal":   {minInterval: 100 * time.Millisecond, decode: decodeThermal, open: openThermal},
	"bme280":    {minInterval: 100 * time.Millisecond, decode: decodeBME280("BME280"), open: openBME280},
	"bmp280":    {minInterval: 100 * time.Millisecond, decode: decodeBME280("BMP280"), open: openBME280},
	"ds18b20":   {minInterval: time.Second, decode: decodeDS18B20, open: openDS18B20},
	"ads1x15":   {minInterval: 100 * time.Millisecond, decode: decodeADS1x15, open: openADS1x15},
	"gpiocount": {minInterval: time.Second, decode: decodeGPIOCount, open: openGPIOCount},
	"aht20":     {minInterval: time.Second, decode: decodeAHT20, open: openAHT20},
	"mcp9808":   {minInterval: 250 * time.Millisecond, decode: decodeMCP9808, open: openMCP9808},
	"ina219":    {minInterval: 100 * time.Millisecond, decode: decodeINA219, open: openINA219},
}
