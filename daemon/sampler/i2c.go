package sampler

import (
	"periph.io/x/conn/v3/i2c"
	"periph.io/x/host/v3/sysfs"
)

// openI2CDev opens /dev/i2c-N, N being the config's bus number.
func openI2CDev(bus string) (i2c.BusCloser, error) {
	n, err := parseBus(bus)
	if err != nil {
		return nil, err
	}
	return sysfs.NewI2C(n)
}
