package uplink

import (
	"context"
	"encoding/json"
	"path/filepath"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/outpost-iot/outpost/internal/reading"
	"github.com/outpost-iot/outpost/internal/testserver"
	"github.com/outpost-iot/outpost/spool"
)

// The broker-kill tests show why confirm: receiver is the default. The
// consumer of the readings has a persistent session (its subscription is
// in the broker's snapshot) but is offline while the device drains, so the
// broker holds the batches for it. Mosquitto runs with its default
// persistence: a snapshot every 30 minutes and at a clean stop, never
// per message. It is SIGKILLed before its next snapshot and started again;
// then the consumer comes back. A reading is lost when it is neither in
// the spool nor ever reached the consumer.

const killReadings = 2000

// TestMQTTConfirmBrokerLosesOnBrokerKill: with confirm: broker the device
// deletes each batch on the broker's PUBACK, and the SIGKILL takes the
// batches the broker held: readings are lost.
func TestMQTTConfirmBrokerLosesOnBrokerKill(t *testing.T) {
	r := brokerKillRun(t, true, true)
	if r.deleted != killReadings {
		t.Errorf("the spool deleted %d of %d readings on PUBACK; want all", r.deleted, killReadings)
	}
	if r.lost == 0 {
		t.Errorf("no reading lost with confirm: broker (consumer received %d, spool kept %d): the broker must have persisted what it acknowledged, so this test no longer shows what the receipts are for",
			r.received, r.kept)
	}
}

// TestMQTTConfirmReceiverSurvivesBrokerKill: with confirm: receiver the
// same kill loses nothing: what the consumer never receipted stays in the
// spool and is sent again until it is receipted.
func TestMQTTConfirmReceiverSurvivesBrokerKill(t *testing.T) {
	r := brokerKillRun(t, false, true)
	if r.lost != 0 {
		t.Errorf("%d readings lost with confirm: receiver; want none", r.lost)
	}
	if r.heldAtKill == 0 {
		t.Error("the broker held no batch for the consumer when it was killed: the kill tested nothing")
	}
	if r.kept != 0 || r.deleted != killReadings {
		t.Errorf("the spool kept %d and deleted %d readings; want every one of %d receipted and deleted", r.kept, r.deleted, killReadings)
	}
}

// TestMQTTConfirmBrokerKeepsOnCleanRestart is the control: the same run
// with a clean stop (which writes the snapshot) instead of the SIGKILL
// keeps what the broker acknowledged, and the consumer receives it from
// its restored session. So the loss above (all of it) is what the broker
// acknowledged but had not persisted, not a flaw of the setup. Mosquitto
// 2.0.11 itself has been seen to lose one batch in 2 of about 15 clean
// restarts here (a batch of 100; once 12 in one run whose wait was too
// short), and 3 batches (300 of 2000) once on a machine loaded by other
// builds, so the control asks for most, not all (the kill loses every
// one): even a clean broker restart is no substitute for the receiver's
// receipt.
func TestMQTTConfirmBrokerKeepsOnCleanRestart(t *testing.T) {
	r := brokerKillRun(t, true, false)
	if r.lost > killReadings/4 {
		t.Errorf("after a clean restart %d readings lost, %d received; want nearly all %d received", r.lost, r.received, killReadings)
	}
}

type killResult struct {
	heldAtKill int // distinct readings published to the broker before the kill
	deleted    int // readings acknowledged (deleted from the spool) in all
	received   int // distinct readings the consumer received
	kept       int // readings still in the spool at the end
	lost       int // neither kept nor received
}

// brokerKillRun drains killReadings through a broker that is SIGKILLed
// (kill) or stopped cleanly while it holds batches for the offline
// consumer, and accounts for every reading.
func brokerKillRun(t *testing.T, confirmBroker, kill bool) killResult {
	broker := testserver.StartMosquitto(t, testserver.MosquittoOptions{}) // default autosave: every 30 min
	consumer := newKillConsumer(t, broker)
	consumer.connect(t)
	consumer.client.Disconnect(100)
	// A clean stop writes the snapshot: the consumer's session and its
	// subscription survive any restart from now on, the queue as it is now
	// (empty).
	broker.Stop()
	broker.Start()
	spy := newKillConsumer(t, broker) // clean session, online: sees what the broker accepted
	spy.clean = true
	spy.id = "test-spy"
	spy.connect(t)

	path := filepath.Join(t.TempDir(), "spool.db")
	fillSpool(t, path, "pi-07", killReadings)
	sp, err := spool.Open(spool.Options{Path: path, Device: "pi-07", CommitInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close(context.Background())
	o := newSpoolOutbox(sp, killReadings)
	m := newMQTTSender(t, MQTTOptions{Broker: broker.URL(), ConfirmBroker: confirmBroker, Gzip: true, ReceiptTimeout: time.Second})
	waitConnected(t, m)
	d := &Drainer{Outbox: o, Sender: m, MaxReadings: 100, InFlight: 4, Backoff: Backoff{Base: 50 * time.Millisecond, Max: 500 * time.Millisecond}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { d.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	// Drain until the broker holds batches for the offline consumer: with
	// confirm: broker all of them (all acknowledged), with confirm:
	// receiver the 4 in flight (none acknowledged: no receipts).
	want := killReadings
	if !confirmBroker {
		want = 4 * 100
	}
	waitFor(t, 30*time.Second, "the broker to accept the batches", func() bool {
		return spy.distinct() >= want && (!confirmBroker || o.acked.Load() >= killReadings)
	})
	var r killResult
	r.heldAtKill = spy.distinct()
	if !confirmBroker && o.acked.Load() != 0 {
		t.Fatalf("%d readings acknowledged with no receipt", o.acked.Load())
	}
	if kill {
		broker.Kill()
	} else {
		// Seen here (1 run in 6, only since the drain got fast enough to
		// fill the queue within the second the broker started in): a
		// clean stop in that same second restored none of the queue for
		// the offline consumer. Not understood; the control waits the
		// second out (29 of 30 runs passed here with the wait, against 5
		// of 6 without).
		time.Sleep(1100 * time.Millisecond)
		broker.Stop()
	}
	broker.Start()
	consumer.connect(t)

	switch {
	case confirmBroker && !kill:
		// The control: the snapshot holds every batch, and the restarted
		// broker delivers them all, though not always in one burst on a
		// loaded machine (a quiet spell is no sign that it is done).
		deadline := time.Now().Add(30 * time.Second)
		for consumer.distinct() < killReadings && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
	case confirmBroker:
		// Nothing is left to send: wait for what the restarted broker
		// delivers (it would come at once; give it 2 s of quiet).
		waitQuiet(consumer, 2*time.Second, 15*time.Second)
	default:
		waitFor(t, 60*time.Second, "every reading to be receipted", func() bool { return o.acked.Load() >= killReadings })
	}
	cancel()
	<-done
	if err := sp.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	kept := map[uint64]bool{}
	if err := sp.Each(context.Background(), 0, func(rd *reading.Reading) error { kept[rd.Seq] = true; return nil }); err != nil {
		t.Fatal(err)
	}
	consumer.mu.Lock()
	defer consumer.mu.Unlock()
	for seq := uint64(1); seq <= killReadings; seq++ {
		if !kept[seq] && consumer.got[seq] == 0 {
			r.lost++
		}
	}
	r.deleted, r.received, r.kept = int(o.acked.Load()), len(consumer.got), len(kept)
	t.Logf("confirm broker=%v, kill=%v: %d readings; broker held %d at the kill; deleted from the spool %d, consumer received %d, spool kept %d, lost %d",
		confirmBroker, kill, killReadings, r.heldAtKill, r.deleted, r.received, r.kept, r.lost)
	return r
}

// killConsumer stands in for the receiver's ingest: a client with a
// persistent session (unless clean) that records the seqs it receives
// and publishes a receipt for exactly those.
type killConsumer struct {
	broker *testserver.Mosquitto
	id     string
	clean  bool
	client mqtt.Client

	mu    sync.Mutex
	got   map[uint64]int
	order []uint64  // the first seq of each batch, as they arrived
	last  time.Time // when the last batch arrived
}

func newKillConsumer(t *testing.T, broker *testserver.Mosquitto) *killConsumer {
	c := &killConsumer{broker: broker, id: "test-receiver", got: map[uint64]int{}}
	t.Cleanup(func() {
		if c.client != nil {
			c.client.Disconnect(50)
		}
	})
	return c
}

// connect connects (again) and waits until the subscription is granted.
func (c *killConsumer) connect(t *testing.T) {
	t.Helper()
	c.client = mqtt.NewClient(mqtt.NewClientOptions().AddBroker(c.broker.URL()).SetClientID(c.id).
		SetCleanSession(c.clean).SetAutoReconnect(false))
	if tok := c.client.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("%s: connect: %v", c.id, tok.Error())
	}
	if tok := c.client.Subscribe("outpost/+/readings", 1, c.handle); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("%s: subscribe: %v", c.id, tok.Error())
	}
}

func (c *killConsumer) handle(cl mqtt.Client, msg mqtt.Message) {
	stream, ranges, err := receiptRanges(msg.Payload())
	if err != nil {
		return // not a batch; a receiver would reject it, nothing here needs it
	}
	c.mu.Lock()
	if len(ranges) > 0 {
		c.order = append(c.order, uint64(ranges[0][0]))
	}
	for _, rg := range ranges {
		for seq := rg[0]; seq <= rg[1]; seq++ {
			c.got[uint64(seq)]++
		}
	}
	c.last = time.Now()
	c.mu.Unlock()
	if c.clean {
		return // the spy only watches
	}
	body, _ := json.Marshal(map[string]any{"stream": stream, "ranges": ranges})
	cl.Publish("outpost/pi-07/receipts", 1, false, body)
}

func (c *killConsumer) distinct() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.got)
}

// waitQuiet waits until c has received nothing for quiet, or max passed.
func waitQuiet(c *killConsumer, quiet, max time.Duration) {
	start := time.Now()
	for time.Since(start) < max {
		c.mu.Lock()
		last := c.last
		c.mu.Unlock()
		if time.Since(start) >= quiet && time.Since(last) >= quiet {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func waitFor(t *testing.T, max time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(max)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited %v for %s", max, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
