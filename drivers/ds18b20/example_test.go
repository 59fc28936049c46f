package ds18b20_test

import (
	"fmt"
	"log"

	"github.com/outpost-iot/outpost/drivers/ds18b20"
)

func Example() {
	// "/sys" on a live system; nil ids takes every probe found.
	d, err := ds18b20.New("testdata/sys", []string{"28-000005e2fdc3", "28-3c01d607d4c2"})
	if err != nil {
		log.Fatal(err)
	}
	temps, err := d.Read(nil)
	for _, t := range temps {
		fmt.Printf("%s: %.3f °C\n", t.ID, t.Celsius)
	}
	fmt.Println(err) // the other probe failed its CRC
	// Output:
	// 28-000005e2fdc3: 23.125 °C
	// ds18b20: 28-3c01d607d4c2: CRC mismatch
}
