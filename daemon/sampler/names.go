package sampler

import "github.com/outpost-iot/outpost/internal/reading"

// names gives the readings of one configured sensor their names,
// "<sensor name>.<measurement>" (e.g. "greenhouse.temperature"), making
// each name once so that a read allocates none. An adapter's Read uses it
// from its sensor's one goroutine.
type names struct {
	prefix string // "<sensor name>."
	made   map[string]string
}

func newNames(sensor string) *names {
	return &names{prefix: sensor + ".", made: map[string]string{}}
}

// of returns the reading name of a measurement.
func (n *names) of(measurement string) string {
	name, ok := n.made[measurement]
	if !ok {
		name = n.prefix + measurement
		n.made[measurement] = name
	}
	return name
}

// reading returns the reading of one measurement, unstamped.
func (n *names) reading(measurement, unit string, value float64) reading.Reading {
	return reading.Reading{Sensor: n.of(measurement), Unit: unit, Value: value}
}
