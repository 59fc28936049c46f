// Package bme280 reads the Bosch BME280 (temperature, pressure, humidity)
// and BMP280 (temperature, pressure) over I²C through periph's
// devices/v3/bmxx80 driver, which detects the chip from its id register.
//
// The chip runs in forced mode with 1× oversampling and the IIR filter off,
// Bosch's recommended setting for weather monitoring (BME280 datasheet
// §3.5.1): one conversion per read, asleep in between.
//
// Datasheets:
//
//   - BME280: https://www.bosch-sensortec.com/media/boschsensortec/downloads/datasheets/bst-bme280-ds002.pdf
//   - BMP280: https://www.bosch-sensortec.com/media/boschsensortec/downloads/datasheets/bst-bmp280-ds001.pdf
package bme280
