package gpiocount_test

import (
	"fmt"
	"log"
	"time"

	"github.com/outpost-iot/outpost/drivers/gpiocount"
)

func Example() {
	// A tipping-bucket rain gauge between GPIO17 and ground.
	d, err := gpiocount.Open("", "GPIO17", gpiocount.Opts{Debounce: 5 * time.Millisecond, Scale: 0.2794})
	if err != nil {
		log.Fatal(err)
	}
	defer d.Close()
	time.Sleep(time.Minute)
	v := d.Read()
	fmt.Printf("%.1f mm in the last %v (%d tips)\n", v.Count, v.Interval.Round(time.Second), v.Pulses)
}
