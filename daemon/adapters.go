package daemon

import (
	"context"

	"github.com/outpost-iot/outpost/daemon/sampler"
	"github.com/outpost-iot/outpost/internal/reading"
	"github.com/outpost-iot/outpost/spool"
	"github.com/outpost-iot/outpost/uplink"
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

// outbox is the spool as the uplink's drain loop sees it.
type outbox struct {
	spool *spool.Spool
}

func (o *outbox) Next(maxReadings, maxBytes int) (*uplink.Batch, error) {
	b, err := o.spool.Next(maxReadings, maxBytes)
	if err != nil || b == nil {
		return nil, err
	}
	return &uplink.Batch{Readings: b.Readings, Dropped: b.Dropped}, nil
}

func (o *outbox) NextFresh(maxReadings, maxBytes, minBacklog int) (*uplink.Batch, error) {
	b, err := o.spool.NextFresh(maxReadings, maxBytes, minBacklog)
	if err != nil || b == nil {
		return nil, err
	}
	return &uplink.Batch{Readings: b.Readings, Dropped: b.Dropped}, nil
}

func (o *outbox) Ack(b *uplink.Batch) error { return o.spool.Ack(toSpool(b)) }

func (o *outbox) DeadLetter(ctx context.Context, b *uplink.Batch, reason string) error {
	return o.spool.DeadLetter(ctx, toSpool(b), reason)
}

func (o *outbox) Committed() <-chan struct{} { return o.spool.Committed() }

// toSpool gives the spool back a batch (or part of one) it handed out.
func toSpool(b *uplink.Batch) *spool.Batch {
	sb := &spool.Batch{Readings: b.Readings, Dropped: b.Dropped}
	switch {
	case len(b.Readings) > 0:
		sb.Stream = b.Readings[0].Stream
		sb.From, sb.To = b.Readings[0].Seq, b.Readings[len(b.Readings)-1].Seq
	case len(b.Dropped) > 0:
		sb.Stream = b.Dropped[0].Stream
	}
	return sb
}
