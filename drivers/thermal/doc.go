// Package thermal reads a temperature from the Linux thermal sysfs
// interface, /sys/class/thermal/thermal_zoneN/temp, in millidegrees Celsius:
// on a Raspberry Pi, zone 0 is the SoC ("cpu-thermal").
//
// Kernel documentation: https://docs.kernel.org/driver-api/thermal/sysfs-api.html
package thermal
