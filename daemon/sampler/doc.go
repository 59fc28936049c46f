// Package sampler runs Outpost's sensors: each configured sensor on its own
// goroutine and schedule. A small adapter per driver (driver_*.go) turns
// the driver's own values into readings (reading.Reading: sensor name,
// unit, value); the sampler stamps each with the moment it was taken (wall
// clock and whether it was synchronised, and CLOCK_BOOTTIME beside it) and
// hands it to a Sink, the spool.
//
// A sensor reads at once when it starts, then on the wall-clock grid of its
// interval (a 10s sensor at :00, :10, :20 …). A sensor that fails (missing
// device, NACK, CRC error, timeout) is closed, retried after a backoff that
// starts at its interval and doubles up to Options.MaxBackoff (default one
// minute), re-opened, and never stops the others. It is logged once per
// change of state, not once per failed tick. Status reports, per sensor,
// the last values and their time, the last error, the error count and the
// state; Stuck names the sensors hung in a driver call, for the watchdog.
//
// # Config
//
// DecodeSensors decodes the config's sensors list strictly, with the
// config's own strictyaml decoder, so that the problems of every entry are
// reported with the rest of the file's, in the same words. Every entry has
// name (required; [A-Za-z0-9_-], at most 64, no two alike; samples are
// named "<name>.<measurement>"), driver (required) and interval (a Go
// duration, default 1m, at least the driver's minimum). The drivers,
// listed in registry.go, and their own keys:
//
//	sim        series (1–10000, default 1), seed (default 1), spike_rate and dropout_rate
//	           (probability per read and series, 0–1, 0 = none; default 0.002 and 0.001).
//	           Measurements s0, s1, … (units C, %, hPa in turn). Minimum interval 1ms.
//	thermal    zone (the N of /sys/class/thermal/thermal_zoneN, default 0).
//	           Measurement temperature (C). Minimum 100ms.
//	bme280,    bus (required: 1 for /dev/i2c-1), address (0x76 or 0x77, default 0x76).
//	bmp280     Measurements temperature (C), pressure (hPa), humidity (%, BME280 only).
//	           Minimum 100ms.
//	ds18b20    probes: a list of 1-Wire ids (measurements named by id) or a mapping
//	           from measurement name to id; default every 28-* probe at open.
//	           Unit C. Minimum 1s.
//	ads1x15    bus (required), address (0x48–0x4b, default 0x48), chip (ads1115 or
//	           ads1015, default ads1115), channels (required): a list of {name
//	           (required), input (0–3, or 0-1, 0-3, 1-3, 2-3 differential; required),
//	           range (full scale: 6.144, 4.096, 2.048, 1.024, 0.512 or 0.256 V; default
//	           4.096), scale (default 1), offset (default 0), unit (default V)};
//	           value = volts × scale + offset. Minimum 100ms.
//	gpiocount  line (required: a line name such as GPIO17, or with chip an offset),
//	           chip (e.g. gpiochip0), edge (falling, rising or both; default falling),
//	           pull (up, down or none; default up), debounce (default 0; e.g. 5ms),
//	           scale (per pulse, default 1), unit (default pulses), rate_unit
//	           (default unit + "/s"). Measurements count (scaled pulses in the
//	           interval) and rate (count per second). Minimum 1s.
//	aht20      bus (required). Measurements temperature (C), humidity (%). Minimum 1s.
//	mcp9808    bus (required), address (0x18–0x1f, default 0x18).
//	           Measurement temperature (C). Minimum 250ms.
//	ina219     bus (required), address (0x40–0x4f, default 0x40), shunt_ohms (default
//	           0.1), max_current (A, default 3.2). Measurements voltage (V),
//	           current (A), power (W). Minimum 100ms.
//
// For example:
//
//	sensors:
//	  - {name: greenhouse, driver: bme280, bus: "1", address: 0x76, interval: 10s}
//	  - {name: demo, driver: sim, interval: 100ms, series: 4, seed: 1}
//	  - {name: rain, driver: gpiocount, line: GPIO17, debounce: 5ms, scale: 0.2794, unit: mm, interval: 5m}
package sampler
