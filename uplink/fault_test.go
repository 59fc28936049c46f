package uplink

import (
	"context"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/outpost-iot/outpost/internal/faultproxy"
	"github.com/outpost-iot/outpost/internal/reading"
)

// ackCheckingOutbox fails the test if a batch is acknowledged before the
// receiver stored every reading in it.
type ackCheckingOutbox struct {
	*memOutbox
	t  *testing.T
	rc *receiver
}

func (o *ackCheckingOutbox) Ack(b *reading.Batch) error {
	o.rc.mu.Lock()
	for _, r := range b.Readings {
		if o.rc.stored[r.Seq] == 0 {
			o.t.Errorf("seq %d acknowledged before the receiver stored it", r.Seq)
		}
	}
	o.rc.mu.Unlock()
	return o.memOutbox.Ack(b)
}

// TestDrainThroughFaultyNetwork drains through a proxy that drops
// connections mid-request, blackholes them, delays them, and resets them
// after the request reached the receiver: every reading arrives, none is
// acknowledged before it is stored, and duplicates happen only where an
// answer was lost.
func TestDrainThroughFaultyNetwork(t *testing.T) {
	rc := &receiver{t: t, stored: map[uint64]int{}}
	srv := httptest.NewUnstartedServer(rc)
	srv.Config.SetKeepAlivesEnabled(false) // a fresh connection, and a fresh fault, per request
	srv.Start()
	defer srv.Close()
	proxy, err := faultproxy.New(srv.Listener.Addr().String(), 42)
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.Close()
	proxy.SetFaults(faultproxy.Faults{DropMidRequest: 0.1, Blackhole: 0.05, ResetBeforeAnswer: 0.1, Delayed: 0.1, Delay: 20 * time.Millisecond})

	const n, batch = 3000, 100
	o := &ackCheckingOutbox{memOutbox: newMemOutbox(n, nil), t: t, rc: rc}
	sender := newSender(t, "http://"+proxy.Addr(), HTTPOptions{Timeout: 500 * time.Millisecond})
	var sends atomic.Int32
	d := &Drainer{Outbox: o, Sender: countingSender{sender, &sends}, MaxReadings: batch, InFlight: 4,
		Backoff: Backoff{Base: 5 * time.Millisecond, Max: 50 * time.Millisecond}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	deadline := time.Now().Add(60 * time.Second)
	for !o.settled() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
	if !o.settled() {
		t.Fatalf("not settled within 60s: %+v", d.Status())
	}
	o.checkFates(t)

	counts := proxy.Counts()
	rc.mu.Lock()
	defer rc.mu.Unlock()
	dups := 0
	for seq := uint64(1); seq <= n; seq++ {
		switch c := rc.stored[seq]; {
		case c == 0:
			t.Fatalf("seq %d never reached the receiver", seq)
		case c > 1:
			dups += c - 1
		}
	}
	lostAnswers := counts[faultproxy.ResetBeforeAnswer] + counts[faultproxy.Blackhole] // a blackhole may not reach the receiver at all
	if dups > lostAnswers*batch {
		t.Errorf("%d duplicates; at most %d lost answers × %d readings can explain them", dups, lostAnswers, batch)
	}
	if counts[faultproxy.ResetBeforeAnswer] > 0 && dups == 0 {
		t.Errorf("answers were lost after the receiver stored batches, yet no duplicates: the test lost its teeth")
	}
	t.Logf("%d sends; faults %v; %d duplicate readings stored", sends.Load(), counts, dups)
}

type countingSender struct {
	Sender
	n *atomic.Int32
}

func (c countingSender) Send(ctx context.Context, b *reading.Batch) Result {
	c.n.Add(1)
	return c.Sender.Send(ctx, b)
}
