package uplink

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/outpost-iot/outpost/internal/reading"
	"github.com/outpost-iot/outpost/internal/testserver"
)

// receiptPublisher stands in for the receiver's MQTT ingest (tested in
// the receiver's own package): it stores each (stream, seq) once and
// publishes the receipt DESIGN.md specifies, rejecting "poison" lines.
type receiptPublisher struct {
	mu     sync.Mutex
	stored map[uint64]int
	client mqtt.Client
}

func startReceiptPublisher(t *testing.T, broker *testserver.Mosquitto, user, password string) *receiptPublisher {
	t.Helper()
	rp := &receiptPublisher{stored: map[uint64]int{}}
	opts := mqtt.NewClientOptions().AddBroker(broker.URL()).SetClientID("test-receiver").
		SetUsername(user).SetPassword(password).SetAutoReconnect(true).SetConnectRetry(true).
		SetMaxReconnectInterval(200 * time.Millisecond).SetConnectRetryInterval(100 * time.Millisecond).
		SetOnConnectHandler(func(c mqtt.Client) {
			c.Subscribe("outpost/+/readings", 1, rp.handle)
		})
	rp.client = mqtt.NewClient(opts)
	if tok := rp.client.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("receipt publisher: connect: %v", tok.Error())
	}
	t.Cleanup(func() { rp.client.Disconnect(100) })
	time.Sleep(100 * time.Millisecond) // let the subscription settle
	return rp
}

func (rp *receiptPublisher) handle(c mqtt.Client, msg mqtt.Message) {
	var body io.Reader = bytes.NewReader(msg.Payload())
	if p := msg.Payload(); len(p) > 2 && p[0] == 0x1f && p[1] == 0x8b {
		zr, err := gzip.NewReader(body)
		if err != nil {
			return
		}
		body = zr
	}
	dec := reading.NewDecoder(body, reading.Limits{})
	var stream string
	var ranges [][2]int64
	var rejected []map[string]any
	rp.mu.Lock()
	for n := 1; ; n++ {
		var l reading.Line
		if err := dec.Decode(&l); err != nil {
			break
		}
		if l.Kind != reading.KindReading {
			continue
		}
		r := l.Reading
		stream = r.Stream.String()
		if r.Sensor == "poison" {
			rejected = append(rejected, map[string]any{"ranges": [][2]int64{{int64(r.Seq), int64(r.Seq)}}, "error": "poison", "line": n})
			continue
		}
		rp.stored[r.Seq]++
		ranges = append(ranges, [2]int64{int64(r.Seq), int64(r.Seq)})
	}
	rp.mu.Unlock()
	device := strings.Split(msg.Topic(), "/")[1]
	b, _ := json.Marshal(map[string]any{"stream": stream, "ranges": ranges, "rejected": rejected})
	c.Publish("outpost/"+device+"/receipts", 1, false, b)
}

func newMQTTSender(t *testing.T, o MQTTOptions) *MQTT {
	t.Helper()
	if o.Device == "" {
		o.Device = "pi-07"
	}
	o.Backoff = Backoff{Base: 50 * time.Millisecond, Max: 200 * time.Millisecond}
	m, err := NewMQTT(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	return m
}

func waitConnected(t *testing.T, m *MQTT) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !m.client.IsConnectionOpen() {
		if time.Now().After(deadline) {
			t.Fatalf("not connected after 10s: %v", m.notConnected())
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond) // the receipts subscription
}

func TestMQTTConfirmByReceipt(t *testing.T) {
	broker := testserver.StartMosquitto(t, testserver.MosquittoOptions{})
	rp := startReceiptPublisher(t, broker, "", "")
	m := newMQTTSender(t, MQTTOptions{Broker: broker.URL(), Gzip: true, ReceiptTimeout: 5 * time.Second})
	waitConnected(t, m)

	b := testBatch(100)
	if res := m.Send(context.Background(), b); res.Outcome != Accepted {
		t.Fatalf("Send = %+v; want accepted on the receipt", res)
	}
	rp.mu.Lock()
	n := len(rp.stored)
	rp.mu.Unlock()
	if n != 100 {
		t.Errorf("receiver stored %d readings; want 100", n)
	}

	b = testBatch(5)
	b.Readings[2].Sensor = "poison"
	if res := m.Send(context.Background(), b); res.Outcome != Rejected || res.Line != 3 || !strings.Contains(res.Err.Error(), "poison") {
		t.Errorf("Send(poison at line 3) = %+v; want rejected naming line 3", res)
	}
}

func TestMQTTWithoutReceiptRetries(t *testing.T) {
	broker := testserver.StartMosquitto(t, testserver.MosquittoOptions{})
	m := newMQTTSender(t, MQTTOptions{Broker: broker.URL(), ReceiptTimeout: 300 * time.Millisecond})
	waitConnected(t, m)
	res := m.Send(context.Background(), testBatch(3))
	if res.Outcome != Retry || !strings.Contains(res.Err.Error(), "no receipt") {
		t.Errorf("Send with no receiver = %+v; want retry after the receipt timeout", res)
	}
	// With confirm: broker the PUBACK is enough.
	mb := newMQTTSender(t, MQTTOptions{Broker: broker.URL(), Device: "pi-08", ConfirmBroker: true})
	waitConnected(t, mb)
	if res := mb.Send(context.Background(), testBatch(3)); res.Outcome != Accepted {
		t.Errorf("Send with confirm broker = %+v; want accepted", res)
	}
}

const testACL = `user pi-07
topic write outpost/pi-07/readings
topic write outpost/pi-07/status
topic read outpost/pi-07/receipts

user receiver
topic read outpost/+/readings
topic write outpost/+/receipts
topic read outpost/+/status
`

func TestMQTTRefusedCredentialsReported(t *testing.T) {
	broker := testserver.StartMosquitto(t, testserver.MosquittoOptions{
		Users: map[string]string{"pi-07": "right", "receiver": "r"}, ACL: testACL})
	pw := filepath.Join(t.TempDir(), "password")
	os.WriteFile(pw, []byte("wrong\n"), 0o600)
	m := newMQTTSender(t, MQTTOptions{Broker: broker.URL(), Username: "pi-07", PasswordFile: pw})
	deadline := time.Now().Add(10 * time.Second)
	var res Result
	for time.Now().Before(deadline) {
		if res = m.Send(context.Background(), testBatch(1)); res.Misconfigured {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if res.Outcome != Retry || !res.Misconfigured || !strings.Contains(res.Err.Error(), "not Authorized") && !strings.Contains(res.Err.Error(), "bad user name") {
		t.Fatalf("Send with a wrong password = %+v; want retry, flagged misconfigured, naming the refusal", res)
	}
	// The operator fixes the password file: the next connect uses it.
	os.WriteFile(pw, []byte("right\n"), 0o600)
	rp := startReceiptPublisher(t, broker, "receiver", "r")
	waitConnected(t, m)
	if res := m.Send(context.Background(), testBatch(2)); res.Outcome != Accepted {
		t.Errorf("Send after fixing the password = %+v", res)
	}
	_ = rp
}

// TestMQTTDrainThroughBrokerRestart drains 3000 readings while the broker
// is stopped and started again: every reading is acknowledged exactly once
// and only after its receipt.
func TestMQTTDrainThroughBrokerRestart(t *testing.T) {
	broker := testserver.StartMosquitto(t, testserver.MosquittoOptions{
		Users: map[string]string{"pi-07": "secret", "receiver": "r"}, ACL: testACL})
	rp := startReceiptPublisher(t, broker, "receiver", "r")
	pw := filepath.Join(t.TempDir(), "password")
	os.WriteFile(pw, []byte("secret\n"), 0o600)
	m := newMQTTSender(t, MQTTOptions{Broker: broker.URL(), Username: "pi-07", PasswordFile: pw, Gzip: true, ReceiptTimeout: 2 * time.Second})
	waitConnected(t, m)

	o := newMemOutbox(3000, nil)
	d := &Drainer{Outbox: o, Sender: m, MaxReadings: 50, InFlight: 4, Backoff: Backoff{Max: 200 * time.Millisecond}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	for {
		o.mu.Lock()
		n := len(o.acked)
		o.mu.Unlock()
		if n >= 500 {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	broker.Stop()
	time.Sleep(300 * time.Millisecond)
	broker.Start()
	deadline := time.Now().Add(60 * time.Second)
	for !o.settled() && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	<-done
	if !o.settled() {
		t.Fatalf("not settled after the broker restart: %+v", d.Status())
	}
	o.checkFates(t)
	rp.mu.Lock()
	defer rp.mu.Unlock()
	for seq := uint64(1); seq <= 3000; seq++ {
		if rp.stored[seq] < 1 {
			t.Fatalf("seq %d acknowledged but never reached the receiver", seq)
		}
	}
}

func TestMQTTRetainedStatus(t *testing.T) {
	broker := testserver.StartMosquitto(t, testserver.MosquittoOptions{})
	m := newMQTTSender(t, MQTTOptions{Broker: broker.URL(), ConfirmBroker: true})
	waitConnected(t, m)
	if err := m.SendStatus(context.Background(), []byte(`{"state":"online","device":"pi-07"}`)); err != nil {
		t.Fatal(err)
	}
	read := func() string {
		got := make(chan string, 1)
		c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(broker.URL()).SetClientID("watcher"))
		if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatal(tok.Error())
		}
		defer c.Disconnect(50)
		c.Subscribe("outpost/pi-07/status", 1, func(_ mqtt.Client, msg mqtt.Message) {
			select {
			case got <- string(msg.Payload()):
			default:
			}
		})
		select {
		case s := <-got:
			return s
		case <-time.After(5 * time.Second):
			return ""
		}
	}
	if s := read(); s != `{"state":"online","device":"pi-07"}` {
		t.Errorf("retained status = %q", s)
	}
	m.Close()
	if s := read(); s != `{"state":"offline"}` {
		t.Errorf("retained status after Close = %q; want offline", s)
	}
}

// TestMQTTResumesPromptlyAfterBrokerReturns: the broker is stopped while
// four batches are in flight and a backlog waits, and comes back 15 s
// later. With the default backoff (whose cap is 30 s), the client
// reconnects within a second, the drain probes as soon as it has (Up),
// oldest batch first, and the whole backlog follows at once. The bound is
// generous (the machine is shared); the figures are the e2e benchmark's.
func TestMQTTResumesPromptlyAfterBrokerReturns(t *testing.T) {
	broker := testserver.StartMosquitto(t, testserver.MosquittoOptions{})
	// The consumer has a persistent session, kept over the clean restart,
	// so what the device publishes before the consumer is back waits for
	// it: only the device's reconnect and drain are timed.
	consumer := newKillConsumer(t, broker)
	consumer.connect(t)
	m, err := NewMQTT(MQTTOptions{Broker: broker.URL(), Device: "pi-07", ReceiptTimeout: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	waitConnected(t, m)

	const n = 2000
	o := newMemOutbox(n, nil)
	var sends atomic.Int32
	d := &Drainer{Outbox: o, Sender: countingUpSender{countingSender{m, &sends}, m.Up()}, MaxReadings: 100, InFlight: 4}
	broker.Stop()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { d.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	time.Sleep(15 * time.Second)
	outageSends := sends.Load()
	o.mu.Lock()
	acked := len(o.acked)
	o.mu.Unlock()
	if st := d.Status(); st.State != "retrying" || acked != 0 {
		t.Fatalf("status with the broker down = %+v, %d acked; want retrying, none", st, acked)
	}
	broker.Start()
	back := time.Now()
	consumer.connect(t)
	waitFor(t, 60*time.Second, "the backlog to be receipted", o.settled)
	took := time.Since(back)
	o.checkFates(t)
	consumer.mu.Lock()
	defer consumer.mu.Unlock()
	for seq := uint64(1); seq <= n; seq++ {
		if consumer.got[seq] == 0 {
			t.Fatalf("seq %d acknowledged but never reached the consumer", seq)
		}
	}
	if len(consumer.order) == 0 || consumer.order[0] != 1 {
		t.Errorf("batches arrived in the order %v; want the oldest (seq 1) first", consumer.order)
	}
	// Each worker on its own backoff (before the link state) took 25.7 s
	// here, and delivered the oldest batch last.
	if took > 10*time.Second {
		t.Errorf("the backlog took %v after the broker returned; want a prompt reconnect and drain (about 1–2 s)", took)
	}
	// One probe at a time, within a second of each other, while down.
	if outageSends < 4 || outageSends > 4+40 {
		t.Errorf("%d sends in a 15 s outage; want the 4 in flight and about one probe per 0.5–1 s", outageSends)
	}
	t.Logf("backlog of %d receipted %v after the broker returned; %d sends during the outage; arrival order %v", n, took, outageSends, consumer.order)
}

// countingUpSender counts sends and passes the MQTT sender's Up on.
type countingUpSender struct {
	countingSender
	up <-chan struct{}
}

func (c countingUpSender) Up() <-chan struct{} { return c.up }
