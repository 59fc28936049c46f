package daemon

import (
	"context"

	"github.com/outpost-iot/outpost/daemon/sampler"
	"github.com/outpost-iot/outpost/internal/reading"
	"github.com/outpost-iot/outpost/spool"
)

// spoolSink hands the sampler's readings to the spool, with the boot they
// were taken in.
type spoolSink struct {
	spool *spool.Spool
	boot  spool.BootID
}

func (k *spoolSink) Add(ctx context.Context, s sampler.Sample) error {
	_, err := k.spool.Append(ctx, reading.Reading{
		Sensor: s.Sensor, Unit: s.Unit, Value: s.Value, Labels: s.Labels,
		Time: s.Time, Unsynced: s.Unsynced,
	}, spool.Clock{Boot: k.boot, BootTime: s.BootTime})
	return err
}
