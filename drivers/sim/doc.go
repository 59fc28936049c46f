// Package sim is a simulated sensor: it produces realistic synthetic series
// (a daily cycle, noise, occasional spikes and dropouts) for demos, tests and
// load generation.
//
// A Dev is deterministic: two devices with the same Opts that are read at the
// same times return the same values. Values are rounded to 0.01, the
// resolution of a typical environmental sensor, so wire-size and spool-size
// figures measured with it mean something.
package sim
