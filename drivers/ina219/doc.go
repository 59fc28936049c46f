// Package ina219 reads the TI INA219 current and power monitor over I²C
// (addresses 0x40–0x4f) through periph's devices/v3/ina219 driver: bus
// voltage, shunt voltage, current and power, e.g. of a solar panel or the
// battery of an off-grid station.
//
// Datasheet: https://www.ti.com/lit/ds/symlink/ina219.pdf
package ina219
