//go:build !linux

package scan

import "errors"

func openDev(path string) (prober, error) {
	return nil, errors.New(path + ": I²C scanning needs Linux")
}
