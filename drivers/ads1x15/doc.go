// Package ads1x15 reads the TI ADS1115 (16-bit) and ADS1015 (12-bit)
// four-channel ADCs over I²C through periph's devices/v3/ads1x15 driver, and
// turns each channel's voltage into engineering units with a linear scale
// and offset: value = volts × scale + offset (soil moisture %, bar, …).
//
// Each read runs one single-shot conversion per channel at 128 samples/s
// (8 ms per channel), the chip powering down in between.
//
// Datasheets:
//
//   - ADS1115: https://www.ti.com/lit/ds/symlink/ads1115.pdf
//   - ADS1015: https://www.ti.com/lit/ds/symlink/ads1015.pdf
package ads1x15
