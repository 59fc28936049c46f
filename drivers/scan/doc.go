// Package scan finds what is attached to a board: the I²C buses and the
// addresses that answer on them, named with the chips that usually sit at
// those addresses, and the probes on the kernel's 1-Wire bus. It backs
// `outpost sensors scan`.
//
// Probing is as safe as i2cdetect's default: addresses 0x08–0x77 only, an
// SMBus quick write except at 0x30–0x37 and 0x50–0x5f where EEPROMs live
// (a quick write can corrupt some of them) and a one-byte read is used
// instead, and addresses bound to a kernel driver are reported as in use,
// not touched.
//
// Device and sysfs roots are parameters so tests can point them at a
// testdata tree.
package scan
