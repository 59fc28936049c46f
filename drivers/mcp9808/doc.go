// Package mcp9808 reads the Microchip MCP9808 precision temperature sensor
// (±0.25 °C typical, 0.0625 °C resolution) over I²C, addresses 0x18–0x1f,
// through periph's devices/v3/mcp9808 driver.
//
// Datasheet: https://ww1.microchip.com/downloads/en/DeviceDoc/25095A.pdf
package mcp9808
