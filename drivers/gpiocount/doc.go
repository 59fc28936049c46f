// Package gpiocount counts pulses on a GPIO input: tipping-bucket rain
// gauges, cup anemometers, flow and energy meters with a pulse output.
//
// Edges are watched on their own goroutine; an edge closer to the previous
// counted one than the debounce time is contact bounce and is ignored (a
// reed switch bounces for a few milliseconds). Each Read reports the pulses
// since the previous Read, scaled (e.g. 0.2794 mm of rain per tip of a
// Misol/Davis-style gauge, 2.4 km/h per Hz for a common cup anemometer),
// and their rate per second.
//
// On Linux the line is opened through the GPIO character device
// (/dev/gpiochipN, periph.io/x/host/v3/gpioioctl); the sysfs GPIO interface
// is gone from current kernels. Kernel documentation:
// https://docs.kernel.org/userspace-api/gpio/chardev.html
package gpiocount
