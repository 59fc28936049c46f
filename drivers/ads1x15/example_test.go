package ads1x15_test

import (
	"fmt"
	"log"

	"periph.io/x/host/v3/sysfs"

	"github.com/outpost-iot/outpost/drivers/ads1x15"
)

func Example() {
	bus, err := sysfs.NewI2C(1)
	if err != nil {
		log.Fatal(err)
	}
	defer bus.Close()
	d, err := ads1x15.New(bus, 0x48, "ads1115", []ads1x15.Channel{
		// A capacitive soil probe: 2.8 V dry (0 %), 1.2 V wet (100 %).
		{Name: "moisture", Input: ads1x15.A0, Scale: -62.5, Offset: 175, Unit: "%"},
		// A 0.5–4.5 V pressure transducer for 0–10 bar.
		{Name: "pressure", Input: ads1x15.A1, Range: 6.144, Scale: 2.5, Offset: -1.25, Unit: "bar"},
	})
	if err != nil {
		log.Fatal(err)
	}
	vals, err := d.Read(nil)
	if err != nil {
		log.Fatal(err)
	}
	for _, v := range vals {
		fmt.Printf("%s: %.2f %s (%.4f V)\n", v.Name, v.Value, v.Unit, v.Volts)
	}
}
