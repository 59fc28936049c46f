package sim_test

import (
	"fmt"
	"time"

	"github.com/outpost-iot/outpost/drivers/sim"
)

func Example() {
	// Spikes and dropouts off, so that every read has every series.
	d, err := sim.New("demo", sim.Opts{Series: 3, Seed: 1, SpikeRate: -1, DropoutRate: -1})
	if err != nil {
		panic(err)
	}
	for _, v := range d.Read(time.Date(2026, 11, 22, 15, 0, 0, 0, time.UTC), nil) {
		fmt.Printf("demo.%s = %v\n", sim.SeriesName(v.Series), v.Value)
	}
	// Output:
	// demo.s0 = 27.43
	// demo.s1 = 67.85
	// demo.s2 = 1003.53
}
