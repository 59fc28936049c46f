// Package daemon is the edge daemon: it wires the sensors, the spool and
// the uplink together from a loaded configuration (package config) and
// runs them under systemd; it also serves the status socket and the spool
// commands of the command line.
package daemon
