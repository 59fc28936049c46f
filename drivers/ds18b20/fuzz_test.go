package ds18b20

import (
	"math"
	"testing"
)

// FuzzParseW1Slave: any file content gives a finite temperature or an
// error, never a panic, and never the 85 °C power-on-reset value.
func FuzzParseW1Slave(f *testing.F) {
	f.Add("72 01 4b 46 7f ff 0e 10 57 : crc=57 YES\n72 01 4b 46 7f ff 0e 10 57 t=23125\n")
	f.Add("50 05 4b 46 7f ff 0c 10 1c : crc=1c YES\n50 05 4b 46 7f ff 0c 10 1c t=85000\n")
	f.Add("72 01 4b 46 7f ff 0e 10 ff : crc=a4 NO\n72 01 4b 46 7f ff 0e 10 ff t=23125\n")
	f.Fuzz(func(t *testing.T, s string) {
		c, err := parseW1Slave([]byte(s))
		if err != nil {
			return
		}
		if math.IsNaN(c) || math.IsInf(c, 0) || c == 85 {
			t.Fatalf("parseW1Slave(%q) = %v", s, c)
		}
	})
}
