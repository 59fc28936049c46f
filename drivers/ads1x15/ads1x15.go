package ads1x15

import (
	"errors"
	"fmt"
	"math"
	"slices"

	"periph.io/x/conn/v3"
	"periph.io/x/conn/v3/i2c"
	"periph.io/x/conn/v3/physic"
	"periph.io/x/devices/v3/ads1x15"
)

// Input selects what a channel measures.
type Input = ads1x15.Channel

// Inputs, single-ended (against GND) and differential.
const (
	A0      = ads1x15.Channel0
	A1      = ads1x15.Channel1
	A2      = ads1x15.Channel2
	A3      = ads1x15.Channel3
	A0MinA1 = ads1x15.Channel0Minus1
	A0MinA3 = ads1x15.Channel0Minus3
	A1MinA3 = ads1x15.Channel1Minus3
	A2MinA3 = ads1x15.Channel2Minus3
)

// Ranges are the full-scale ranges of the programmable gain amplifier, in
// volts.
var Ranges = []float64{6.144, 4.096, 2.048, 1.024, 0.512, 0.256}

// ValidAddr reports whether addr is an address the chips can have (ADDR
// pin to GND, VDD, SDA or SCL).
func ValidAddr(addr uint16) bool { return addr >= 0x48 && addr <= 0x4B }

// Channel configures one reading of a Dev.
type Channel struct {
	Name  string  // measurement name, e.g. "moisture"
	Input Input   // e.g. A0
	Range float64 // full scale in volts, one of Ranges; 0 means 4.096
	Scale float64 // value = volts × Scale + Offset; 0 means 1
	// Offset is added after scaling.
	Offset float64
	Unit   string // unit of the scaled value; "" means V
}

// Value is one channel's reading.
type Value struct {
	Name  string
	Unit  string
	Volts float64
	Value float64 // Volts × Scale + Offset
}

// Dev is an ADS1115 or ADS1015 on an I²C bus. The bus is the caller's.
type Dev struct {
	dev   *ads1x15.Dev
	chip  string // "ads1115", "ads1015"
	bus   string
	addr  uint16
	chans []Channel
	pins  []ads1x15.PinADC
}

// New configures the chip ("ads1115" or "ads1015") at addr on bus with the
// given channels. It does not talk to the chip: the first Read does.
func New(bus i2c.Bus, addr uint16, chip string, chans []Channel) (*Dev, error) {
	if !ValidAddr(addr) {
		return nil, fmt.Errorf("%s: address %#x is not valid (want 0x48 to 0x4b)", chip, addr)
	}
	if len(chans) == 0 {
		return nil, fmt.Errorf("%s: no channels", chip)
	}
	opts := ads1x15.Opts{I2cAddress: addr}
	var dev *ads1x15.Dev
	var err error
	switch chip {
	case "ads1115":
		dev, err = ads1x15.NewADS1115(bus, &opts)
	case "ads1015":
		dev, err = ads1x15.NewADS1015(bus, &opts)
	default:
		return nil, fmt.Errorf("ads1x15: unknown chip %q (want ads1115 or ads1015)", chip)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", chip, err)
	}
	d := &Dev{dev: dev, chip: chip, bus: bus.String(), addr: addr, chans: slices.Clone(chans)}
	for i := range d.chans {
		c := &d.chans[i]
		if c.Range == 0 {
			c.Range = 4.096
		}
		if !slices.Contains(Ranges, c.Range) {
			return nil, fmt.Errorf("%s: channel %s: range %v V is not one of %v", chip, c.Name, c.Range, Ranges)
		}
		if c.Scale == 0 {
			c.Scale = 1
		}
		if c.Unit == "" {
			c.Unit = "V"
		}
		if math.IsNaN(c.Scale) || math.IsInf(c.Scale, 0) || math.IsNaN(c.Offset) || math.IsInf(c.Offset, 0) {
			return nil, fmt.Errorf("%s: channel %s: scale and offset must be finite", chip, c.Name)
		}
		mv := physic.ElectricPotential(math.Round(c.Range*1000)) * physic.MilliVolt
		p, err := dev.PinForChannel(c.Input, mv, 128*physic.Hertz, ads1x15.BestQuality)
		if err != nil {
			return nil, fmt.Errorf("%s: channel %s: %w", chip, c.Name, err)
		}
		d.pins = append(d.pins, p)
	}
	return d, nil
}

// String returns e.g. "ads1115 on I2C1 at 0x48".
func (d *Dev) String() string { return fmt.Sprintf("%s on %s at %#x", d.chip, d.bus, d.addr) }

// Read converts every channel in turn and appends their values to dst. It
// stops at the first channel that fails.
func (d *Dev) Read(dst []Value) ([]Value, error) {
	for i, p := range d.pins {
		c := &d.chans[i]
		s, err := p.Read()
		if err != nil {
			return dst, fmt.Errorf("%s: channel %s: %w", d, c.Name, err)
		}
		v := float64(s.V) / float64(physic.Volt)
		dst = append(dst, Value{Name: c.Name, Unit: c.Unit, Volts: v, Value: v*c.Scale + c.Offset})
	}
	return dst, nil
}

// Halt stops any continuous read.
func (d *Dev) Halt() error {
	var errs []error
	for _, p := range d.pins {
		errs = append(errs, p.Halt())
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%s: %w", d, err)
	}
	return nil
}

// Interface guards.
var _ conn.Resource = (*Dev)(nil)
