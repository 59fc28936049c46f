package scan

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Linux i2c-dev ioctls and SMBus constants (include/uapi/linux/i2c-dev.h,
// include/uapi/linux/i2c.h).
const (
	ioctlSlave = 0x0703 // I2C_SLAVE: set the address; EBUSY if a driver holds it
	ioctlFuncs = 0x0705 // I2C_FUNCS: the adapter's functionality mask
	ioctlSMBus = 0x0720 // I2C_SMBUS: one SMBus transfer

	funcSMBusQuick    = 0x00010000 // I2C_FUNC_SMBUS_QUICK
	funcSMBusReadByte = 0x00020000 // I2C_FUNC_SMBUS_READ_BYTE

	smbusWrite = 0
	smbusRead  = 1
	smbusQuick = 0 // I2C_SMBUS_QUICK transfer size
	smbusByte  = 1 // I2C_SMBUS_BYTE transfer size
)

// smbusIoctlData is struct i2c_smbus_ioctl_data.
type smbusIoctlData struct {
	readWrite uint8
	command   uint8
	size      uint32
	data      unsafe.Pointer // *union i2c_smbus_data (34 bytes)
}

// devBus is an open /dev/i2c-N.
type devBus struct {
	f     *os.File
	funcs uintptr
	data  *[34]byte
}

func openDev(path string) (prober, error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	b := &devBus{f: f, data: new([34]byte)}
	if err := b.ioctlPtr(ioctlFuncs, unsafe.Pointer(&b.funcs)); err != nil {
		f.Close()
		return nil, fmt.Errorf("%s is not an I²C adapter: %w", path, err)
	}
	if b.funcs&(funcSMBusQuick|funcSMBusReadByte) == 0 {
		f.Close()
		return nil, fmt.Errorf("%s: the adapter can do neither SMBus quick nor read byte: cannot probe safely", path)
	}
	return b, nil
}

// ioctl passes arg as an integer.
func (b *devBus) ioctl(req, arg uintptr) error {
	_, _, e := unix.Syscall(unix.SYS_IOCTL, b.f.Fd(), req, arg)
	if e != 0 {
		return e
	}
	return nil
}

// ioctlPtr passes p as a pointer; the conversion to uintptr happens in the
// Syscall call itself, as unsafe.Pointer's rules require.
func (b *devBus) ioctlPtr(req uintptr, p unsafe.Pointer) error {
	_, _, e := unix.Syscall(unix.SYS_IOCTL, b.f.Fd(), req, uintptr(p))
	runtime.KeepAlive(b)
	if e != 0 {
		return e
	}
	return nil
}

func (b *devBus) canQuick() bool { return b.funcs&funcSMBusQuick != 0 }

func (b *devBus) probe(addr uint16, m mode) (status, error) {
	if err := b.ioctl(ioctlSlave, uintptr(addr)); err != nil {
		if errors.Is(err, unix.EBUSY) {
			return busy, nil
		}
		return absent, fmt.Errorf("set address: %w", err)
	}
	d := smbusIoctlData{readWrite: smbusWrite, size: smbusQuick}
	if m == readByte {
		if b.funcs&funcSMBusReadByte == 0 {
			return absent, nil // i2cdetect skips these too
		}
		d = smbusIoctlData{readWrite: smbusRead, size: smbusByte, data: unsafe.Pointer(b.data)}
	}
	// A NACK (ENXIO, EREMOTEIO, EIO, ETIMEDOUT…) means nobody is there.
	if err := b.ioctlPtr(ioctlSMBus, unsafe.Pointer(&d)); err != nil {
		return absent, nil
	}
	return present, nil
}

func (b *devBus) Close() error { return b.f.Close() }
