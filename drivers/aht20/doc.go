// Package aht20 reads the Aosong AHT20 temperature and humidity sensor
// (also on AHT21/AHT25 boards) at I²C address 0x38, through periph's
// devices/v3/aht20 driver with its CRC check on.
//
// Datasheet: http://www.aosong.com/userfiles/files/media/Data%20Sheet%20AHT20.pdf
package aht20
