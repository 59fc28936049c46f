package bme280_test

import (
	"fmt"
	"log"

	"periph.io/x/host/v3/sysfs"

	"github.com/outpost-iot/outpost/drivers/bme280"
)

func Example() {
	// main opens the bus and closes it; the driver never does.
	bus, err := sysfs.NewI2C(1) // /dev/i2c-1
	if err != nil {
		log.Fatal(err)
	}
	defer bus.Close()
	d, err := bme280.New(bus, bme280.AddrLow)
	if err != nil {
		log.Fatal(err)
	}
	defer d.Halt()
	v, err := d.Sense()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s: %.2f °C %.2f hPa %.1f %%RH\n", d, v.Temperature, v.Pressure, v.Humidity)
}
