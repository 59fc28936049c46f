package thermal_test

import (
	"fmt"
	"log"

	"github.com/outpost-iot/outpost/drivers/thermal"
)

func Example() {
	// "/sys" on a live system.
	d, err := thermal.New("testdata/sys", 0)
	if err != nil {
		log.Fatal(err)
	}
	c, err := d.Read()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s: %.1f °C\n", d, c)
	// Output: thermal_zone0(cpu-thermal): 48.3 °C
}
