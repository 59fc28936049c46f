// Package ds18b20 reads DS18B20 1-Wire temperature probes through the Linux
// kernel's w1-therm driver, as a stock Raspberry Pi OS exposes them with
// dtoverlay=w1-gpio: one directory per probe under /sys/bus/w1/devices,
// named <family>-<serial> (family 28 for the DS18B20), each with a w1_slave
// file holding the scratchpad, the kernel's CRC verdict and the temperature.
//
// Several probes share one bus. A scratchpad that fails its CRC, the
// power-on-reset value 85 °C (the probe lost power and never converted) and
// an all-zero scratchpad (nothing answered) are read errors, never readings.
//
// Datasheet: https://www.analog.com/media/en/technical-documentation/data-sheets/DS18B20.pdf
// Kernel: https://docs.kernel.org/w1/slaves/w1_therm.html
//
// periph's devices/v3/ds18b20 drives the bus itself through a
// conn/v3/onewire bus (the kernel w1 netlink or a DS248x bridge); this
// package uses the sysfs files instead because that is what the stock
// kernel has already bound.
package ds18b20
