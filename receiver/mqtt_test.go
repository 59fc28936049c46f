package receiver

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/outpost-iot/outpost/internal/reading"
	"github.com/outpost-iot/outpost/internal/testserver"
	"github.com/outpost-iot/outpost/receiver/store"
	"github.com/outpost-iot/outpost/receiver/store/storetest"
)

// TestMQTTTwoReceivers shares the subscription between two receivers on
// one store: the load splits, every batch is receipted, nothing is lost or
// doubled, a resent batch is receipted as stored again, and poison
// messages are receipted as rejected and kept.
func TestMQTTTwoReceivers(t *testing.T) {
	if testing.Short() {
		t.Skip("needs Mosquitto (skipped with -short)")
	}
	t.Parallel()
	mq := testserver.StartMosquitto(t, testserver.MosquittoOptions{})
	st := openSQLiteT(t)
	if err := st.Migrate(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := st.AddDevice(t.Context(), "pi-07", store.HashToken(tokPi07), t0); err != nil {
		t.Fatal(err)
	}
	var rs []*MQTT
	for _, id := range []string{"receiver-a", "receiver-b"} {
		m, err := NewServer(st, Options{}).StartMQTT(t.Context(), MQTTOptions{Broker: mq.URL(), ClientID: id, Group: "test"})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(m.Close)
		rs = append(rs, m)
	}

	receipts := make(chan reading.Receipt, 1000)
	dev := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(mq.URL()).SetClientID("pi-07"))
	if tok := dev.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("device connect: %v", tok.Error())
	}
	t.Cleanup(func() { dev.Disconnect(100) })
	if tok := dev.Subscribe("outpost/pi-07/receipts", 1, func(_ mqtt.Client, msg mqtt.Message) {
		var r reading.Receipt
		if err := json.Unmarshal(msg.Payload(), &r); err != nil {
			t.Errorf("receipt %q: %v", msg.Payload(), err)
		}
		receipts <- r
	}); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("device subscribe: %v", tok.Error())
	}
	publish := func(payload []byte) {
		t.Helper()
		if tok := dev.Publish("outpost/pi-07/readings", 1, false, payload); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("publish: %v", tok.Error())
		}
	}
	const batches, size = 40, 50
	for i := 0; i < batches; i++ {
		body := []byte(lines(i*size+1, (i+1)*size))
		if i%2 == 1 {
			body = gz(body)
		}
		publish(body)
	}
	got := map[uint64]int{}
	deadline := time.After(30 * time.Second)
	for len(got) < batches*size {
		select {
		case r := <-receipts:
			for _, rg := range r.Ranges {
				for s := rg[0]; s <= rg[1]; s++ {
					got[s]++
				}
			}
		case <-deadline:
			t.Fatalf("receipts for %d of %d readings after 30s", len(got), batches*size)
		}
	}
	if a, b := rs[0].handled.Load(), rs[1].handled.Load(); a == 0 || b == 0 || a+b != batches {
		t.Errorf("batches handled by the receivers: %d and %d; want both > 0, %d in all", a, b, batches)
	}
	if n := len(storetest.All(t, st, store.Query{Device: "pi-07"})); n != batches*size {
		t.Errorf("stored %d readings; want %d", n, batches*size)
	}

	// A resend (a receipt lost on the way) is receipted again, not stored twice.
	publish([]byte(lines(1, size)))
	if r := waitReceipt(t, receipts); len(r.Ranges) != 1 || r.Ranges[0] != [2]uint64{1, size} {
		t.Errorf("receipt of a resend = %+v; want [[1 %d]]", r, size)
	}
	// Poison: kept as rejected, receipted, and the subscription goes on.
	publish([]byte(`{"device":"pi-07"` + "\n"))
	if r := waitReceipt(t, receipts); len(r.Rejected) != 1 || r.Rejected[0].Line != 1 || !strings.Contains(r.Rejected[0].Error, "line 1") {
		t.Errorf("receipt of a malformed message = %+v; want rejected, line 1", r)
	}
	publish([]byte(strings.ReplaceAll(lines(9000, 9001), "pi-07", "pi-08")))
	if r := waitReceipt(t, receipts); len(r.Rejected) != 1 || !strings.Contains(r.Rejected[0].Error, `device "pi-08" is not the topic's device "pi-07"`) {
		t.Errorf("receipt of another device's message = %+v; want rejected naming the device", r)
	}
	// A message with one bad line is refused whole; its receipt names the
	// stream and every seq it held, so the device can match it to its
	// batch and dead-letter the line instead of resending it forever.
	bad := strings.SplitAfter(lines(500, 503), "\n")
	bad[2] = strings.Replace(bad[2], `"value":`, `"value":"NaN","x":`, 1)
	publish([]byte(strings.Join(bad, "")))
	if r := waitReceipt(t, receipts); len(r.Rejected) != 1 || r.Stream == "" || r.Rejected[0].Line != 3 ||
		len(r.Rejected[0].Ranges) != 1 || r.Rejected[0].Ranges[0] != [2]uint64{500, 503} {
		t.Errorf("receipt of a message with a bad line 3 = %+v; want its stream, rejected [[500 503]] at line 3", r)
	}
	if n := len(storetest.All(t, st, store.Query{Device: "pi-07"})); n != batches*size {
		t.Errorf("stored %d readings after resend and poison; want %d", n, batches*size)
	}

	// The retained heartbeat becomes the device's last status.
	if tok := dev.Publish("outpost/pi-07/status", 1, true, []byte(`{"device":"pi-07","state":"online","uptime_s":3}`)); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("publish status: %v", tok.Error())
	}
	for start := time.Now(); ; time.Sleep(50 * time.Millisecond) {
		ds, err := st.Devices(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if len(ds) == 1 && strings.Contains(string(ds[0].LastStatus), `"uptime_s":3`) {
			break
		}
		if time.Since(start) > 10*time.Second {
			t.Fatalf("status not stored after 10s: %+v", ds)
		}
	}
}

func waitReceipt(t *testing.T, c <-chan reading.Receipt) reading.Receipt {
	t.Helper()
	select {
	case r := <-c:
		return r
	case <-time.After(15 * time.Second):
		t.Fatal("no receipt within 15s")
	}
	return reading.Receipt{}
}

// TestMQTTCrashBeforeAck stops a receiver between the commit of a batch and
// its acknowledgement: the broker delivers the message again when the
// receiver comes back (same client id, persistent session), and the
// redelivery is a duplicate, receipted, not a second row.
func TestMQTTCrashBeforeAck(t *testing.T) {
	if testing.Short() {
		t.Skip("needs Mosquitto (skipped with -short)")
	}
	t.Parallel()
	mq := testserver.StartMosquitto(t, testserver.MosquittoOptions{})
	st := openSQLiteT(t)
	if err := st.Migrate(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := st.AddDevice(t.Context(), "pi-07", store.HashToken(tokPi07), t0); err != nil {
		t.Fatal(err)
	}
	crashed := make(chan struct{})
	srv := NewServer(st, Options{})
	m1, err := srv.StartMQTT(t.Context(), MQTTOptions{Broker: mq.URL(), ClientID: "receiver-a",
		crashAfterCommit: func() bool { close(crashed); return true }})
	if err != nil {
		t.Fatal(err)
	}
	dev := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(mq.URL()).SetClientID("pi-07"))
	if tok := dev.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("device connect: %v", tok.Error())
	}
	t.Cleanup(func() { dev.Disconnect(100) })
	receipts := make(chan reading.Receipt, 10)
	if tok := dev.Subscribe("outpost/pi-07/receipts", 1, func(_ mqtt.Client, msg mqtt.Message) {
		var r reading.Receipt
		json.Unmarshal(msg.Payload(), &r)
		receipts <- r
	}); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("device subscribe: %v", tok.Error())
	}
	if tok := dev.Publish("outpost/pi-07/readings", 1, false, []byte(lines(1, 10))); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("publish: %v", tok.Error())
	}
	select {
	case <-crashed:
	case <-time.After(15 * time.Second):
		t.Fatal("the batch was not committed")
	}
	m1.Close() // committed, never acknowledged nor receipted
	select {
	case r := <-receipts:
		t.Fatalf("receipt %+v before the acknowledgement", r)
	case <-time.After(200 * time.Millisecond):
	}

	m2, err := srv.StartMQTT(t.Context(), MQTTOptions{Broker: mq.URL(), ClientID: "receiver-a"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m2.Close)
	if r := waitReceipt(t, receipts); len(r.Ranges) != 1 || r.Ranges[0] != [2]uint64{1, 10} {
		t.Errorf("receipt after redelivery = %+v; want [[1 10]]", r)
	}
	if n := len(storetest.All(t, st, store.Query{Device: "pi-07"})); n != 10 {
		t.Errorf("stored %d readings; want 10", n)
	}
	rec := newRecorder()
	srv.Handler().ServeHTTP(rec, mustRequest(t, "GET", "/metrics"))
	if want := `outpost_receiver_readings_total{result="duplicate",transport="mqtt"} 10`; !strings.Contains(rec.Body.String(), want) {
		t.Errorf("/metrics lacks %q: the redelivery was not counted as duplicates", want)
	}
}
