//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/outpost-iot/outpost/daemon"
	"github.com/outpost-iot/outpost/internal/testserver"
)

// The poison batch (issue 9): the receiver refuses one reading the device
// could not have known it would refuse — here a line over the receiver's
// --max-line-bytes (set through OUTPOST_MAX_LINE_BYTES), within every
// limit of the device's own codec. The receiver answers 400 naming that
// line (over MQTT: a receipt that rejects the message at that line); the
// device dead-letters that reading alone and the rest flows; `outpost
// spool dead` lists it; and the receiver's accounting shows its seq as
// dead-lettered (from the device's heartbeat), not as missing.

func TestPoisonBatchHTTP(t *testing.T) { poisonBatch(t, "") }

func TestPoisonBatchMQTT(t *testing.T) {
	poisonBatch(t, testserver.StartMosquitto(t, testserver.MosquittoOptions{}).URL())
}

const poisonAdminToken = "admin-token-of-the-poison-test-0123456789"

func poisonBatch(t *testing.T, broker string) {
	name := "poison_http"
	if broker != "" {
		name = "poison_mqtt"
	}
	// The receiver (started by newRig) takes its line limit and admin
	// token from the environment, as a packaged one would.
	adminFile := filepath.Join(t.TempDir(), "admin-token")
	if err := os.WriteFile(adminFile, []byte(poisonAdminToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("OUTPOST_MAX_LINE_BYTES", "1KiB")
	t.Setenv("OUTPOST_ADMIN_TOKEN_FILE", adminFile)
	pg := testserver.StartPostgres(t)
	r := newRig(t, pg, name, broker)
	r.writeConfig(t, 2) // two sim sensors at 50 readings/s each, flowing throughout
	d := r.startDaemon(t)
	time.Sleep(time.Second)

	// 30 readings from an offline instrument go into the live stream; the
	// 15th carries long labels: ~2.3 KiB on the wire, over the receiver's
	// 1 KiB, under the device's 16 KiB line limit.
	const imported, poisonLine = 30, 15
	var in strings.Builder
	for i := 1; i <= imported; i++ {
		labels := ""
		if i == poisonLine {
			var ls []string
			for k := range 8 {
				ls = append(ls, fmt.Sprintf(`"note%d":%q`, k, strings.Repeat(string(rune('a'+k)), 250)))
			}
			labels = `,"labels":{` + strings.Join(ls, ",") + `}`
		}
		fmt.Fprintf(&in, `{"sensor":"logger.level","value":%d,"unit":"cm","timestamp":"2026-11-20T10:%02d:00Z"%s}`+"\n", i, i, labels)
	}
	file := filepath.Join(r.dir, "instrument.ndjson")
	if err := os.WriteFile(file, []byte(in.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(filepath.Join(binDir, "outpost"), "import", file, "--config", r.config).CombinedOutput()
	if err != nil {
		t.Fatalf("outpost import: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`imported 30 readings \(seq (\d+)–(\d+)\)`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("outpost import said %q; want 30 readings imported", out)
	}
	first, _ := strconv.ParseUint(string(m[1]), 10, 64)
	poisonSeq := first + poisonLine - 1

	// The device dead-letters that reading alone, within a few drain rounds.
	var dead []daemon.DeadLetterInfo
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		dead = spoolDead(t, r)
		if len(dead) > 0 {
			break
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(d.log)
			t.Fatalf("nothing dead-lettered 30s after the import:\n%s", log)
		}
	}
	time.Sleep(2 * time.Second) // the rest flows on; heartbeats carry the dead letter
	d.stop(t)
	st := r.drainAll(t)
	dead = spoolDead(t, r) // the daemon is down: read from the file
	if len(dead) != 1 || dead[0].From != poisonSeq || dead[0].To != poisonSeq || dead[0].Count != 1 ||
		dead[0].Stream != r.liveStream || !strings.Contains(dead[0].Reason, "line too long") {
		t.Fatalf("outpost spool dead = %+v; want one record: stream %s seq %d, 1 reading, line too long", dead, r.liveStream, poisonSeq)
	}
	t.Logf("outpost spool dead: stream %s seq %d–%d, %d reading: %s", dead[0].Stream, dead[0].From, dead[0].To, dead[0].Count, dead[0].Reason)
	if st.Spool.DeadLetter != 1 {
		t.Errorf("daemon status: %d dead-lettered; want 1", st.Spool.DeadLetter)
	}

	// The receiver stored the other 29 imported readings, not the poison.
	ctx := context.Background()
	var stored []int64
	rows, err := r.db.Query(ctx, `SELECT seq FROM readings WHERE device_id = 'pi-e2e' AND sensor = 'logger.level' ORDER BY seq`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var s int64
		rows.Scan(&s)
		stored = append(stored, s)
	}
	rows.Close()
	if len(stored) != imported-1 || stored[0] != int64(first) || stored[len(stored)-1] != int64(first+imported-1) {
		t.Errorf("stored imported seqs %v; want %d–%d without %d", stored, first, first+imported-1, poisonSeq)
	}
	for _, s := range stored {
		if s == int64(poisonSeq) {
			t.Errorf("the poison reading (seq %d) was stored", poisonSeq)
		}
	}

	// The receiver's accounting: nothing missing, the poison seq
	// dead-lettered, no conflict.
	var gaps struct {
		Streams []struct {
			Stream       string      `json:"stream"`
			HighestSeq   uint64      `json:"highest_seq"`
			Missing      [][2]uint64 `json:"missing"`
			Dropped      [][2]uint64 `json:"dropped"`
			DeadLettered [][2]uint64 `json:"dead_lettered"`
			Conflicts    []any       `json:"conflicts"`
		} `json:"streams"`
	}
	adminGet(t, r.url+"/v1/devices/pi-e2e/gaps", &gaps)
	found := false
	for _, s := range gaps.Streams {
		if len(s.Missing) != 0 || len(s.Conflicts) != 0 {
			t.Errorf("stream %s: missing %v, %d conflicts; want none", s.Stream, s.Missing, len(s.Conflicts))
		}
		if s.Stream == r.liveStream {
			found = true
			if len(s.DeadLettered) != 1 || s.DeadLettered[0] != [2]uint64{poisonSeq, poisonSeq} || s.HighestSeq != st.Spool.Seq {
				t.Errorf("live stream gaps = %+v; want [[%d %d]] dead-lettered, highest seq %d", s, poisonSeq, poisonSeq, st.Spool.Seq)
			}
		}
	}
	if !found {
		t.Errorf("gaps %+v lack the live stream %s", gaps, r.liveStream)
	}
	var devices struct {
		Devices []struct {
			ID      string `json:"id"`
			Streams []struct {
				Stream       string `json:"stream"`
				Received     uint64 `json:"received"`
				DeadLettered uint64 `json:"dead_lettered"`
				Missing      uint64 `json:"missing"`
			} `json:"streams"`
		} `json:"devices"`
	}
	adminGet(t, r.url+"/v1/devices", &devices)
	for _, dv := range devices.Devices {
		for _, s := range dv.Streams {
			if s.Stream == r.liveStream && (s.DeadLettered != 1 || s.Missing != 0 || s.Received != st.Spool.Seq-1) {
				t.Errorf("GET /v1/devices, live stream: %+v; want %d received, 1 dead-lettered, 0 missing", s, st.Spool.Seq-1)
			}
		}
	}

	// The receiver refused exactly what it had to: over HTTP the 400s of
	// the batches holding the poison (one per drain attempt before the
	// split), over MQTT the rejected message kept with its line.
	if broker == "" {
		metrics := get(t, r.url+"/metrics")
		if !regexp.MustCompile(`outpost_receiver_batches_rejected_total\{reason="400",transport="http"\} [1-9]`).MatchString(metrics) {
			t.Errorf("/metrics shows no 400 over HTTP")
		}
	} else {
		var n, line int
		if err := r.db.QueryRow(ctx, `SELECT count(*), coalesce(min(line), 0) FROM rejected_messages WHERE device_id = 'pi-e2e'`).Scan(&n, &line); err != nil {
			t.Fatal(err)
		}
		if n < 1 || line < 1 {
			t.Errorf("%d rejected messages (first line %d); want the poison message kept with its line", n, line)
		}
	}
	log, _ := os.ReadFile(d.log)
	if !regexp.MustCompile(`batch rejected by the receiver; dead-lettered.*readings=1 `).Match(log) {
		t.Errorf("daemon log lacks the dead-lettering of one reading:\n%s", log)
	}
	t.Logf("%d readings in the live stream: %d stored, seq %d dead-lettered, none missing", st.Spool.Seq, st.Spool.Seq-1, poisonSeq)
}

func spoolDead(t *testing.T, r *rig) []daemon.DeadLetterInfo {
	t.Helper()
	out, err := exec.Command(filepath.Join(binDir, "outpost"), "spool", "dead", "--json", "--config", r.config).Output()
	if err != nil {
		t.Fatalf("outpost spool dead: %v", err)
	}
	var dl []daemon.DeadLetterInfo
	if err := json.Unmarshal(out, &dl); err != nil {
		t.Fatalf("outpost spool dead --json = %q: %v", out, err)
	}
	return dl
}

func get(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func adminGet(t *testing.T, url string, v any) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	req.Header.Set("Authorization", "Bearer "+poisonAdminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s = %d %s", url, resp.StatusCode, b)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("GET %s = %s: %v", url, b, err)
	}
}
