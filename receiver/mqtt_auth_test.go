package receiver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/outpost-iot/outpost/internal/reading"
	"github.com/outpost-iot/outpost/internal/testserver"
	"github.com/outpost-iot/outpost/receiver/store"
	"github.com/outpost-iot/outpost/receiver/store/storetest"
)

// metric returns the value of a counter line of srv's /metrics ("" when
// absent).
func metric(t *testing.T, srv *Server, series string) string {
	t.Helper()
	rec := newRecorder()
	srv.Handler().ServeHTTP(rec, mustRequest(t, "GET", "/metrics"))
	for l := range strings.SplitSeq(rec.Body.String(), "\n") {
		if v, ok := strings.CutPrefix(l, series+" "); ok {
			return v
		}
	}
	return ""
}

// mqttDevice connects a device client that collects its receipts.
func mqttDevice(t *testing.T, broker, device string) (mqtt.Client, <-chan reading.Receipt) {
	t.Helper()
	receipts := make(chan reading.Receipt, 100)
	c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(broker).SetClientID(device))
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("device connect: %v", tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(100) })
	if tok := c.Subscribe("outpost/"+device+"/receipts", 1, func(_ mqtt.Client, msg mqtt.Message) {
		var r reading.Receipt
		json.Unmarshal(msg.Payload(), &r)
		receipts <- r
	}); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("device subscribe: %v", tok.Error())
	}
	return c, receipts
}

func publishT(t *testing.T, c mqtt.Client, topic string, retained bool, payload string) {
	t.Helper()
	if tok := c.Publish(topic, 1, retained, []byte(payload)); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("publish: %v", tok.Error())
	}
}

// TestMQTTDeviceRegistration: MQTT ingest applies the HTTP rule. A device
// never added, or revoked, is refused on every replica (counted in
// /metrics, nothing stored, not even as a rejected message, and no
// receipt, so the device keeps its readings and sends them again); a
// revoke made by another process (the command line) reaches both
// replicas' caches within their TTL, and a rotation reinstates the
// device. The test waits out the TTL, never less.
func TestMQTTDeviceRegistration(t *testing.T) {
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
	const ttl = 200 * time.Millisecond
	var srvs []*Server
	var rs []*MQTT
	for _, id := range []string{"receiver-a", "receiver-b"} {
		srv := NewServer(st, Options{})
		m, err := srv.StartMQTT(t.Context(), MQTTOptions{Broker: mq.URL(), ClientID: id, Group: "test", DeviceCacheTTL: ttl})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(m.Close)
		srvs, rs = append(srvs, srv), append(rs, m)
	}
	refused := func(reason string) (n int, each []int) {
		for _, srv := range srvs {
			var v int
			fmt.Sscan(metric(t, srv, `outpost_receiver_batches_rejected_total{reason="`+reason+`",transport="mqtt"}`), &v)
			n, each = n+v, append(each, v)
		}
		return n, each
	}
	waitRefused := func(reason string, want int) []int {
		t.Helper()
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			n, each := refused(reason)
			if n >= want {
				return each
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d messages refused as %s after 30s; want %d", n, reason, want)
			}
		}
	}
	stored := func(device string) int { return len(storetest.All(t, st, store.Query{Device: device})) }

	// Never added: refused, nothing kept.
	stranger, strangerReceipts := mqttDevice(t, mq.URL(), "pi-99")
	for i := range 4 {
		publishT(t, stranger, "outpost/pi-99/readings", false, strings.ReplaceAll(lines(10*i+1, 10*i+10), "pi-07", "pi-99"))
	}
	waitRefused("unknown_device", 4)
	if n := stored("pi-99"); n != 0 {
		t.Errorf("stored %d readings of a device never added; want 0", n)
	}
	select {
	case r := <-strangerReceipts:
		t.Errorf("receipt %+v for a device never added; want none (it keeps its readings)", r)
	default:
	}

	// Registered: stored, on both replicas (each caches pi-07 as allowed).
	dev, receipts := mqttDevice(t, mq.URL(), "pi-07")
	const batches = 10
	for i := range batches {
		publishT(t, dev, "outpost/pi-07/readings", false, lines(10*i+1, 10*i+10))
		waitReceipt(t, receipts)
	}
	if a, b := rs[0].handled.Load(), rs[1].handled.Load(); a == 0 || b == 0 {
		t.Fatalf("batches handled: %d and %d; want both replicas to have cached pi-07", a, b)
	}

	// Revoked elsewhere (as `outpost-receiver device revoke` does): once
	// the TTL has passed, both replicas refuse.
	if err := st.RevokeDevice(t.Context(), "pi-07", time.Now()); err != nil {
		t.Fatal(err)
	}
	time.Sleep(ttl + 50*time.Millisecond)
	for i := range batches {
		publishT(t, dev, "outpost/pi-07/readings", false, lines(1000+10*i, 1009+10*i))
	}
	each := waitRefused("revoked", batches)
	if each[0] == 0 || each[1] == 0 {
		t.Errorf("revoked batches refused per replica: %v; want both replicas refusing", each)
	}
	if n := stored("pi-07"); n != batches*10 {
		t.Errorf("stored %d readings of pi-07; want %d (none after the revoke)", n, batches*10)
	}
	// The status of a revoked device is not kept either.
	publishT(t, dev, "outpost/pi-07/status", true, `{"device":"pi-07","state":"online","uptime_s":77}`)
	waitRefused("revoked", batches+2) // both replicas get the retained status

	// A new token reinstates it: stored again.
	if err := st.RotateToken(t.Context(), "pi-07", store.HashToken("new"), 0, time.Now()); err != nil {
		t.Fatal(err)
	}
	time.Sleep(ttl + 50*time.Millisecond)
	publishT(t, dev, "outpost/pi-07/readings", false, lines(5000, 5009))
	for r := waitReceipt(t, receipts); len(r.Ranges) != 1 || r.Ranges[0] != [2]uint64{5000, 5009}; r = waitReceipt(t, receipts) {
	}
	if n := stored("pi-07"); n != batches*10+10 {
		t.Errorf("stored %d readings of pi-07 after reinstating; want %d", n, batches*10+10)
	}
	ds, err := st.Devices(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range ds {
		if strings.Contains(string(d.LastStatus), `"uptime_s":77`) {
			t.Errorf("status of a revoked device kept: %s", d.LastStatus)
		}
	}
}

// TestMQTTStatusDevice: a status naming another device than its topic's
// is not kept as that topic's device's heartbeat.
func TestMQTTStatusDevice(t *testing.T) {
	if testing.Short() {
		t.Skip("needs Mosquitto (skipped with -short)")
	}
	t.Parallel()
	mq := testserver.StartMosquitto(t, testserver.MosquittoOptions{})
	st := openSQLiteT(t)
	if err := st.Migrate(t.Context()); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"pi-07", "pi-08"} {
		if err := st.AddDevice(t.Context(), id, store.HashToken("tok-"+id), t0); err != nil {
			t.Fatal(err)
		}
	}
	srv := NewServer(st, Options{})
	m, err := srv.StartMQTT(t.Context(), MQTTOptions{Broker: mq.URL(), ClientID: "receiver-a"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	dev, _ := mqttDevice(t, mq.URL(), "pi-07")
	publishT(t, dev, "outpost/pi-07/status", false, `{"device":"pi-08","state":"online","uptime_s":5}`)
	publishT(t, dev, "outpost/pi-07/status", false, `{"device":"pi-07","state":"online","uptime_s":6}`)
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		ds, err := st.Devices(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(ds[0].LastStatus), `"uptime_s":6`) {
			for _, d := range ds {
				if strings.Contains(string(d.LastStatus), `"uptime_s":5`) {
					t.Errorf("%s kept a status naming pi-08 on pi-07's topic: %s", d.ID, d.LastStatus)
				}
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("pi-07's own status not kept after 15s: %+v", ds)
		}
	}
	if v := metric(t, srv, `outpost_receiver_batches_rejected_total{reason="status_device",transport="mqtt"}`); v != "1" {
		t.Errorf("statuses refused for naming another device = %q; want 1", v)
	}
}

// countingStore counts what the device cache asks.
type countingStore struct {
	mu           sync.Mutex
	gen          int64
	state        map[string]error
	checks, gens int
}

func (s *countingStore) CheckDevice(_ context.Context, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.checks++
	if err, ok := s.state[id]; ok {
		return err
	}
	return store.ErrUnknownDevice
}

func (s *countingStore) DevicesGeneration(context.Context) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.gens++
	return s.gen, nil
}

// TestDeviceCache: answers are kept while the generation stands, the
// generation is read at most once per TTL, and a change (a revoke) is
// seen by the first check after the TTL.
func TestDeviceCache(t *testing.T) {
	now := time.Unix(1000, 0)
	st := &countingStore{gen: 1, state: map[string]error{"pi-07": nil}}
	c := newDeviceCache(st, time.Second, func() time.Time { return now })
	ctx := t.Context()
	for range 100 {
		if err, _ := c.check(ctx, "pi-07"); err != nil {
			t.Fatalf("check(pi-07) = %v; want nil", err)
		}
		if err, _ := c.check(ctx, "pi-99"); !errors.Is(err, store.ErrUnknownDevice) {
			t.Fatalf("check(pi-99) = %v; want ErrUnknownDevice", err)
		}
	}
	if st.checks != 2 || st.gens != 1 {
		t.Errorf("store asked %d device checks and %d generations for 200 checks; want 2 and 1", st.checks, st.gens)
	}
	st.mu.Lock()
	st.state["pi-07"], st.gen = store.ErrRevoked, 2
	st.mu.Unlock()
	now = now.Add(999 * time.Millisecond)
	if err, _ := c.check(ctx, "pi-07"); err != nil {
		t.Errorf("check within the TTL = %v; want the cached nil", err)
	}
	now = now.Add(time.Millisecond)
	if err, fresh := c.check(ctx, "pi-07"); !errors.Is(err, store.ErrRevoked) || !fresh {
		t.Errorf("check once the TTL passed = %v (fresh %v); want ErrRevoked from the store", err, fresh)
	}
	// Generation unchanged after another TTL: kept, no device query.
	now = now.Add(2 * time.Second)
	before := st.checks
	if err, fresh := c.check(ctx, "pi-07"); !errors.Is(err, store.ErrRevoked) || fresh || st.checks != before {
		t.Errorf("check with the generation unchanged = %v (fresh %v, %d new queries); want the cached ErrRevoked", err, fresh, st.checks-before)
	}
}
